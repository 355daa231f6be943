//! The metadata group's files on turmoil's simulated file system (one per
//! host): what a crash keeps is what was fsynced, and directory entries
//! synced into their directory.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use karnak_coordinator::metadata::{DiskFile, MetadataDisk};
use turmoil::fs::shim::std::fs as sim_fs;

pub struct SimDisk;

impl SimDisk {
    pub fn shared() -> Arc<dyn MetadataDisk> {
        Arc::new(SimDisk)
    }
}

struct SimFile(sim_fs::File);

impl DiskFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl MetadataDisk for SimDisk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        sim_fs::read(path)
    }
    fn exists(&self, path: &Path) -> bool {
        sim_fs::exists(path)
    }
    fn open_rw(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>> {
        let f = sim_fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(SimFile(f)))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(SimFile(sim_fs::File::create(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        sim_fs::rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        sim_fs::create_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sim_fs::sync_dir(dir)
    }
}
