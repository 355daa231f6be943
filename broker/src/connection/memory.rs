//! `queued.max.request.bytes`: one budget for the bytes of requests being
//! read and handled, over every connection. A connection whose next request
//! does not fit waits before reading its body, so a thousand clients sending
//! 100 MiB requests at once cost the budget, not 100 GB: the rest of their
//! bytes wait in the kernel's socket buffers and TCP slows the senders.
//!
//! A request is charged from the moment its size is known until its handler
//! has taken it (dispatch returns), as Kafka's memory pool is: replies that
//! wait (acks=all, long polls) hold nothing, so a full budget can never
//! keep out the follower fetches those replies wait for.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;

#[derive(Clone)]
pub struct RequestMemory {
    /// None: no bound.
    budget: Option<(Arc<Semaphore>, usize)>,
}

/// Bytes of one request, given back to the budget when dropped.
#[derive(Debug)]
pub struct Charged {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
}

impl Drop for Charged {
    fn drop(&mut self) {
        metrics::gauge!(m::QUEUED_REQUEST_BYTES).decrement(self.bytes as f64);
    }
}

impl RequestMemory {
    pub fn new(max_bytes: Option<usize>) -> Self {
        if let Some(max) = max_bytes {
            metrics::gauge!(m::QUEUED_REQUEST_BYTES_MAX).set(max as f64);
        }
        RequestMemory {
            budget: max_bytes.map(|max| (Arc::new(Semaphore::new(max)), max)),
        }
    }

    pub fn bounded(&self) -> bool {
        self.budget.is_some()
    }

    /// Charges a request of `bytes`, waiting until they fit. A request
    /// larger than the whole budget takes all of it (it is served alone).
    pub async fn charge(&self, bytes: usize) -> Option<Charged> {
        let (sem, max) = self.budget.as_ref()?;
        // Never more than the budget, and within a permit count's range
        // (frames are under 2 GiB).
        let n = bytes.min(*max).min(u32::MAX as usize) as u32;
        let permit = match sem.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!(m::QUEUED_REQUEST_WAITS).increment(1);
                // Closed never happens: the semaphore lives as long as `self`.
                sem.clone().acquire_many_owned(n).await.ok()?
            }
        };
        metrics::gauge!(m::QUEUED_REQUEST_BYTES).increment(f64::from(n));
        Some(Charged {
            _permit: permit,
            bytes: n as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::time::Duration;

    #[tokio::test]
    async fn a_request_waits_until_its_bytes_fit() {
        let mem = RequestMemory::new(Some(100));
        let a = mem.charge(60).await.unwrap();
        assert!(
            mem.charge(50).now_or_never().is_none(),
            "60 + 50 bytes do not fit in 100"
        );
        let b = mem.charge(40).now_or_never().flatten().unwrap();
        let waiting = tokio::spawn({
            let mem = mem.clone();
            async move { mem.charge(50).await.map(|c| c.bytes) }
        });
        drop(a);
        let got = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert_eq!(got.unwrap().unwrap(), Some(50), "woken when 60 came back");
        drop(b);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_takes_all_of_it() {
        let mem = RequestMemory::new(Some(100));
        let big = mem.charge(1 << 30).await.unwrap();
        assert_eq!(big.bytes, 100);
        drop(big);
        assert_eq!(mem.charge(100).await.unwrap().bytes, 100);
        assert!(RequestMemory::new(None).charge(1 << 30).await.is_none());
    }
}
