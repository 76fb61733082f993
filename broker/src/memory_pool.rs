//! The broker-wide bound on request and response bytes held in memory, as
//! Kafka's `queued.max.request.bytes`: a produce request reserves its size,
//! known from its gRPC length prefix, before its body is buffered, and keeps
//! it until its batches are appended or dropped; a fetch reserves what it may
//! send before it reads from disk and keeps what it read until the response
//! body has been sent or dropped.
//!
//! While the pool is full, new requests wait (Kafka stops reading from the
//! sockets; a waiting request here does not read its body, so HTTP/2 flow
//! control stops the client once the stream's window is full), up to the
//! request's deadline, then fail with RESOURCE_EXHAUSTED. The semaphore is
//! first-in first-out, so a large request is not starved by a stream of
//! small ones. A request larger than the whole pool is refused at once.
//!
//! Invariant: the bytes reserved never exceed the capacity, and every
//! reservation gives its bytes back when dropped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::BrokerError;

/// A byte-counting semaphore shared by every connection.
#[derive(Debug)]
pub struct MemoryPool {
    capacity_bytes: usize,
    /// One permit per byte.
    permits: Semaphore,
    in_use_bytes: AtomicUsize,
    in_use_bytes_max: AtomicUsize,
    /// Reservations that found the pool full and waited.
    waits: AtomicU64,
    /// Waits that reached their deadline without the bytes.
    timeouts: AtomicU64,
}

/// Bytes held from a [`MemoryPool`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    pool: Arc<MemoryPool>,
    bytes: usize,
}

impl MemoryPool {
    pub fn new(capacity_bytes: usize) -> Arc<MemoryPool> {
        let capacity_bytes = capacity_bytes.min(Semaphore::MAX_PERMITS);
        Arc::new(MemoryPool {
            capacity_bytes,
            permits: Semaphore::new(capacity_bytes),
            in_use_bytes: AtomicUsize::new(0),
            in_use_bytes_max: AtomicUsize::new(0),
            waits: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        })
    }

    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// Bytes reserved now.
    pub fn in_use_bytes(&self) -> usize {
        self.in_use_bytes.load(Ordering::Acquire)
    }

    /// The most bytes ever reserved at once since the broker started.
    pub fn in_use_bytes_max(&self) -> usize {
        self.in_use_bytes_max.load(Ordering::Acquire)
    }

    /// How many reservations found the pool full and had to wait.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// How many waits for memory reached their deadline and failed.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Acquire)
    }

    /// Reserves `bytes`, waiting until `deadline` for others to give theirs
    /// back. `what` names the request in the error ("a produce request").
    pub async fn reserve(
        self: &Arc<Self>,
        bytes: usize,
        deadline: Instant,
        what: &str,
    ) -> Result<Reservation, BrokerError> {
        if bytes > self.capacity_bytes {
            return Err(BrokerError::LargerThanMemoryPool {
                reason: format!(
                    "{what} needs {bytes} bytes, more than the {} bytes of queued_request_bytes_max",
                    self.capacity_bytes
                ),
            });
        }
        if bytes == 0 {
            return Ok(Reservation {
                pool: Arc::clone(self),
                bytes: 0,
            });
        }
        // Requests and fetch responses are below 4 GiB (a gRPC message's
        // length is a u32), so one acquisition covers any of them.
        let permits = u32::try_from(bytes).map_err(|_| BrokerError::LargerThanMemoryPool {
            reason: format!("{what} needs {bytes} bytes, more than one request may hold"),
        })?;
        // A queued waiter takes the permits given back first, so this
        // succeeds only when nobody waits: it never jumps the queue.
        if let Ok(permit) = self.permits.try_acquire_many(permits) {
            permit.forget();
            return Ok(self.taken(bytes));
        }
        self.waits.fetch_add(1, Ordering::Relaxed);
        let acquired = tokio::time::timeout_at(deadline, self.permits.acquire_many(permits)).await;
        match acquired {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(self.taken(bytes))
            }
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => {
                self.timeouts.fetch_add(1, Ordering::AcqRel);
                Err(BrokerError::MemoryExhausted {
                    reason: format!(
                        "{what} waited for {bytes} bytes until its deadline; \
                         queued_request_bytes_max ({} bytes) stayed in use by other requests",
                        self.capacity_bytes
                    ),
                })
            }
        }
    }

    /// A reservation of no bytes, to grow with [`Reservation::absorb`].
    pub fn nothing(self: &Arc<Self>) -> Reservation {
        Reservation {
            pool: Arc::clone(self),
            bytes: 0,
        }
    }

    /// Reserves `bytes` if they are free now, without waiting: for a request
    /// that already holds memory, which must not wait for more while holding
    /// it (two such requests could wait for each other).
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        if bytes == 0 {
            return Some(Reservation {
                pool: Arc::clone(self),
                bytes: 0,
            });
        }
        let permit = self
            .permits
            .try_acquire_many(u32::try_from(bytes).ok()?)
            .ok()?;
        permit.forget();
        Some(self.taken(bytes))
    }

    fn taken(self: &Arc<Self>, bytes: usize) -> Reservation {
        let in_use = self.in_use_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        debug_assert!(in_use <= self.capacity_bytes, "the memory pool overflowed");
        self.in_use_bytes_max.fetch_max(in_use, Ordering::AcqRel);
        Reservation {
            pool: Arc::clone(self),
            bytes,
        }
    }

    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        // Counted out before the permits return, so a waiter that takes them
        // never sees more than the capacity in use.
        self.in_use_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.permits.add_permits(bytes);
    }
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes over `other`'s bytes (of the same pool).
    pub fn absorb(&mut self, mut other: Reservation) {
        debug_assert!(Arc::ptr_eq(&self.pool, &other.pool));
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Gives back everything above `bytes` (a fetch that read less than it
    /// reserved).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.pool.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test]
    async fn a_reservation_waits_for_bytes_given_back_and_never_exceeds_the_capacity() {
        let pool = MemoryPool::new(100);
        let mut first = pool.reserve(70, soon(), "a test").await.unwrap();
        let waiting = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.reserve(60, soon(), "a test").await.map(|r| r.bytes()) }
        });
        // Not enough yet: 70 + 60 > 100. Shrinking to 40 makes room.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        first.shrink_to(40);
        assert_eq!(waiting.await.unwrap().unwrap(), 60);
        assert_eq!(pool.in_use_bytes(), 40);
        assert!(pool.in_use_bytes_max() <= 100);
        drop(first);
        assert_eq!(pool.in_use_bytes(), 0);
    }

    #[tokio::test]
    async fn more_than_the_capacity_is_refused_at_once_and_a_full_pool_fails_at_the_deadline() {
        let pool = MemoryPool::new(100);
        let err = pool
            .reserve(101, soon(), "a produce request")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("more than the 100 bytes"), "{err}");
        assert_eq!(err.status_code(), tonic::Code::ResourceExhausted);
        // No retry can make room for it: not marked as a full pool.
        let status = tonic::Status::from(err);
        assert!(status
            .metadata()
            .get(crate::proto::MEMORY_EXHAUSTED_METADATA)
            .is_none());
        let _all = pool.reserve(100, soon(), "a test").await.unwrap();
        let err = pool
            .reserve(1, Instant::now(), "a fetch")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("until its deadline"), "{err}");
        assert_eq!(pool.in_use_bytes(), 100);
        assert_eq!(pool.timeouts(), 1);
        // Worth a retry once others give memory back: marked so.
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status
                .metadata()
                .get(crate::proto::MEMORY_EXHAUSTED_METADATA)
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
    }
}
