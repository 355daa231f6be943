#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| karnak_storage::fuzz::face(
    karnak_fuzz::scratch(),
    data
));
