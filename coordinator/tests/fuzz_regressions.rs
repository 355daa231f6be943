//! Inputs the fuzz targets (`fuzz/`) found a fault with, replayed through
//! the same entry points with the broker's allocator. Each must now return.

use karnak_coordinator::fuzz;
use karnak_protocol::fuzz::replay;

#[global_allocator]
static ALLOCATOR: karnak_protocol::alloc::Allocator = karnak_protocol::alloc::Allocator;

/// A JoinGroup subscription ("hhhh\n\n": version 0x6868, then a topics
/// array claiming 0x68680a0a entries): 56 GB asked of the allocator up
/// front, which aborted the broker.
#[test]
fn a_subscription_claiming_billions_of_topics() {
    fuzz::subscription(b"hhhh\n\n");
    fuzz::subscription(&[0, 0, 0x7f, 0xff, 0xff, 0xff]);
}

#[test]
fn every_kept_input_of_the_coordinator_targets() {
    assert!(replay("subscription", fuzz::subscription) >= 1);
    replay("shard_record", fuzz::shard_record);
    let scratch = tempfile::tempdir().unwrap();
    replay("metadata_files", |d| {
        fuzz::metadata_files(scratch.path(), d)
    });
}
