//! Durability against power loss: the real `karnak` on the power-cut file
//! system (`karnak-powercut`, FUSE), which throws away at a cut whatever was
//! not fsynced (file data and sizes, and directory entries whose directory
//! was not fsynced), optionally tearing the last writes at page boundaries.
//! Unlike `kill -9`, this tells acks=all from acks=1.
//!
//! Seeds are fixed (reproducible tears); `KARNAK_POWERCUT_SEEDS=1,2,3`
//! replaces them. Needs `/dev/fuse` and root, as CI has: a test that cannot
//! mount fails, it does not skip.

#[path = "../support/mod.rs"]
mod support;

mod coordinator;
mod records;
mod rig;
mod small_disks;
mod topics;
