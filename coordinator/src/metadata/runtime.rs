//! openraft's Tokio runtime with one change: the generator it draws
//! election timeouts from is seeded through `std`'s hash keys instead of
//! `rand::thread_rng`. Both come from the kernel on a real broker; but
//! rand 0.8 reads it with a raw `getrandom` system call, which the
//! deterministic simulation cannot reach, so a simulated cluster's
//! elections (and everything after the first one) differed from run to
//! run of the same seed. `std` asks the C library's `getrandom`, which the
//! simulation answers from the seed (`karnak_sim::os`).

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The metadata group's runtime: [`TokioRuntime`] in all but its
/// generator.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MetadataRuntime;

/// A fresh 64-bit seed: each `RandomState` has its own keys (the thread's
/// random keys, the first incremented each time), so hashing nothing with
/// one gives a new value per call.
fn fresh_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

impl AsyncRuntime for MetadataRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = StdRng;
    type OneshotSender<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <TokioRuntime as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        StdRng::seed_from_u64(fresh_seed())
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        TokioRuntime::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn each_generator_draws_its_own_timeouts() {
        let draws: std::collections::BTreeSet<u64> = (0..64)
            .map(|_| MetadataRuntime::thread_rng().gen_range(300..600_000))
            .collect();
        // Seeded alike, every draw would be the same value.
        assert!(draws.len() > 60, "{draws:?}");
    }
}
