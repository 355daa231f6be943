//! The metadata group's file system calls, through one seam: std's, or
//! with the `sim` feature turmoil's simulated file system, whose crashes
//! drop every write not yet fsynced and every directory entry not yet
//! synced into its directory (the deterministic simulation in `sim/`).
//! Production builds never enable `sim`.

#[cfg(not(feature = "sim"))]
pub use karnak_storage::{create_dir_durable, sync_dir, write_atomic};
#[cfg(not(feature = "sim"))]
pub use std::fs::{File, OpenOptions, read, rename};

#[cfg(feature = "sim")]
pub use simulated::*;

#[cfg(feature = "sim")]
mod simulated {
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use karnak_storage::StorageError;
    use turmoil::fs::shim::std::fs as sim_fs;
    pub use turmoil::fs::shim::std::fs::{File, OpenOptions, read, rename};

    fn ctx(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
        let context = format!("{what} {}", path.display());
        move |source| StorageError::Io { context, source }
    }

    pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
        sim_fs::sync_dir(dir).map_err(ctx("fsync directory", dir))
    }

    /// As `karnak_storage::create_dir_durable`: each new directory is
    /// synced into its parent.
    pub fn create_dir_durable(path: &Path) -> Result<(), StorageError> {
        let mut missing = Vec::new();
        let mut p = Some(path);
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !sim_fs::exists(d)) {
            missing.push(d);
            p = d.parent();
        }
        sim_fs::create_dir_all(path).map_err(ctx("creating", path))?;
        for d in missing.iter().rev() {
            if let Some(parent) = d.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }

    /// As `karnak_storage::write_atomic`: tmp, fsync, rename, sync dir.
    pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StorageError> {
        let tmp = path.with_extension("tmp");
        let f = File::create(&tmp).map_err(ctx("creating", &tmp))?;
        f.write_all_at(data, 0).map_err(ctx("writing", &tmp))?;
        f.sync_all().map_err(ctx("fsync", &tmp))?;
        rename(&tmp, path).map_err(ctx("renaming", &tmp))?;
        sync_dir(path.parent().unwrap_or(Path::new("/")))
    }
}
