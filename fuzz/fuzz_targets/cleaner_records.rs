#![no_main]

use karnak_fuzz as _;

libfuzzer_sys::fuzz_target!(|data: &[u8]| karnak_storage::fuzz::cleaner_records(data));
