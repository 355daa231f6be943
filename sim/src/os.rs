//! The clock and the random bytes the C library would give, made part of
//! the seed on the simulation's thread.
//!
//! The broker reads `SystemTime::now()` and `Instant::now()` (record
//! timestamps, deadlines, session timeouts) and `std`'s `HashMap` seeds
//! its hasher from `getrandom`; on a real clock and real randomness no
//! seed would replay. The binaries that run the simulation define the C
//! library's `clock_gettime` and `getrandom` with [`interpose!`] (a
//! definition in the executable comes before the C library's); those call
//! [`clock_gettime`] and [`getrandom`] here, which answer from turmoil's
//! simulated time and a generator seeded by the seed on a thread that
//! called [`enter`], and from the kernel everywhere else.
//!
//! The same macro puts a failing disk under the simulation's thread: the
//! C library's file writes, syncs, truncations, renames and unlinks come
//! here, and once [`fail_disk_after`] has armed a failure, the chosen one
//! and every one after it fail with EIO (the first, if a write, perhaps
//! after writing part of its bytes) until [`heal_disk`]. Memory-mapped
//! writes (the indexes) and raw system calls cannot be reached this way.

use std::cell::Cell;
use std::time::Duration;

/// 2026-01-01T00:00:00Z: the simulated wall clock's start.
const EPOCH_SECS: i64 = 1_767_225_600;
/// The simulated monotonic clocks' start (any fixed value).
const MONOTONIC_SECS: i64 = 1_000;

thread_local! {
    /// The random generator's state; `None` off the simulation's thread.
    static RANDOM: Cell<Option<u64>> = const { Cell::new(None) };
    /// The last simulated time answered, for reads turmoil cannot answer
    /// (no host running, or the world borrowed).
    static LAST: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// Set while turmoil is asked the time: a clock read from inside it
    /// gets the last answer instead of asking again.
    static ASKING: Cell<bool> = const { Cell::new(false) };
    /// Only files whose path contains this fail (all when None).
    static WITHIN: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// The disk of the simulation's thread.
    static DISK: Cell<Disk> = const { Cell::new(Disk { ops: 0, fail_at: None, failed: false, tear: false }) };
}

/// A failure armed on the disk, and whether it has come.
#[derive(Clone, Copy)]
struct Disk {
    /// File changes counted since the failure was armed.
    ops: u64,
    /// The change that fails (counted from 1), while armed.
    fail_at: Option<u64>,
    /// Whether it has failed: every change since has.
    failed: bool,
    /// Whether a failing write first writes part of its bytes.
    tear: bool,
}

/// From now on this thread's clock is turmoil's and its random bytes come
/// from `seed`. Call it on a fresh thread, before anything random is made
/// (`std` draws its hash keys once per thread).
pub fn enter(seed: u64) {
    RANDOM.with(|r| r.set(Some(seed ^ 0x5851_f42d_4c95_7f2d)));
    LAST.with(|l| l.set(Duration::ZERO));
}

fn simulated() -> bool {
    RANDOM.with(|r| r.get().is_some())
}

fn elapsed() -> Duration {
    if ASKING.with(|a| a.replace(true)) {
        return LAST.with(|l| l.get());
    }
    let now = turmoil::sim_elapsed();
    ASKING.with(|a| a.set(false));
    LAST.with(|l| {
        // Never backwards, whichever host asks.
        let t = now.unwrap_or_default().max(l.get());
        l.set(t);
        t
    })
}

/// The C library's `clock_gettime`, simulated on the simulation's thread.
///
/// # Safety
/// `ts` must be valid for a write, as for the C function.
pub unsafe fn clock_gettime(id: libc::clockid_t, ts: *mut libc::timespec) -> libc::c_int {
    if !simulated() {
        // SAFETY: the caller's arguments, passed on to the kernel.
        return unsafe { libc::syscall(libc::SYS_clock_gettime, id, ts) as libc::c_int };
    }
    let base = match id {
        libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE => EPOCH_SECS,
        _ => MONOTONIC_SECS,
    };
    let t = elapsed();
    // SAFETY: the caller's pointer, valid for a write.
    unsafe {
        (*ts).tv_sec = base + t.as_secs() as i64;
        (*ts).tv_nsec = i64::from(t.subsec_nanos());
    }
    0
}

/// splitmix64: small, and enough for hash keys and ids.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The C library's `getrandom`, drawn from the seed on the simulation's
/// thread.
///
/// # Safety
/// `buf` must be valid for `len` bytes of writes, as for the C function.
pub unsafe fn getrandom(buf: *mut u8, len: usize, flags: u32) -> isize {
    let Some(mut state) = RANDOM.with(|r| r.get()) else {
        // SAFETY: the caller's arguments, passed on to the kernel.
        return unsafe { libc::syscall(libc::SYS_getrandom, buf, len, flags) as isize };
    };
    for i in (0..len).step_by(8) {
        let bytes = next(&mut state).to_le_bytes();
        let n = (len - i).min(8);
        // SAFETY: i + n <= len, within the caller's buffer.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.add(i), n) };
    }
    RANDOM.with(|r| r.set(Some(state)));
    len as isize
}

/// From the `after`th file change on this thread from now on (0: the
/// next one), every write, sync, truncation, rename and unlink fails with
/// EIO; with `tear`, a failing write first writes part of its bytes and
/// reports a short write (the caller's retry of the rest fails). With
/// `within`, only changes of files whose path contains it count and fail
/// (one partition's directory, the coordinator's logs), so a failure can be
/// aimed at the few writes of a rarer path (a transaction's markers).
/// Writes to anything but a regular file (sockets, pipes, eventfds) and to
/// standard output and error are not changes of the disk and pass.
pub fn fail_disk_after(after: u64, tear: bool, within: Option<String>) {
    WITHIN.with(|w| *w.borrow_mut() = within);
    DISK.with(|d| {
        d.set(Disk {
            ops: 0,
            fail_at: Some(after + 1),
            failed: false,
            tear,
        })
    });
}

/// Whether the failure armed by [`fail_disk_after`] has come.
pub fn disk_failed() -> bool {
    DISK.with(|d| d.get().failed)
}

/// Whether a failure is armed and has not come yet.
pub fn disk_armed() -> bool {
    DISK.with(|d| d.get().fail_at.is_some() && !d.get().failed)
}

/// The disk works again: disarmed, and no change fails.
pub fn heal_disk() {
    WITHIN.with(|w| *w.borrow_mut() = None);
    DISK.with(|d| {
        d.set(Disk {
            ops: 0,
            fail_at: None,
            failed: false,
            tear: false,
        })
    });
}

/// What becomes of one change of the disk.
#[derive(PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    /// Write part of it, then fail what is left.
    Tear,
}

/// What a change of the disk names: an open file, or a path.
#[derive(Clone, Copy)]
pub enum Target {
    Fd(libc::c_int),
    Path(*const libc::c_char),
}

fn regular_file(fd: libc::c_int) -> bool {
    if fd <= 2 {
        return false;
    }
    // SAFETY: an all-zero `stat` is a valid value; fstat only writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a raw fstat into a local; the C library's is not called, so
    // nothing here comes back through the interposed functions.
    let r = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Whether `target` is a file the armed failure may reach.
fn reached(target: Target) -> bool {
    if let Target::Fd(fd) = target
        && !regular_file(fd)
    {
        return false;
    }
    let Some(within) = WITHIN.with(|w| w.borrow().clone()) else {
        return true;
    };
    let path = match target {
        // readlink is not one of the functions interposed here.
        Target::Fd(fd) => std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
        // SAFETY: the caller's path, a C string as for the C function.
        Target::Path(p) if !p.is_null() => Some(
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned(),
        ),
        Target::Path(_) => None,
    };
    path.is_some_and(|p| p.contains(&within))
}

/// Counts a change of the disk and judges it.
fn disk_change(target: Target) -> Verdict {
    let d = DISK.with(|d| d.get());
    // Off the simulation's thread nothing is armed; on it, nothing is
    // counted until a failure is.
    if d.fail_at.is_none() || !reached(target) {
        return Verdict::Pass;
    }
    let mut d = d;
    d.ops += 1;
    let verdict = if d.failed {
        Verdict::Fail
    } else if Some(d.ops) == d.fail_at {
        d.failed = true;
        if d.tear { Verdict::Tear } else { Verdict::Fail }
    } else {
        Verdict::Pass
    };
    DISK.with(|c| c.set(d));
    verdict
}

fn eio<T: From<i8>>() -> T {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = libc::EIO };
    T::from(-1)
}

/// The part of a torn write of `len` bytes that reaches the file: at
/// least one byte, never all of them.
fn torn(len: usize) -> usize {
    let ops = DISK.with(|d| d.get().ops) as usize;
    1 + ops.wrapping_mul(2_654_435_761) % (len - 1)
}

/// The C library's `write`, failing on the simulation's failed disk.
///
/// # Safety
/// As the C function.
pub unsafe fn write(fd: libc::c_int, buf: *const libc::c_void, len: usize) -> isize {
    let len = match disk_change(Target::Fd(fd)) {
        Verdict::Pass => len,
        Verdict::Tear if len > 1 => torn(len),
        _ => return eio(),
    };
    // SAFETY: the caller's arguments (a prefix of its buffer).
    unsafe { libc::syscall(libc::SYS_write, fd, buf, len) as isize }
}

/// The C library's `pwrite64`, failing on the simulation's failed disk.
///
/// # Safety
/// As the C function.
pub unsafe fn pwrite64(
    fd: libc::c_int,
    buf: *const libc::c_void,
    len: usize,
    offset: libc::off64_t,
) -> isize {
    let len = match disk_change(Target::Fd(fd)) {
        Verdict::Pass => len,
        Verdict::Tear if len > 1 => torn(len),
        _ => return eio(),
    };
    // SAFETY: the caller's arguments (a prefix of its buffer).
    unsafe { libc::syscall(libc::SYS_pwrite64, fd, buf, len, offset) as isize }
}

/// The C library's `writev`, failing (whole) on the simulation's failed disk.
///
/// # Safety
/// As the C function.
pub unsafe fn writev(fd: libc::c_int, iov: *const libc::iovec, n: libc::c_int) -> isize {
    if disk_change(Target::Fd(fd)) != Verdict::Pass {
        return eio();
    }
    // SAFETY: the caller's arguments.
    unsafe { libc::syscall(libc::SYS_writev, fd, iov, n) as isize }
}

/// A call of one of the C library's functions that change the disk and
/// answer 0 or -1; `call` makes the system call.
pub fn change(target: Target, call: impl FnOnce() -> libc::c_long) -> libc::c_int {
    if disk_change(target) != Verdict::Pass {
        return eio();
    }
    call() as libc::c_int
}

/// Defines `clock_gettime` and `getrandom` in the crate it is used in (a
/// binary or a test target: the definitions must be in the executable's
/// own objects to come before the C library's), calling [`clock_gettime`]
/// and [`getrandom`].
#[macro_export]
macro_rules! interpose {
    () => {
        /// See `karnak_sim::os`.
        ///
        /// # Safety
        /// As the C library's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn clock_gettime(
            id: $crate::os::libc::clockid_t,
            ts: *mut $crate::os::libc::timespec,
        ) -> $crate::os::libc::c_int {
            unsafe { $crate::os::clock_gettime(id, ts) }
        }

        /// See `karnak_sim::os`.
        ///
        /// # Safety
        /// As the C library's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn getrandom(buf: *mut u8, len: usize, flags: u32) -> isize {
            unsafe { $crate::os::getrandom(buf, len, flags) }
        }

        /// See `karnak_sim::os`.
        ///
        /// # Safety
        /// As the C library's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn write(
            fd: $crate::os::libc::c_int,
            buf: *const $crate::os::libc::c_void,
            len: usize,
        ) -> isize {
            unsafe { $crate::os::write(fd, buf, len) }
        }

        /// See `karnak_sim::os`.
        ///
        /// # Safety
        /// As the C library's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn pwrite64(
            fd: $crate::os::libc::c_int,
            buf: *const $crate::os::libc::c_void,
            len: usize,
            offset: $crate::os::libc::off64_t,
        ) -> isize {
            unsafe { $crate::os::pwrite64(fd, buf, len, offset) }
        }

        /// See `karnak_sim::os`.
        ///
        /// # Safety
        /// As the C library's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn writev(
            fd: $crate::os::libc::c_int,
            iov: *const $crate::os::libc::iovec,
            n: $crate::os::libc::c_int,
        ) -> isize {
            unsafe { $crate::os::writev(fd, iov, n) }
        }

        /// See `karnak_sim::os`.
        #[unsafe(no_mangle)]
        pub extern "C" fn fsync(fd: $crate::os::libc::c_int) -> $crate::os::libc::c_int {
            use $crate::os::libc;
            // SAFETY: the caller's descriptor, passed on to the kernel.
            $crate::os::change($crate::os::Target::Fd(fd), || unsafe {
                libc::syscall(libc::SYS_fsync, fd)
            })
        }

        /// See `karnak_sim::os`.
        #[unsafe(no_mangle)]
        pub extern "C" fn fdatasync(fd: $crate::os::libc::c_int) -> $crate::os::libc::c_int {
            use $crate::os::libc;
            // SAFETY: the caller's descriptor, passed on to the kernel.
            $crate::os::change($crate::os::Target::Fd(fd), || unsafe {
                libc::syscall(libc::SYS_fdatasync, fd)
            })
        }

        /// See `karnak_sim::os`.
        #[unsafe(no_mangle)]
        pub extern "C" fn ftruncate64(
            fd: $crate::os::libc::c_int,
            len: $crate::os::libc::off64_t,
        ) -> $crate::os::libc::c_int {
            use $crate::os::libc;
            // SAFETY: the caller's descriptor, passed on to the kernel.
            $crate::os::change($crate::os::Target::Fd(fd), || unsafe {
                libc::syscall(libc::SYS_ftruncate, fd, len)
            })
        }

        /// See `karnak_sim::os`.
        ///
        /// # Safety
        /// As the C library's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn rename(
            from: *const $crate::os::libc::c_char,
            to: *const $crate::os::libc::c_char,
        ) -> $crate::os::libc::c_int {
            use $crate::os::libc;
            // SAFETY: the caller's paths, passed on to the kernel.
            $crate::os::change($crate::os::Target::Path(from), || unsafe {
                libc::syscall(libc::SYS_rename, from, to)
            })
        }

        /// See `karnak_sim::os`.
        ///
        /// # Safety
        /// As the C library's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn unlink(
            path: *const $crate::os::libc::c_char,
        ) -> $crate::os::libc::c_int {
            use $crate::os::libc;
            // SAFETY: the caller's path, passed on to the kernel.
            $crate::os::change($crate::os::Target::Path(path), || unsafe {
                libc::syscall(libc::SYS_unlink, path)
            })
        }

        /// See `karnak_sim::os`.
        ///
        /// # Safety
        /// As the C library's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn unlinkat(
            dir: $crate::os::libc::c_int,
            path: *const $crate::os::libc::c_char,
            flags: $crate::os::libc::c_int,
        ) -> $crate::os::libc::c_int {
            use $crate::os::libc;
            // SAFETY: the caller's arguments, passed on to the kernel.
            $crate::os::change($crate::os::Target::Path(path), || unsafe {
                libc::syscall(libc::SYS_unlinkat, dir, path, flags)
            })
        }
    };
}

pub use libc;
