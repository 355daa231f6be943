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
    };
}

pub use libc;
