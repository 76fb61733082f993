//! `Fetch.Fetch`: stored batches as they are on disk, never past the high
//! watermark, with Kafka's long poll.
//!
//! A fetch subscribes to each partition's high-watermark signal before it
//! reads, so an append that lands between the read and the wait still wakes
//! it. While it waits it holds no partition, only the signals: a delete or
//! reconfiguration never waits for a long poll. An append wakes it for that
//! partition alone, and only the partitions that advanced are read again, so
//! a long poll over many partitions does constant work per append.
//!
//! Fairness (KIP-74): the response's byte budget goes to the partitions in
//! order, so the order rotates by one on every fetch of a connection; with a
//! budget of one batch, every partition gets its turn to be first.
//!
//! Memory: the budget is reserved from the broker's memory pool before
//! anything is read, and what was not read is given back at once.
//!
//! The Kafka listener fetches through the same function with
//! [`ReadInto::Mapped`]: the batches are mapped, not read, and sent with
//! `sendfile`; the reservation still covers them until the response is
//! written, so both listeners bound their responses alike.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::broker::{Broker, Topic};
use crate::error::BrokerError;
use crate::memory_pool::Reservation;
use crate::metrics::TopicMetrics;
use crate::partition::{Partition, ReadInto};
use crate::proto::{
    ErrorCode, FetchRequest, FetchResponse, PartitionFetchRequest, PartitionFetchResult,
};
use weir_log::FileSlice;

/// The largest offset a Kafka log can hold; a larger one is a negative
/// offset sent as unsigned.
const OFFSET_MAX: u64 = i64::MAX as u64;

/// A fetch response and the pool memory its batches hold; drop the
/// reservation once the response has been sent.
#[derive(Debug)]
pub struct Fetched {
    pub response: FetchResponse,
    pub memory: Reservation,
    /// With [`ReadInto::Mapped`]: each partition's batches in its segment
    /// file, by partition.
    pub slices: Vec<(u32, FileSlice)>,
    /// The topic's traffic counters: the caller counts what it sends.
    pub(crate) topic_metrics: Arc<TopicMetrics>,
}

/// The settings of one fetch, fixed when it starts.
struct Limits {
    /// The budget over all partitions; the first batch is returned whole
    /// even past it (KIP-74), so 0 still returns one batch.
    max_bytes: usize,
    /// Until when a read waits for pool memory when it holds none: the
    /// request's start plus its memory wait.
    memory_deadline: Instant,
    /// The long poll's end (`max_wait_ms`): a read after the first waits for
    /// memory no later than this, and the fetch then answers what it has.
    deadline: Instant,
    into: ReadInto,
}

/// One requested partition, in response order.
struct Slot {
    query: PartitionFetchRequest,
    result: PartitionFetchResult,
    slice: Option<FileSlice>,
}

type Changed = Pin<Box<dyn Future<Output = (usize, watch::Receiver<u64>, bool)> + Send>>;

#[tracing::instrument(name = "fetch", skip_all, fields(topic = %request.topic, partitions = request.partitions.len()))]
pub async fn handle(
    broker: &Broker,
    request: FetchRequest,
    memory_wait: Duration,
    rotation: usize,
    into: ReadInto,
) -> Result<Fetched, BrokerError> {
    let config = broker.config();
    check(&request)?;
    // Kafka caps the wait at the broker's limit rather than refusing it.
    let wait_ms = request.max_wait_ms.min(config.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait_ms));
    let limits = Limits {
        max_bytes: usize::try_from(request.max_bytes)
            .unwrap_or(usize::MAX)
            .min(config.fetch_bytes_max),
        memory_deadline: Instant::now() + memory_wait,
        deadline,
        into,
    };
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(usize::MAX);
    let mut shutdown = broker.closing_signal();

    let topic = broker.topic(&request.topic)?;
    let partitions = requested_partitions(&topic, &request.partitions)?;
    let topic_metrics = Arc::clone(&topic.metrics);
    drop(topic);
    let count = partitions.len();
    let first = if count == 0 { 0 } else { rotation % count };
    let order: Vec<usize> = (0..count).map(|i| (first + i) % count).collect();
    // Subscribed before the first read, so no append after it is missed.
    let signals: Vec<watch::Receiver<u64>> =
        order.iter().map(|&i| partitions[i].subscribe()).collect();
    drop(partitions);
    let mut slots: Vec<Slot> = order
        .iter()
        .map(|&i| Slot {
            query: request.partitions[i],
            result: PartitionFetchResult {
                partition: request.partitions[i].partition,
                ..Default::default()
            },
            slice: None,
        })
        .collect();
    let mut memory = broker.memory_pool().nothing();
    let everything: Vec<usize> = (0..count).collect();
    let mut complete = read_round(
        broker,
        &request.topic,
        &mut slots,
        &everything,
        &limits,
        Round::First,
        &mut memory,
    )
    .await?;

    let mut changed: FuturesUnordered<Changed> = signals
        .into_iter()
        .enumerate()
        .map(|(slot, signal)| wait_changed(slot, signal))
        .collect();
    loop {
        let bytes: usize = slots.iter().map(|s| s.result.batches.len()).sum();
        let failed = slots
            .iter()
            .any(|s| s.result.error_code != i32::from(ErrorCode::None));
        if bytes >= min_bytes || failed || !complete || count == 0 || Instant::now() >= deadline {
            break;
        }
        let first_changed = tokio::select! {
            next = changed.next() => next,
            () = tokio::time::sleep_until(deadline) => break,
            // Shutting down: answer with what there is rather than an error.
            _ = shutdown.changed() => break,
        };
        let Some(first_changed) = first_changed else {
            break;
        };
        // Every partition that advanced by now, each re-armed for the next append.
        let mut advanced = Vec::new();
        let mut next = Some(first_changed);
        while let Some((slot, signal, open)) = next {
            advanced.push(slot);
            if open {
                changed.push(wait_changed(slot, signal));
            }
            next = changed.next().now_or_never().flatten();
        }
        advanced.sort_unstable();
        advanced.dedup();
        complete = read_round(
            broker,
            &request.topic,
            &mut slots,
            &advanced,
            &limits,
            Round::Later,
            &mut memory,
        )
        .await?;
    }
    memory.shrink_to(slots.iter().map(|s| s.result.batches.len()).sum());
    let slices = slots
        .iter_mut()
        .filter_map(|s| Some((s.result.partition, s.slice.take()?)))
        .collect();
    Ok(Fetched {
        response: FetchResponse {
            partitions: slots.into_iter().map(|s| s.result).collect(),
        },
        memory,
        slices,
        topic_metrics,
    })
}

fn wait_changed(slot: usize, mut signal: watch::Receiver<u64>) -> Changed {
    Box::pin(async move {
        let open = signal.changed().await.is_ok();
        (slot, signal, open)
    })
}

/// Refuses what no Kafka fetch could mean.
fn check(request: &FetchRequest) -> Result<(), BrokerError> {
    for query in &request.partitions {
        if query.offset > OFFSET_MAX {
            return Err(BrokerError::InvalidRequest {
                topic: request.topic.clone(),
                reason: format!(
                    "partition {}: fetch offset {} is past the largest offset {OFFSET_MAX} \
                     (a negative offset sent as unsigned?)",
                    query.partition, query.offset
                ),
            });
        }
    }
    Ok(())
}

/// The requested partitions, each existing and named once.
fn requested_partitions(
    topic: &Topic,
    requested: &[PartitionFetchRequest],
) -> Result<Vec<Arc<Partition>>, BrokerError> {
    let mut partitions = Vec::with_capacity(requested.len());
    for (i, query) in requested.iter().enumerate() {
        if requested[..i]
            .iter()
            .any(|earlier| earlier.partition == query.partition)
        {
            return Err(BrokerError::DuplicatePartition {
                topic: topic.name.clone(),
                partition: query.partition,
            });
        }
        partitions.push(Arc::clone(topic.partition(query.partition)?));
    }
    Ok(partitions)
}

/// Which read of a fetch a round is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// The read a fetch always does: it waits for memory until the memory
    /// deadline, and a pool still full then fails the request.
    First,
    /// A read after an append woke the long poll: it has a response to give
    /// (maybe empty), so it waits for memory no later than the long poll's
    /// deadline and then answers with what it has.
    Later,
}

/// Reserves `bytes` for a fetch that holds no memory, waiting as `round`
/// allows. `None`: a later round found no memory by the long poll's deadline.
async fn reserve_for_round(
    broker: &Broker,
    bytes: usize,
    limits: &Limits,
    round: Round,
) -> Result<Option<Reservation>, BrokerError> {
    let pool = broker.memory_pool();
    match round {
        Round::First => Ok(Some(
            pool.reserve(bytes, limits.memory_deadline, "a fetch")
                .await?,
        )),
        Round::Later => {
            let until = limits.memory_deadline.min(limits.deadline);
            match pool.reserve(bytes, until, "a fetch").await {
                Ok(reserved) => Ok(Some(reserved)),
                Err(BrokerError::MemoryExhausted { .. }) => Ok(None),
                Err(error) => Err(error),
            }
        }
    }
}

/// Reads the slots `to_read` (ascending) again within the budget left by
/// the others. Returns false when the pool had no memory for a fetch that
/// already holds some (it must answer with what it has rather than wait
/// while holding memory), or, in a later round, none by the deadline.
async fn read_round(
    broker: &Broker,
    topic_name: &str,
    slots: &mut [Slot],
    to_read: &[usize],
    limits: &Limits,
    round: Round,
    memory: &mut Reservation,
) -> Result<bool, BrokerError> {
    for &slot in to_read {
        slots[slot].result.batches = bytes::Bytes::new();
        slots[slot].slice = None;
    }
    let held: usize = slots.iter().map(|s| s.result.batches.len()).sum();
    memory.shrink_to(held);
    let remaining = limits.max_bytes.saturating_sub(held);
    let pool = broker.memory_pool();
    let extra = if held == 0 {
        match reserve_for_round(broker, remaining, limits, round).await? {
            Some(extra) => extra,
            None => return Ok(false),
        }
    } else {
        match pool.try_reserve(remaining) {
            Some(extra) => extra,
            None => return Ok(false),
        }
    };
    memory.absorb(extra);
    let budget = if held > 0 {
        Budget::AfterOthers
    } else {
        Budget::First
    };
    let unfit = read_slots(
        broker,
        topic_name,
        slots,
        to_read,
        remaining,
        budget,
        limits.into,
    )
    .await?;
    memory.shrink_to(slots.iter().map(|s| s.result.batches.len()).sum());
    if let Some((slot, batch_bytes)) = unfit {
        // Nothing was read: the first batch alone is larger than the budget.
        // KIP-74 returns it whole, once there is memory for it.
        debug_assert_eq!(memory.bytes(), 0);
        let Some(room) = reserve_for_round(broker, batch_bytes, limits, round).await? else {
            return Ok(false);
        };
        memory.absorb(room);
        read_slots(
            broker,
            topic_name,
            slots,
            &[slot],
            batch_bytes,
            Budget::FirstBatch,
            limits.into,
        )
        .await?;
        memory.shrink_to(slots.iter().map(|s| s.result.batches.len()).sum());
    }
    Ok(true)
}

/// How a read round's budget relates to what other partitions returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    /// No partition has data yet: the first batch found may be larger than
    /// the budget; it is then reported rather than read.
    First,
    /// Other partitions returned data: everything must fit.
    AfterOthers,
    /// The budget is exactly the size of the first batch, reserved after it
    /// was reported: it is read whatever the partition's own limit.
    FirstBatch,
}

/// Reads the slots `to_read` in order within `budget` bytes. Returns the
/// slot and size of a first batch that was left out for being larger than
/// the budget, when no other slot returned data.
async fn read_slots(
    broker: &Broker,
    topic_name: &str,
    slots: &mut [Slot],
    to_read: &[usize],
    bytes_max: usize,
    budget: Budget,
    into: ReadInto,
) -> Result<Option<(usize, usize)>, BrokerError> {
    let topic = broker.topic(topic_name)?;
    let reads = to_read
        .iter()
        .map(|&slot| {
            let query = slots[slot].query;
            topic
                .partition(query.partition)
                .map(|partition| (slot, Arc::clone(partition), query))
        })
        .collect::<Result<Vec<_>, _>>()?;
    drop(topic);
    broker.count_fetch_partition_reads(reads.len() as u64);
    let (results, unfit) = broker
        .run_io(move || Ok(read_in_order(reads, bytes_max, budget, into)))
        .await?;
    for (slot, result, slice) in results {
        slots[slot].result = result;
        slots[slot].slice = slice;
    }
    Ok(unfit)
}

/// Each read slot's result and, mapped, its file slice.
type ReadSlots = Vec<(usize, PartitionFetchResult, Option<FileSlice>)>;

/// Reads each partition within the budget left by those before it. The
/// first batch of the first partition with data may not fit: it is left out
/// and reported with its size, and the partitions after it get no budget.
#[allow(clippy::type_complexity)]
fn read_in_order(
    reads: Vec<(usize, Arc<Partition>, PartitionFetchRequest)>,
    bytes_max: usize,
    budget: Budget,
    into: ReadInto,
) -> (ReadSlots, Option<(usize, usize)>) {
    let mut remaining = bytes_max;
    let mut have_data = budget == Budget::AfterOthers;
    let mut unfit = None;
    let results = reads
        .into_iter()
        .map(|(slot, partition, query)| {
            let partition_max = match usize::try_from(query.max_bytes).unwrap_or(usize::MAX) {
                _ if budget == Budget::FirstBatch => remaining,
                0 => remaining,
                n => n.min(remaining),
            };
            // A budget of 0 still reads the first batch (KIP-74): asking for
            // one byte finds it and reports its size.
            let partition_max = if have_data || unfit.is_some() {
                partition_max
            } else {
                partition_max.max(1)
            };
            let mut slice = None;
            let result = match partition.read_into(query.offset, partition_max, true, into) {
                Ok(read) => {
                    slice = read.slice;
                    if !read.batches.is_empty() {
                        have_data = true;
                        remaining = remaining.saturating_sub(read.batches.len());
                    } else if read.unfit_batch_bytes > 0 && !have_data && unfit.is_none() {
                        unfit = Some((slot, read.unfit_batch_bytes));
                        remaining = 0;
                    }
                    PartitionFetchResult {
                        partition: query.partition,
                        error_code: ErrorCode::None.into(),
                        error_message: String::new(),
                        high_watermark: read.high_watermark,
                        log_start_offset: read.log_start_offset,
                        log_end_offset: read.log_end_offset,
                        batches: read.batches,
                    }
                }
                Err(error) => {
                    let status = partition.status();
                    PartitionFetchResult {
                        partition: query.partition,
                        error_code: error.error_code().into(),
                        error_message: error.to_string(),
                        high_watermark: status.high_watermark,
                        log_start_offset: status.log_start_offset,
                        log_end_offset: status.log_end_offset,
                        batches: bytes::Bytes::new(),
                    }
                }
            };
            (slot, result, slice)
        })
        .collect();
    (results, unfit)
}
