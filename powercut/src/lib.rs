//! A power-cut simulator for durability tests: a FUSE file system, held in
//! memory, that knows which of its changes a power cut would keep.
//!
//! Tests mount it, point a real `karnak` process at a directory inside it,
//! load the broker, then [`PowerCut::cut`] the power: from that instant every
//! operation fails with EIO and the tree falls back to what was made durable
//! (see [`model`] for the rules, and for tearing). The test kills the broker
//! (a power cut leaves no survivors), [`PowerCut::restart`]s the mount on what
//! survived, starts the broker again and checks its promises.
//!
//! Unlike `kill -9`, which keeps the page cache, this loses every write that
//! was not fsynced, and every create, rename and unlink whose directory was
//! not: a test under it tells acks=all from acks=1. It also injects the
//! faults a disk has ([`Faults`]): fsync EIO (with Linux's forgetting of the
//! failed pages), write and read EIO, and a full disk (short writes, then
//! ENOSPC).
//!
//! Needs `/dev/fuse` and the right to mount (root, as in CI).

pub mod model;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

pub use model::CutReport;
use model::{Kind, Rng, Tree};

/// Faults the disk shows until changed. A fault applies to the files whose
/// path inside the mount contains its pattern (`"t-0/"`, `".log"`).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// fsync of a matching file fails with EIO, and its dirty pages are
    /// dropped unwritten (the next fsync succeeds, without them).
    pub fsync_eio: Option<String>,
    /// A write to a matching file fails with EIO.
    pub write_eio: Option<String>,
    /// A read of a matching file fails with EIO (a bad sector). What the
    /// kernel cached of those files is dropped when the fault is set, so
    /// reads reach the file system.
    pub read_eio: Option<String>,
    /// With `read_eio`: only reads that reach this byte of the file or past
    /// it fail (a bad sector in the middle; 0: the whole file). The kernel
    /// falls back to reading single pages after a failed readahead, so the
    /// pages before it stay readable.
    pub read_eio_from: u64,
    /// Bytes the file system holds at most: a write that crosses the limit
    /// writes what fits (a short write); one at the limit gets ENOSPC, as
    /// does a reservation (`fallocate`) past it.
    pub capacity: Option<u64>,
}

/// What the file system was asked to do since it was mounted first.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Successful fsyncs (and fdatasyncs) of files, by path in the mount.
    pub fsyncs: HashMap<String, u64>,
    /// Successful fsyncs of directories, by path ("" for the root).
    pub dir_fsyncs: HashMap<String, u64>,
    pub writes: u64,
    pub bytes_written: u64,
    /// Operations that failed because of a fault or a cut.
    pub faults_injected: u64,
    pub cuts: u64,
}

impl Stats {
    /// fsyncs of files whose path contains `pattern`.
    pub fn fsyncs_of(&self, pattern: &str) -> u64 {
        self.fsyncs
            .iter()
            .filter(|(n, _)| n.contains(pattern))
            .map(|(_, c)| c)
            .sum()
    }
}

struct Shared {
    tree: Tree,
    /// Set by a cut until the next mount: everything fails.
    powered_off: bool,
    faults: Faults,
    stats: Stats,
    /// Each inode's last parent and name, for fault patterns and stats.
    names: HashMap<u64, (u64, OsString)>,
}

impl Shared {
    /// The inode's path in the mount as last seen ("a/b/c"; "" for the root).
    fn path(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while let Some((parent, name)) = self.names.get(&ino) {
            parts.push(name.to_string_lossy().into_owned());
            if parts.len() > 64 {
                break;
            }
            ino = *parent;
        }
        parts.reverse();
        parts.join("/")
    }

    fn matches(&self, pattern: &Option<String>, ino: u64) -> bool {
        pattern
            .as_deref()
            .is_some_and(|p| self.path(ino).contains(p))
    }
}

/// A mounted power-cut file system. Unmounted on drop.
pub struct PowerCut {
    shared: Arc<Mutex<Shared>>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

impl PowerCut {
    /// Mounts an empty file system at `mountpoint` (an existing, empty directory).
    pub fn mount(mountpoint: &Path) -> io::Result<PowerCut> {
        let shared = Arc::new(Mutex::new(Shared {
            tree: Tree::new(),
            powered_off: false,
            faults: Faults::default(),
            stats: Stats::default(),
            names: HashMap::new(),
        }));
        let mut pc = PowerCut {
            shared,
            mountpoint: mountpoint.to_path_buf(),
            session: None,
        };
        pc.start_session()?;
        Ok(pc)
    }

    fn start_session(&mut self) -> io::Result<()> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("karnak-powercut".into()),
            MountOption::Subtype("powercut".into()),
        ];
        let fs = PowerCutFs {
            shared: self.shared.clone(),
        };
        self.session = Some(fuser::spawn_mount(fs, &self.mountpoint, &config)?);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power goes now. Every later operation fails with EIO until
    /// [`restart`](Self::restart); the tree keeps what was durable and, with
    /// a seed, a torn part of what was on its way to the disk.
    pub fn cut(&self, tear_seed: Option<u64>) -> CutReport {
        let mut s = self.lock();
        s.powered_off = true;
        s.stats.cuts += 1;
        let mut rng = tear_seed.map(Rng::new);
        s.tree.cut(rng.as_mut())
    }

    /// Power back on: unmounts (every process using the mount must be gone)
    /// and mounts what survived the cut, with a cold page cache.
    pub fn restart(&mut self) -> io::Result<()> {
        if let Some(session) = self.session.take() {
            match session.umount_and_join() {
                // The kernel ends the session that way when it unmounts
                // while requests of the killed process were still queued.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                other => other?,
            }
        }
        self.lock().powered_off = false;
        self.start_session()
    }

    pub fn set_faults(&self, faults: Faults) {
        let stale: Vec<u64> = {
            let mut s = self.lock();
            s.faults = faults;
            match s.faults.read_eio.clone() {
                Some(p) => s
                    .names
                    .keys()
                    .copied()
                    .filter(|&ino| s.path(ino).contains(&p))
                    .collect(),
                None => Vec::new(),
            }
        };
        // Sent without the lock: the kernel may call back into the file system.
        if let Some(session) = &self.session {
            let notifier = session.notifier();
            for ino in stale {
                let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
            }
        }
    }

    /// Bytes the files hold now (what `Faults::capacity` is measured against).
    pub fn used_bytes(&self) -> u64 {
        self.lock().tree.used_bytes()
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }
}

impl Drop for PowerCut {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}

/// What the kernel may cache: nothing changes behind its back (every change
/// comes through this mount, and a cut is followed by a fresh mount).
const TTL: Duration = Duration::from_secs(10);

struct PowerCutFs {
    shared: Arc<Mutex<Shared>>,
}

fn attr(ino: u64, n: &model::Node) -> FileAttr {
    let size = n.data.len() as u64;
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: n.mtime,
        mtime: n.mtime,
        ctime: n.mtime,
        crtime: n.mtime,
        kind: match n.kind {
            Kind::File => FileType::RegularFile,
            Kind::Dir => FileType::Directory,
        },
        perm: n.perm,
        nlink: if n.kind == Kind::Dir { 2 } else { 1 },
        // SAFETY: getuid/getgid cannot fail.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        rdev: 0,
        blksize: model::PAGE as u32,
        flags: 0,
    }
}

fn err(e: i32) -> Errno {
    Errno::from_i32(e)
}

impl PowerCutFs {
    /// The state, or EIO once the power is off.
    fn on(&self) -> Result<MutexGuard<'_, Shared>, Errno> {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if s.powered_off {
            s.stats.faults_injected += 1;
            return Err(Errno::EIO);
        }
        Ok(s)
    }

    fn make(
        &self,
        parent: INodeNo,
        name: &OsStr,
        kind: Kind,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let mut s = self.on()?;
        let ino = s
            .tree
            .create(parent.0, name, kind, (mode & 0o7777) as u16)
            .map_err(err)?;
        s.names.insert(ino, (parent.0, name.to_owned()));
        let n = s.tree.node(ino).map_err(err)?;
        Ok(attr(ino, n))
    }
}

impl PowerCutFs {
    /// unlink and rmdir.
    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        match self
            .on()
            .and_then(|mut s| s.tree.unlink(parent.0, name, dir).map_err(err))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.on().and_then(|mut s| {
            let ino = s.tree.lookup(parent.0, name).map_err(err)?;
            s.names.insert(ino, (parent.0, name.to_owned()));
            Ok(attr(ino, s.tree.node(ino).map_err(err)?))
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self
            .on()
            .and_then(|s| Ok(attr(ino.0, s.tree.node(ino.0).map_err(err)?)));
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.on().and_then(|mut s| {
            if let Some(size) = size {
                s.tree.truncate(ino.0, size).map_err(err)?;
            }
            let n = s.tree.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            if let Some(mode) = mode {
                n.perm = (mode & 0o7777) as u16;
            }
            match mtime {
                Some(TimeOrNow::SpecificTime(t)) => n.mtime = t,
                Some(TimeOrNow::Now) => n.mtime = SystemTime::now(),
                None => {}
            }
            Ok(attr(ino.0, n))
        });
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.make(parent, name, Kind::Dir, mode & !umask) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self
            .make(parent, name, Kind::File, mode & !umask)
            .and_then(|a| {
                self.on()?.tree.set_open(a.ino.0, 1);
                Ok(a)
            });
        match r {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.on().and_then(|mut s| {
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                return Err(Errno::EINVAL);
            }
            let ino = s.tree.lookup(parent.0, name).map_err(err)?;
            let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
            s.tree
                .rename(parent.0, name, newparent.0, newname, noreplace)
                .map_err(err)?;
            s.names.insert(ino, (newparent.0, newname.to_owned()));
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = self.on().and_then(|mut s| {
            s.tree.node(ino.0).map_err(err)?;
            s.tree.set_open(ino.0, 1);
            Ok(())
        });
        match r {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.on() {
            Ok(mut s)
                if s.matches(&s.faults.read_eio.clone(), ino.0)
                    && offset + u64::from(size) > s.faults.read_eio_from =>
            {
                s.stats.faults_injected += 1;
                reply.error(Errno::EIO)
            }
            Ok(s) => match s.tree.read(ino.0, offset, size) {
                Ok(d) => reply.data(d),
                Err(e) => reply.error(err(e)),
            },
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let r = self.on().and_then(|mut s| {
            if s.matches(&s.faults.write_eio.clone(), ino.0) {
                s.stats.faults_injected += 1;
                return Err(Errno::EIO);
            }
            let mut data = data;
            if let Some(cap) = s.faults.capacity {
                let cur = s.tree.node(ino.0).map_err(err)?.data.len() as u64;
                let grow = (offset + data.len() as u64).saturating_sub(cur);
                let room = cap.saturating_sub(s.tree.used_bytes());
                if grow > room {
                    s.stats.faults_injected += 1;
                    let fits = data.len() as u64 - (grow - room);
                    if fits == 0 {
                        return Err(Errno::ENOSPC);
                    }
                    data = &data[..fits as usize];
                }
            }
            let n = s.tree.write(ino.0, offset, data).map_err(err)?;
            s.stats.writes += 1;
            s.stats.bytes_written += n as u64;
            Ok(n as u32)
        });
        match r {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Closing after a cut is the dead process's file table going away.
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.tree.set_open(ino.0, -1);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.on().and_then(|mut s| {
            let fail = s.matches(&s.faults.fsync_eio.clone(), ino.0);
            if fail {
                s.stats.faults_injected += 1;
            }
            s.tree.fsync(ino.0, fail).map_err(err)?;
            let name = s.path(ino.0);
            *s.stats.fsyncs.entry(name).or_default() += 1;
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = match self.on() {
            Ok(s) => s,
            Err(e) => return reply.error(e),
        };
        let d = match s.tree.node(ino.0) {
            Ok(d) if d.kind == Kind::Dir => d,
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(err(e)),
        };
        let mut all = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (ino.0, FileType::Directory, OsString::from("..")),
        ];
        for (name, &i) in &d.entries {
            let kind = match s.tree.node(i).map(|n| n.kind) {
                Ok(Kind::Dir) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((i, kind, name.clone()));
        }
        for (k, (i, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(i), k as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.on().and_then(|mut s| {
            s.tree.fsync(ino.0, false).map_err(err)?;
            let name = s.path(ino.0);
            *s.stats.dir_fsyncs.entry(name).or_default() += 1;
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let bsize = model::PAGE as u64;
        let total = s.faults.capacity.unwrap_or(1 << 40) / bsize;
        let used = s.tree.used_bytes().div_ceil(bsize);
        let free = total.saturating_sub(used);
        reply.statfs(
            total,
            free,
            free,
            1 << 20,
            1 << 20,
            bsize as u32,
            255,
            bsize as u32,
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let r = self.on().and_then(|mut s| {
            let len = s.tree.node(ino.0).map_err(err)?.data.len() as u64;
            let end = offset.saturating_add(length);
            if let Some(cap) = s.faults.capacity
                && end.saturating_sub(len) > cap.saturating_sub(s.tree.used_bytes())
            {
                s.stats.faults_injected += 1;
                return Err(Errno::ENOSPC);
            }
            match mode {
                // Reserved blocks hold nothing a reader or a cut can see.
                libc::FALLOC_FL_KEEP_SIZE => Ok(()),
                0 if end > len => s.tree.truncate(ino.0, end).map_err(err),
                0 => Ok(()),
                _ => Err(Errno::EOPNOTSUPP),
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
