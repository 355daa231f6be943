//! Inputs the fuzz targets (`fuzz/`) found a fault with, replayed through
//! the same entry points with the broker's allocator. Each must now return.

use karnak_protocol::fuzz;

#[global_allocator]
static ALLOCATOR: karnak_protocol::alloc::Allocator = karnak_protocol::alloc::Allocator;

#[test]
fn every_kept_input_of_the_protocol_targets() {
    assert!(fuzz::replay("request", fuzz::request) >= 1);
    fuzz::replay("record_batches", fuzz::record_batches);
    fuzz::replay("message_set", fuzz::message_set);
    fuzz::replay("decompress", fuzz::decompress);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// IncrementalAlterConfigs v0 whose resources array claims 1.6 billion
/// entries: kafka-protocol asked for 141 GB before reading one, and the
/// broker aborted ("memory allocation of 141733943208 bytes failed").
#[test]
fn an_array_claiming_billions_of_elements() {
    fuzz::request(&hex("002c0000010000000000600000ff"));
    // Every API with its first array claiming i32::MAX elements, at each
    // version: nothing aborts.
    for key in kafka_protocol::messages::ApiKey::iter() {
        let range = key.valid_versions();
        for version in range.min..=range.max {
            let mut frame = (key as i16).to_be_bytes().to_vec();
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 1, 0, 0]); // correlation, null-ish client id
            frame.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
            fuzz::request(&frame);
        }
    }
}
