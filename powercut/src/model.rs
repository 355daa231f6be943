//! The file tree behind the mount, kept twice: what processes see (the page
//! cache's view) and what a power cut would leave (the disk's view).
//!
//! The rules are POSIX's, taken strictly (as LazyFS and ALICE take them):
//! - a file's data and size reach the disk when the file is fsynced
//!   (`fsync` and `fdatasync` alike);
//! - a name created, removed or renamed in a directory reaches the disk when
//!   that directory is fsynced; a file fsynced while its name is not is lost
//!   with the name;
//! - everything else is lost at a cut, unless the cut tears: then any subset
//!   of a file's dirty pages, either of its sizes and any prefix of a
//!   directory's pending changes may have reached the disk first, as the
//!   kernel's write-back may have started before the power went.
//!
//! An fsync that fails (injected) forgets the file's dirty pages without
//! writing them, as Linux does after a write-back error ("fsyncgate"): a
//! later fsync succeeds, and the data it was meant to cover is still gone
//! at the next cut.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

pub const PAGE: usize = 4096;
pub const ROOT: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// A change to a directory not yet made durable, kept in order so that a
/// torn cut can keep a prefix of them.
#[derive(Debug, Clone)]
enum DirOp {
    Link(OsString, u64),
    Unlink(OsString),
}

#[derive(Debug)]
pub struct Node {
    pub kind: Kind,
    pub perm: u16,
    pub mtime: SystemTime,
    /// File contents as processes read them.
    pub data: Vec<u8>,
    /// File contents on the disk.
    durable: Vec<u8>,
    /// Pages of `data` written since the last fsync (a sorted set would do;
    /// a map keeps the order deterministic for seeded tears).
    dirty: BTreeMap<usize, ()>,
    size_dirty: bool,
    /// Directory entries as processes see them, and on the disk.
    pub entries: BTreeMap<OsString, u64>,
    durable_entries: BTreeMap<OsString, u64>,
    pending: Vec<DirOp>,
    /// Open handles (and mappings): an unlinked file lives until they close.
    pub open: u32,
}

impl Node {
    fn new(kind: Kind, perm: u16) -> Node {
        Node {
            kind,
            perm,
            mtime: SystemTime::now(),
            data: Vec::new(),
            durable: Vec::new(),
            dirty: BTreeMap::new(),
            size_dirty: false,
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
            pending: Vec::new(),
            open: 0,
        }
    }

    fn mark_dirty(&mut self, from: usize, to: usize) {
        if to > from {
            for p in from / PAGE..to.div_ceil(PAGE) {
                self.dirty.insert(p, ());
            }
        }
    }

    /// Makes the data and size durable.
    fn sync(&mut self) {
        self.durable.resize(self.data.len(), 0);
        for &p in self.dirty.keys() {
            let (a, b) = (p * PAGE, ((p + 1) * PAGE).min(self.data.len()));
            if a < b {
                self.durable[a..b].copy_from_slice(&self.data[a..b]);
            }
        }
        self.dirty.clear();
        self.size_dirty = false;
    }

    /// Forgets the dirty pages without writing them (a failed write-back).
    fn drop_dirty(&mut self) {
        self.dirty.clear();
        self.size_dirty = false;
    }
}

/// What a cut left, for the test's report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CutReport {
    /// Dirty file pages thrown away, and kept by a tear.
    pub pages_lost: u64,
    pub pages_torn_in: u64,
    /// Directory changes thrown away, and kept by a tear.
    pub dir_ops_lost: u64,
    pub dir_ops_torn_in: u64,
    /// Files and directories that no longer exist.
    pub nodes_lost: u64,
}

/// Seeded SplitMix64: the same seed tears the same way on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

#[derive(Debug)]
pub struct Tree {
    pub nodes: HashMap<u64, Node>,
    next_ino: u64,
}

pub type Res<T> = Result<T, i32>;

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    pub fn new() -> Tree {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(Kind::Dir, 0o755));
        Tree {
            nodes,
            next_ino: ROOT + 1,
        }
    }

    pub fn node(&self, ino: u64) -> Res<&Node> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Res<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn dir_mut(&mut self, ino: u64) -> Res<&mut Node> {
        let n = self.node_mut(ino)?;
        if n.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok(n)
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Res<u64> {
        let d = self.node(parent)?;
        if d.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        d.entries.get(name).copied().ok_or(libc::ENOENT)
    }

    /// Bytes held by files as processes see them (for the ENOSPC limit).
    pub fn used_bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| n.data.len().max(n.durable.len()) as u64)
            .sum()
    }

    pub fn create(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Res<u64> {
        if self.lookup(parent, name).is_ok() {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, Node::new(kind, perm));
        let d = self.dir_mut(parent)?;
        d.entries.insert(name.to_owned(), ino);
        d.pending.push(DirOp::Link(name.to_owned(), ino));
        d.mtime = SystemTime::now();
        Ok(ino)
    }

    pub fn unlink(&mut self, parent: u64, name: &OsStr, want_dir: bool) -> Res<()> {
        let ino = self.lookup(parent, name)?;
        let n = self.node(ino)?;
        match (n.kind, want_dir) {
            (Kind::Dir, false) => return Err(libc::EISDIR),
            (Kind::File, true) => return Err(libc::ENOTDIR),
            (Kind::Dir, true) if !n.entries.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        let d = self.dir_mut(parent)?;
        d.entries.remove(name);
        d.pending.push(DirOp::Unlink(name.to_owned()));
        d.mtime = SystemTime::now();
        self.maybe_free(ino);
        Ok(())
    }

    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        noreplace: bool,
    ) -> Res<()> {
        let ino = self.lookup(parent, name)?;
        let replaced = self.lookup(newparent, newname).ok();
        if let Some(old) = replaced {
            if noreplace {
                return Err(libc::EEXIST);
            }
            if old == ino {
                return Ok(());
            }
            let (a, b) = (self.node(ino)?.kind, self.node(old)?);
            match (a, b.kind) {
                (Kind::File, Kind::Dir) => return Err(libc::EISDIR),
                (Kind::Dir, Kind::File) => return Err(libc::ENOTDIR),
                (Kind::Dir, Kind::Dir) if !b.entries.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        let d = self.dir_mut(parent)?;
        d.entries.remove(name);
        d.pending.push(DirOp::Unlink(name.to_owned()));
        d.mtime = SystemTime::now();
        let nd = self.dir_mut(newparent)?;
        nd.entries.insert(newname.to_owned(), ino);
        nd.pending.push(DirOp::Link(newname.to_owned(), ino));
        nd.mtime = SystemTime::now();
        if let Some(old) = replaced {
            self.maybe_free(old);
        }
        Ok(())
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Res<&[u8]> {
        let n = self.node(ino)?;
        let len = n.data.len();
        let a = (offset as usize).min(len);
        let b = a.saturating_add(size as usize).min(len);
        Ok(&n.data[a..b])
    }

    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Res<usize> {
        let n = self.node_mut(ino)?;
        let a = usize::try_from(offset).map_err(|_| libc::EFBIG)?;
        let b = a.checked_add(data.len()).ok_or(libc::EFBIG)?;
        if b > n.data.len() {
            n.data.resize(b, 0);
            n.size_dirty = true;
        }
        n.data[a..b].copy_from_slice(data);
        n.mark_dirty(a, b);
        n.mtime = SystemTime::now();
        Ok(data.len())
    }

    pub fn truncate(&mut self, ino: u64, size: u64) -> Res<()> {
        let n = self.node_mut(ino)?;
        if n.kind != Kind::File {
            return Err(libc::EISDIR);
        }
        let size = usize::try_from(size).map_err(|_| libc::EFBIG)?;
        let old = n.data.len();
        n.data.resize(size, 0);
        // The page the new end falls in, and any grown pages, differ from disk.
        n.mark_dirty(size.min(old), size.max(old));
        n.size_dirty = true;
        n.mtime = SystemTime::now();
        Ok(())
    }

    pub fn fsync(&mut self, ino: u64, fail: bool) -> Res<()> {
        let n = self.node_mut(ino)?;
        if fail {
            n.drop_dirty();
            return Err(libc::EIO);
        }
        match n.kind {
            Kind::File => n.sync(),
            Kind::Dir => {
                let old = std::mem::replace(&mut n.durable_entries, n.entries.clone());
                n.pending.clear();
                // Names the disk no longer has may have held the last reference.
                for g in old.into_values() {
                    self.maybe_free(g);
                }
            }
        }
        Ok(())
    }

    /// Whether any directory, as seen or as on disk, names `ino`.
    fn linked(&self, ino: u64) -> bool {
        ino == ROOT
            || self.nodes.values().any(|d| {
                d.kind == Kind::Dir
                    && (d.entries.values().any(|&i| i == ino)
                        || d.durable_entries.values().any(|&i| i == ino))
            })
    }

    /// Frees a node no name refers to, on screen or on disk, and no one has open.
    pub fn maybe_free(&mut self, ino: u64) {
        if self.nodes.get(&ino).is_some_and(|n| n.open == 0) && !self.linked(ino) {
            self.nodes.remove(&ino);
        }
    }

    pub fn set_open(&mut self, ino: u64, delta: i32) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open = n.open.saturating_add_signed(delta);
        }
        if delta < 0 {
            self.maybe_free(ino);
        }
    }

    /// The power goes: keeps what the disk holds (and, with `tear`, some of
    /// what was on its way), forgets the rest. Open handles die with the
    /// processes; the tree is what the next mount shows.
    pub fn cut(&mut self, tear: Option<&mut Rng>) -> CutReport {
        let mut report = CutReport::default();
        let mut rng = tear;
        let mut inos: Vec<u64> = self.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in &inos {
            let n = self.nodes.get_mut(ino).expect("listed above");
            n.open = 0;
            match n.kind {
                Kind::File => {
                    let dirty: Vec<usize> = n.dirty.keys().copied().collect();
                    let mut size = n.durable.len();
                    if let Some(r) = rng.as_deref_mut()
                        && n.size_dirty
                        && r.coin()
                    {
                        size = n.data.len();
                    }
                    n.durable.resize(size, 0);
                    for p in dirty {
                        let torn_in = rng.as_deref_mut().is_some_and(|r| r.coin());
                        let (a, b) = (p * PAGE, ((p + 1) * PAGE).min(size).min(n.data.len()));
                        if torn_in && a < b {
                            n.durable[a..b].copy_from_slice(&n.data[a..b]);
                            report.pages_torn_in += 1;
                        } else {
                            report.pages_lost += 1;
                        }
                    }
                    n.data = n.durable.clone();
                    n.dirty.clear();
                    n.size_dirty = false;
                }
                Kind::Dir => {
                    let keep = match rng.as_deref_mut() {
                        Some(r) => r.below(n.pending.len() as u64 + 1) as usize,
                        None => 0,
                    };
                    report.dir_ops_torn_in += keep as u64;
                    report.dir_ops_lost += (n.pending.len() - keep) as u64;
                    let mut entries = n.durable_entries.clone();
                    for op in n.pending.drain(..keep) {
                        match op {
                            DirOp::Link(name, i) => entries.insert(name, i),
                            DirOp::Unlink(name) => entries.remove(&name),
                        };
                    }
                    n.pending.clear();
                    n.durable_entries = entries.clone();
                    n.entries = entries;
                }
            }
        }
        // Only what the root still reaches exists; a torn-in name may point
        // at a node already freed (its file was gone): drop such names.
        let mut reached = std::collections::HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(d) = stack.pop() {
            let names: Vec<(OsString, u64)> = self.nodes[&d]
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            for (name, i) in names {
                match self.nodes.get(&i) {
                    Some(child) if !reached.contains(&i) => {
                        if child.kind == Kind::Dir {
                            stack.push(i);
                        }
                        reached.insert(i);
                    }
                    _ => {
                        let dn = self.nodes.get_mut(&d).expect("reached");
                        dn.entries.remove(&name);
                        dn.durable_entries.remove(&name);
                    }
                }
            }
        }
        let before = self.nodes.len();
        self.nodes.retain(|i, _| reached.contains(i));
        report.nodes_lost = (before - self.nodes.len()) as u64;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn unsynced_data_and_names_are_lost() {
        let mut t = Tree::new();
        let f = t.create(ROOT, name("a"), Kind::File, 0o644).unwrap();
        t.write(f, 0, b"hello").unwrap();
        t.fsync(f, false).unwrap();
        // The file is durable but its name is not: both go.
        let r = t.cut(None);
        assert!(t.lookup(ROOT, name("a")).is_err());
        assert_eq!(r.nodes_lost, 1);
    }

    #[test]
    fn fsynced_file_and_dir_survive_later_writes_do_not() {
        let mut t = Tree::new();
        let f = t.create(ROOT, name("a"), Kind::File, 0o644).unwrap();
        t.write(f, 0, b"hello").unwrap();
        t.fsync(f, false).unwrap();
        t.fsync(ROOT, false).unwrap();
        t.write(f, 5, b" world").unwrap();
        t.cut(None);
        let f = t.lookup(ROOT, name("a")).unwrap();
        assert_eq!(t.read(f, 0, 100).unwrap(), b"hello");
    }

    #[test]
    fn a_failed_fsync_loses_the_pages_a_later_one_does_not_cover() {
        let mut t = Tree::new();
        let f = t.create(ROOT, name("a"), Kind::File, 0o644).unwrap();
        t.fsync(ROOT, false).unwrap();
        t.write(f, 0, b"acked?").unwrap();
        assert_eq!(t.fsync(f, true), Err(libc::EIO));
        // Still readable, and a retry "succeeds" ...
        assert_eq!(t.read(f, 0, 100).unwrap(), b"acked?");
        t.fsync(f, false).unwrap();
        t.cut(None);
        // ... but only the size reached the disk, not the data.
        let f = t.lookup(ROOT, name("a")).unwrap();
        assert_eq!(t.read(f, 0, 100).unwrap(), &[0u8; 6]);
    }

    #[test]
    fn unsynced_unlink_and_rename_are_undone() {
        let mut t = Tree::new();
        let a = t.create(ROOT, name("a"), Kind::File, 0o644).unwrap();
        t.write(a, 0, b"A").unwrap();
        t.fsync(a, false).unwrap();
        t.fsync(ROOT, false).unwrap();
        t.rename(ROOT, name("a"), ROOT, name("b"), false).unwrap();
        t.cut(None);
        assert!(t.lookup(ROOT, name("a")).is_ok());
        assert!(t.lookup(ROOT, name("b")).is_err());
    }

    #[test]
    fn tears_are_page_granular_and_seeded() {
        let run = |seed| {
            let mut t = Tree::new();
            let f = t.create(ROOT, name("a"), Kind::File, 0o644).unwrap();
            t.fsync(f, false).unwrap();
            t.fsync(ROOT, false).unwrap();
            t.write(f, 0, &vec![7u8; 8 * PAGE]).unwrap();
            let r = t.cut(Some(&mut Rng::new(seed)));
            let f = t.lookup(ROOT, name("a")).unwrap();
            (r, t.read(f, 0, u32::MAX).unwrap().to_vec())
        };
        let (r1, d1) = run(3);
        let (r2, d2) = run(3);
        assert_eq!((&r1, &d1), (&r2, &d2));
        for page in d1.chunks(PAGE) {
            assert!(page.iter().all(|&b| b == 7) || page.iter().all(|&b| b == 0));
        }
        assert_eq!(r1.pages_lost + r1.pages_torn_in, 8);
    }
}
