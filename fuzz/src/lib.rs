//! What the fuzz targets share: the broker's allocator (so a target sees
//! what the broker would do with an input), and a scratch directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A scratch directory for targets that decode files: on tmpfs where there
/// is one (fast, and nothing left on the disk); each target removes what
/// it wrote.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join("karnak-fuzz");
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

/// As the broker's (karnak's main.rs): without it, kafka-protocol's
/// up-front `Vec::with_capacity` of a claimed count is an allocation the
/// fuzzer reports, while the broker maps it unreserved and moves on.
#[global_allocator]
static ALLOCATOR: karnak_protocol::alloc::Allocator = karnak_protocol::alloc::Allocator;
