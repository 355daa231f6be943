#![no_main]

use karnak_fuzz as _;

libfuzzer_sys::fuzz_target!(|data: &[u8]| karnak_coordinator::fuzz::raft_message(data));
