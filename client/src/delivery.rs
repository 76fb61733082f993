//! Delivery futures: one completion per batch, shared by its records.
//!
//! Every record sent gets a [`DeliveryFuture`], so this is on the per-record
//! path: making one is a reference-count increment, and polling a completed
//! one is an atomic load. Only a record whose batch is still in flight when
//! it is polled takes the lock to leave its waker.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use super::error::ClientError;
use super::producer::RecordMetadata;

/// What a batch's request came to (None with acks=0).
pub(crate) type BatchOutcome = Result<Option<Stored>, ClientError>;

/// Where the broker stored a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) base_offset: u64,
    /// The broker's time for a LogAppendTime topic; -1 otherwise.
    pub(crate) log_append_time_ms: i64,
}

/// The outcome of one batch, set once, and the tasks waiting for it.
#[derive(Debug, Default)]
struct BatchCompletion {
    outcome: OnceLock<BatchOutcome>,
    wakers: Mutex<Vec<Waker>>,
}

/// The sending side of a batch's completion. Dropping it unsettled (the
/// producer's task ended with the batch) settles it with [`ClientError::Closed`].
#[derive(Debug)]
pub(crate) struct BatchCompleter {
    completion: Arc<BatchCompletion>,
}

impl BatchCompleter {
    pub(crate) fn new() -> BatchCompleter {
        BatchCompleter {
            completion: Arc::default(),
        }
    }

    /// A future for the record at `relative` in this batch.
    pub(crate) fn future(
        &self,
        partition: u32,
        relative: u32,
        timestamp_ms: i64,
    ) -> DeliveryFuture {
        DeliveryFuture {
            completion: Arc::clone(&self.completion),
            waker_slot: None,
            partition,
            relative,
            timestamp_ms,
        }
    }

    /// Settles the batch and wakes every record waiting on it.
    pub(crate) fn complete(self, outcome: BatchOutcome) {
        self.settle(outcome);
    }

    /// Settles the batch, keeping the completer: a later settle is ignored.
    pub(crate) fn settle(&self, outcome: BatchOutcome) {
        // Set before the waker list is taken: a poll that finds no outcome
        // registers under the same lock, so it is either woken here or sees
        // the outcome when it checks again under the lock.
        if self.completion.outcome.set(outcome).is_err() {
            return;
        }
        let wakers = match self.completion.wakers.lock() {
            Ok(mut wakers) => std::mem::take(&mut *wakers),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Drop for BatchCompleter {
    fn drop(&mut self) {
        if self.completion.outcome.get().is_none() {
            self.settle(Err(ClientError::Closed));
        }
    }
}

/// Resolves when the record's batch is acknowledged (or has failed for good).
#[derive(Debug)]
#[must_use = "a record's delivery is only known by awaiting its future"]
pub struct DeliveryFuture {
    completion: Arc<BatchCompletion>,
    /// Where this future's waker sits in the completion's list, once polled
    /// while the batch was in flight.
    waker_slot: Option<usize>,
    partition: u32,
    /// Position of the record in its batch.
    relative: u32,
    timestamp_ms: i64,
}

impl DeliveryFuture {
    fn ready(&self, outcome: &BatchOutcome) -> Result<RecordMetadata, ClientError> {
        match outcome {
            Ok(stored) => Ok(RecordMetadata {
                partition: self.partition,
                offset: stored.map(|stored| stored.base_offset + u64::from(self.relative)),
                // As Kafka's `RecordMetadata.timestamp()`: the broker's time
                // for a LogAppendTime topic, the record's own otherwise.
                timestamp_ms: match stored {
                    Some(stored) if stored.log_append_time_ms >= 0 => stored.log_append_time_ms,
                    _ => self.timestamp_ms,
                },
            }),
            Err(error) => Err(error.clone()),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(outcome) = self.completion.outcome.get() {
            return Poll::Ready(self.ready(outcome));
        }
        let completion = Arc::clone(&self.completion);
        let Ok(mut wakers) = completion.wakers.lock() else {
            return Poll::Ready(Err(ClientError::Closed));
        };
        if let Some(outcome) = completion.outcome.get() {
            return Poll::Ready(self.ready(outcome));
        }
        match self.waker_slot.and_then(|slot| wakers.get_mut(slot)) {
            Some(waker) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                self.waker_slot = Some(wakers.len());
                wakers.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_record_of_a_batch_gets_its_own_offset() {
        let completer = BatchCompleter::new();
        let first = completer.future(3, 0, 7);
        let second = completer.future(3, 1, 7);
        let waiting = tokio::spawn(second);
        tokio::task::yield_now().await;
        completer.complete(Ok(Some(Stored {
            base_offset: 100,
            log_append_time_ms: -1,
        })));
        let second = waiting.await.unwrap().unwrap();
        assert_eq!(second.offset, Some(101));
        assert_eq!(second.partition, 3);
        assert_eq!(first.await.unwrap().offset, Some(100));
    }

    #[tokio::test]
    async fn a_batch_dropped_unsettled_fails_its_records_as_closed() {
        let completer = BatchCompleter::new();
        let future = completer.future(0, 0, 0);
        let waiting = tokio::spawn(future);
        tokio::task::yield_now().await;
        drop(completer);
        assert!(matches!(waiting.await.unwrap(), Err(ClientError::Closed)));
    }

    #[tokio::test]
    async fn a_failure_reaches_every_record() {
        let completer = BatchCompleter::new();
        let futures: Vec<_> = (0..3).map(|i| completer.future(0, i, 0)).collect();
        completer.complete(Err(ClientError::InvalidArgument("refused".into())));
        for future in futures {
            assert!(matches!(future.await, Err(ClientError::InvalidArgument(_))));
        }
    }
}
