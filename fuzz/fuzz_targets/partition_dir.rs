#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| karnak_storage::fuzz::partition_dir(
    karnak_fuzz::scratch(),
    data
));
