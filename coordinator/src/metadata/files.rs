//! The metadata group's file system calls, through one seam: the real file
//! system (`RealDisk`), or one a caller provides. The deterministic
//! simulation (`sim/`) passes turmoil's simulated file system, whose crashes
//! drop every write not yet fsynced and every directory entry not yet
//! synced into its directory. A value chosen at run time rather than a
//! cargo feature, so building the simulation beside the broker cannot
//! switch the broker's files (features unify across a workspace build).

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use karnak_storage::StorageError;

/// A file the metadata group keeps open: positioned writes, truncation and
/// fsync are all it needs.
pub trait DiskFile: Send + Sync {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
    fn sync_all(&self) -> io::Result<()>;
}

/// The file system under the metadata group's directory.
pub trait MetadataDisk: Send + Sync + 'static {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn exists(&self, path: &Path) -> bool;
    /// Opens `path` for reading and writing, creating it (empty) if `create`.
    fn open_rw(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>>;
    /// Creates `path` empty (truncating it if it exists).
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Creates `path` and its missing parents, each synced into its parent.
    fn create_dir_durable(&self, path: &Path) -> Result<(), StorageError> {
        let mut missing = Vec::new();
        let mut p = Some(path);
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !self.exists(d)) {
            missing.push(d);
            p = d.parent();
        }
        self.create_dir_all(path).map_err(ctx("creating", path))?;
        for d in missing.iter().rev() {
            if let Some(parent) = d.parent() {
                self.sync_dir(parent)
                    .map_err(ctx("fsync directory", parent))?;
            }
        }
        Ok(())
    }

    /// Replaces `path` with `data` atomically: tmp, fsync, rename, sync dir.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), StorageError> {
        let tmp = path.with_extension("tmp");
        let f = self.create(&tmp).map_err(ctx("creating", &tmp))?;
        f.write_all_at(data, 0).map_err(ctx("writing", &tmp))?;
        f.sync_all().map_err(ctx("fsync", &tmp))?;
        self.rename(&tmp, path).map_err(ctx("renaming", &tmp))?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        self.sync_dir(dir).map_err(ctx("fsync directory", dir))
    }
}

fn ctx(what: &str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let context = format!("{what} {}", path.display());
    move |source| StorageError::Io { context, source }
}

/// The real file system, through std and karnak-storage's durable helpers.
pub struct RealDisk;

impl RealDisk {
    pub fn shared() -> Arc<dyn MetadataDisk> {
        Arc::new(RealDisk)
    }
}

impl DiskFile for std::fs::File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        std::fs::File::set_len(self, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        std::fs::File::sync_data(self)
    }
    fn sync_all(&self) -> io::Result<()> {
        std::fs::File::sync_all(self)
    }
}

impl MetadataDisk for RealDisk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn open_rw(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(f))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(std::fs::File::create(path)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
    fn create_dir_durable(&self, path: &Path) -> Result<(), StorageError> {
        karnak_storage::create_dir_durable(path)
    }
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), StorageError> {
        karnak_storage::write_atomic(path, data)
    }
}
