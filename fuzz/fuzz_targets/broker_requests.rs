#![no_main]

// Not karnak_fuzz: the broker brings its own global allocator (the same one).
libfuzzer_sys::fuzz_target!(|data: &[u8]| karnak_broker::fuzz::requests(data));
