#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| karnak_coordinator::fuzz::metadata_files(
    karnak_fuzz::scratch(),
    data
));
