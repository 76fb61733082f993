//! Appends to one partition outside the runtime's workers, one thread at a time.
//!
//! A request queues its batches; the request that finds no drainer running
//! becomes one (on a multi-threaded runtime, on its own thread through
//! `block_in_place`; else on the blocking pool), appending everything queued
//! in arrival order until the queue is empty. Under load many requests share one
//! drainer, and the partition's lock is never fought over by
//! several blocking threads (each one parked and woken by the kernel): with
//! pipelined producers that hand-off and that contention were a third of the
//! broker's CPU for small records.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::error::BrokerError;
use crate::partition::{Appended, Partition};

/// An append's result, and its buffer back (for a retry after waiting).
pub type AppendResult = (Result<Appended, BrokerError>, BytesMut);

struct Pending {
    buf: BytesMut,
    done: oneshot::Sender<AppendResult>,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Pending>,
    /// A drainer is running and will see anything queued now.
    draining: bool,
}

/// The appends waiting for a partition.
#[derive(Default)]
pub struct AppendQueue {
    state: Mutex<QueueState>,
}

impl std::fmt::Debug for AppendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendQueue").finish_non_exhaustive()
    }
}

impl AppendQueue {
    /// Queues `pending`; true if the caller must start a drainer.
    fn push(&self, pending: Pending) -> Result<bool, BrokerError> {
        let mut state = self.lock()?;
        state.pending.push_back(pending);
        let start = !state.draining;
        state.draining = true;
        Ok(start)
    }

    /// The next append, or None (and the drainer stops) when none is queued.
    fn next(&self) -> Option<Pending> {
        let mut state = self.lock().ok()?;
        let next = state.pending.pop_front();
        if next.is_none() {
            state.draining = false;
        }
        next
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, QueueState>, BrokerError> {
        self.state
            .lock()
            .map_err(|_| BrokerError::TaskFailed("a partition's append queue is poisoned".into()))
    }
}

/// Appends `buf` to `partition` through its queue.
pub async fn append(
    partition: &Arc<Partition>,
    buf: BytesMut,
) -> Result<AppendResult, BrokerError> {
    let (done, result) = oneshot::channel();
    if partition.append_queue().push(Pending { buf, done })? {
        if on_multi_thread_runtime() {
            // This thread drains, starting at once; the runtime hands its other
            // tasks to another thread meanwhile, so a slow disk still stalls no
            // one else. A hand-off to the blocking pool instead put a thread's
            // wake-up (two, with the answer's) in every append's latency: at a
            // steady 250 MB/s of 1 MB produces over Kafka, the median was
            // 1.32-1.39 ms that way and is 1.07-1.25 ms this way.
            tokio::task::block_in_place(|| drain(partition));
        } else {
            let partition = Arc::clone(partition);
            tokio::task::spawn_blocking(move || drain(&partition));
        }
    }
    result
        .await
        .map_err(|_| BrokerError::TaskFailed("the append task ended without an answer".into()))
}

/// `block_in_place` panics on a current-thread runtime (tests, embedders).
fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

fn drain(partition: &Partition) {
    let queue = partition.append_queue();
    // Should an append panic, the queue must not stay marked as drained by a
    // thread that is gone: later appends would wait forever. The requests
    // still queued get an error (their senders drop).
    struct Reset<'a>(&'a AppendQueue);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                if let Ok(mut state) = self.0.state.lock() {
                    state.pending.clear();
                    state.draining = false;
                }
            }
        }
    }
    let _reset = Reset(queue);
    while let Some(Pending { mut buf, done }) = queue.next() {
        let result = partition.append_produced(&mut buf);
        // The request may have gone (its client cancelled): the append stands.
        let _ = done.send((result, buf));
    }
}

#[cfg(test)]
mod tests {
    use weir_log::batch::{BatchBuilder, Compression};
    use weir_log::LogConfig;

    use super::*;

    fn batch(value: &str) -> BytesMut {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(0, None, Some(value.as_bytes()), &[]);
        BytesMut::from(&builder.build().unwrap()[..])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_queued_together_are_stored_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let partition =
            Arc::new(Partition::open(dir.path(), "t", 0, LogConfig::default(), 0).unwrap());
        // Each future queues its batch on its first poll, and `join_all`
        // polls them in order: the arrival order is the index order.
        let appends = (0..200).map(|i| {
            let partition = Arc::clone(&partition);
            async move { append(&partition, batch(&i.to_string())).await }
        });
        let results = futures_util::future::join_all(appends).await;
        for (i, result) in (0u64..).zip(results) {
            let (appended, _) = result.unwrap();
            assert_eq!(appended.unwrap().base_offset, i);
        }
        // The drainer answers the last append before it finds the queue
        // empty and stops: wait (boundedly) for it to get there.
        let mut stopped = false;
        for _ in 0..10_000 {
            if !partition.append_queue().lock().unwrap().draining {
                stopped = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(stopped, "the drainer stops once the queue is empty");
        // And starts again for the next append.
        let (appended, _) = append(&partition, batch("last")).await.unwrap();
        assert_eq!(appended.unwrap().base_offset, 200);
    }
}
