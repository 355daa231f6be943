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
    replay("raft_message", fuzz::raft_message);
}

/// The raft_message seeds decode and run as they did when written: a
/// change of the cluster's messages that breaks them fails here, and
/// `KARNAK_WRITE_SEEDS=fuzz/corpus/raft_message` writes them again.
#[test]
fn the_raft_message_seeds_still_decode() {
    use karnak_coordinator::metadata::wire::{RaftRequest, RaftResponse};
    let seeds = fuzz::raft_message_seeds();
    assert!(seeds.len() > 30, "{} seeds", seeds.len());
    for seed in &seeds {
        let body = &seed[5..];
        let decodes = if seed[0] == 0 {
            serde_json::from_slice::<RaftRequest>(body).is_ok()
        } else {
            serde_json::from_slice::<RaftResponse>(body).is_ok()
        };
        assert!(decodes, "{}", String::from_utf8_lossy(body));
        fuzz::raft_message(seed);
    }
    if let Some(dir) = std::env::var_os("KARNAK_WRITE_SEEDS") {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(
                std::path::Path::new(&dir).join(format!("seed-{i:02}")),
                seed,
            )
            .unwrap();
        }
    }
}
