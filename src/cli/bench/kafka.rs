//! `weir bench --protocol kafka`: the same produce and consume runs over the Kafka listener,
//! speaking the wire protocol as a Kafka client does (encoded with the `kafka-protocol`
//! crate), so the two listeners are measured with one tool.
//!
//! Produce: RecordBatch v2 batches of `--batch-size` bytes of records, round-robin over the
//! partitions (Kafka's partitioner for records without a key), on one connection with up to
//! `--max-in-flight` Produce requests outstanding (`max.in.flight.requests.per.connection`);
//! the broker answers a connection's requests in order; with `--throughput` each batch waits
//! until its records are due at that rate. Latency is per batch, from the request's write to
//! its answer, counted once per record. Consume: Fetch requests for every
//! partition from its log start, one in flight, as a Kafka consumer keeps one per broker, and
//! the next sent as soon as an answer arrives (its offsets read from the batch headers) by a
//! task of its own, as Kafka's consumers fetch on their own thread ahead of the records they
//! hand out; meanwhile each returned batch is checked (CRC) and its records' keys and values
//! counted. E2e: the same consumer follows every partition from its end while the producer
//! sends, each batch's values stamped with its making time. Both talk
//! to the one broker at `--kafka`: a one-node broker, or the leader of every partition.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use weir_client::Admin;
use weir_log::batch::{batches, BatchBuilder, Compression, RecordDecoder};

use super::{elapsed_us, ensure_topic, histogram, payload, progress, report, BenchArgs, Report};

/// Produce v8 and Fetch v11: the newest non-flexible versions, which every client
/// library in use speaks and Weir serves.
const PRODUCE_VERSION: i16 = 8;
const FETCH_VERSION: i16 = 11;
/// A response frame larger than this is refused (the fetch asks for less).
const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Bytes a record adds to its value in a batch (varints of its length, offset and
/// timestamp deltas, attributes, key and header counts), to size batches.
const RECORD_OVERHEAD_BYTES: usize = 10;

fn frame<R: Request>(correlation_id: i32, version: i16, request: &R) -> anyhow::Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("weir-bench")));
    let mut body = BytesMut::new();
    header.encode(&mut body, R::header_version(version))?;
    request.encode(&mut body, version)?;
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_i32(i32::try_from(body.len()).context("a request over 2 GiB")?);
    out.extend_from_slice(&body);
    Ok(out.freeze())
}

async fn read_frame(reader: &mut BufReader<OwnedReadHalf>) -> anyhow::Result<Bytes> {
    let len = reader
        .read_i32()
        .await
        .context("the broker closed the Kafka connection")?;
    let len = usize::try_from(len).ok().filter(|l| *l <= FRAME_BYTES_MAX);
    let Some(len) = len else {
        bail!("a response frame of a size out of bounds");
    };
    // Read straight into spare capacity: zeroing a fetch's megabytes first
    // costs as much as checking their CRCs.
    let mut buf = BytesMut::with_capacity(len);
    let mut body = reader.take(len as u64);
    while buf.len() < len {
        if body.read_buf(&mut buf).await? == 0 {
            bail!("the broker closed the Kafka connection inside a response");
        }
    }
    Ok(buf.freeze())
}

/// The response to `R` in `frame`, checked to answer `correlation_id`.
fn decode<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> anyhow::Result<R::Response> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)?;
    if header.correlation_id != correlation_id {
        bail!(
            "answer to request {} where {correlation_id} was next",
            header.correlation_id
        );
    }
    let response = R::Response::decode(&mut frame, version)?;
    if frame.has_remaining() {
        bail!("{} bytes left after the response", frame.remaining());
    }
    Ok(response)
}

async fn connect(kafka: &str) -> anyhow::Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf)> {
    let stream = TcpStream::connect(kafka)
        .await
        .with_context(|| format!("cannot connect to the Kafka listener at {kafka}"))?;
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    Ok((BufReader::with_capacity(1 << 20, reader), writer))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

pub(super) async fn produce(grpc: &str, kafka: &str, bench: &BenchArgs) -> anyhow::Result<Report> {
    produce_stamped(grpc, kafka, bench, None).await
}

/// Produces `bench.records`; with `epoch`, each batch's values start with the
/// microseconds from `epoch` to the batch's making (e2e reads them back).
async fn produce_stamped(
    grpc: &str,
    kafka: &str,
    bench: &BenchArgs,
    epoch: Option<Instant>,
) -> anyhow::Result<Report> {
    let partitions = ensure_topic(grpc, bench).await?;
    let acks: i16 = match bench.acks.as_str() {
        "0" => 0,
        "1" => 1,
        "all" | "-1" => -1,
        other => bail!("--acks {other:?}: use 0, 1 or all"),
    };
    let compression: Compression = bench
        .compression
        .parse()
        .map_err(|e| anyhow::anyhow!("--compression {:?}: {e}", bench.compression))?;
    let batch_size = bench.batch_size.unwrap_or(if bench.throughput > 0 {
        super::BATCH_SIZE_AT_RATE_DEFAULT
    } else {
        super::BATCH_SIZE_DEFAULT
    });
    let per_batch = (batch_size / (bench.record_size + RECORD_OVERHEAD_BYTES)).max(1) as u64;
    let (mut reader, mut writer) = connect(kafka).await?;
    let mut value = payload(bench.record_size);
    let bar = progress(bench.records, bench.output);
    let in_flight = Arc::new(Semaphore::new(usize::from(bench.max_in_flight)));
    // (correlation id, written at, records) of each request awaiting its answer.
    let (sent, mut awaiting) = mpsc::unbounded_channel::<(i32, Instant, u64)>();
    let answers = {
        let in_flight = Arc::clone(&in_flight);
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut latencies = histogram();
            let (mut errors, mut first_error, mut done) = (0u64, None, 0u64);
            while let Some((correlation_id, written_at, records)) = awaiting.recv().await {
                let frame = read_frame(&mut reader).await?;
                let latency = elapsed_us(written_at);
                let response = decode::<ProduceRequest>(frame, PRODUCE_VERSION, correlation_id)?;
                let refused = response
                    .responses
                    .iter()
                    .flat_map(|t| &t.partition_responses)
                    .find(|p| p.error_code != 0);
                match refused {
                    Some(partition) => {
                        errors += records;
                        first_error.get_or_insert(format!(
                            "partition {}: Kafka error code {} {}",
                            partition.index,
                            partition.error_code,
                            partition.error_message.as_deref().unwrap_or_default()
                        ));
                    }
                    None => {
                        let _ = latencies.record_n(latency, records);
                    }
                }
                done += records;
                bar.set_position(done);
                in_flight.add_permits(1);
            }
            Ok::<_, anyhow::Error>((latencies, errors, first_error))
        })
    };
    let started = Instant::now();
    let mut builder = BatchBuilder::new(compression);
    let (mut produced, mut correlation_id) = (0u64, 0i32);
    while produced < bench.records {
        let records = per_batch.min(bench.records - produced);
        // At a set rate a batch waits until its records are due, then goes
        // out whole: latency is timed from its write, as at full speed.
        super::pace(started, produced, bench.throughput).await;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if let Some(epoch) = epoch {
            let sent_us = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
            value[..8].copy_from_slice(&sent_us.to_le_bytes());
        }
        for _ in 0..records {
            builder.push(timestamp, None, Some(&value), &[]);
        }
        let batch = builder.build()?;
        let partition = (correlation_id as u32 % partitions) as i32;
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&bench.topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        correlation_id += 1;
        let bytes = frame(correlation_id, PRODUCE_VERSION, &request)?;
        if acks != 0 {
            in_flight
                .acquire()
                .await
                .context("the answer task ended")?
                .forget();
        }
        let written_at = Instant::now();
        writer.write_all(&bytes).await?;
        if acks != 0 {
            sent.send((correlation_id, written_at, records))
                .context("the answer task ended early")?;
        }
        produced += records;
    }
    drop(sent);
    let (latencies, errors, first_error) = answers.await.context("the answer task failed")??;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    if let Some(error) = first_error {
        eprintln!("weir: first refused batch: {error}");
    }
    Ok(report(
        "produce",
        bench,
        bench.records,
        bench.records * bench.record_size as u64,
        errors,
        elapsed,
        &latencies,
    ))
}

pub(super) async fn consume(grpc: &str, kafka: &str, bench: &BenchArgs) -> anyhow::Result<Report> {
    let admin = Admin::connect(grpc).await?;
    let positions: FetchPositions = super::leader_spans(&admin, &bench.topic)
        .await?
        .into_iter()
        .map(|(partition, start, end)| (partition as i32, start as i64, end as i64))
        .collect();
    // Where counting starts per partition: the offsets the answers being
    // checked were asked from (a fetch may start inside a batch).
    let mut counted_from: Vec<(i32, i64)> =
        positions.iter().map(|(p, next, _)| (*p, *next)).collect();
    let available: u64 = positions
        .iter()
        .map(|(_, start, end)| (end - start) as u64)
        .sum();
    let target = bench.records.min(available);
    let (reader, writer) = connect(kafka).await?;
    let bar = progress(target, bench.output);
    let mut latencies = histogram();
    let mut decoder = RecordDecoder::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    let (answers, mut answered) = mpsc::channel(ANSWERS_AHEAD);
    let fetcher = tokio::spawn(fetch_ahead(
        reader,
        writer,
        bench.topic.clone(),
        positions,
        answers,
    ));
    while records < target {
        let Some((response, latency_us)) = answered.recv().await else {
            break;
        };
        let _ = latencies.record(latency_us);
        check_records(
            &response,
            &mut counted_from,
            &mut decoder,
            target - records,
            |record| {
                records += 1;
                bytes += record.value.map_or(0, |v| v.len() as u64)
                    + record.key.map_or(0, |k| k.len() as u64);
            },
        )?;
        bar.set_position(records);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    // Done: a fetch still in flight is left unread. Short of the target, the
    // fetcher's error says why.
    drop(answered);
    if records < target {
        fetcher.await.context("the fetch task failed")??;
    } else {
        fetcher.abort();
    }
    Ok(report(
        "consume", bench, records, bytes, 0, elapsed, &latencies,
    ))
}

/// Checks every whole batch of `response` (CRC, records) and calls `visit`
/// with each record at or past its partition's `counted_from`, at most `limit`
/// of them (the batch holding the last is checked whole); moves `counted_from`
/// past the batches checked. A fetch may end inside a batch: the rest comes
/// next time.
fn check_records(
    response: &FetchResponse,
    counted_from: &mut [(i32, i64)],
    decoder: &mut RecordDecoder,
    limit: u64,
    mut visit: impl FnMut(&weir_log::batch::RecordView<'_>),
) -> anyhow::Result<()> {
    let mut left = limit;
    for data in response.responses.iter().flat_map(|t| &t.partitions) {
        let (Some(from), Some(buf)) = (
            counted_from
                .iter_mut()
                .find(|(partition, _)| *partition == data.partition_index),
            data.records.as_ref(),
        ) else {
            continue;
        };
        for (header, batch) in batches(buf).map_while(Result::ok) {
            if header.next_offset() <= from.1 {
                continue;
            }
            for record in decoder.records(batch)? {
                let record = record?;
                if record.offset < from.1 || left == 0 {
                    continue;
                }
                left -= 1;
                visit(&record);
            }
            from.1 = header.next_offset();
        }
    }
    Ok(())
}

/// e2e over Kafka: a consumer following every partition from its end while a
/// producer sends `bench.records` (at `--throughput`, if set), each batch's
/// values stamped with its making time; latency is from that stamp to the
/// record's arrival in the consumer, as gRPC's e2e measures it.
pub(super) async fn end_to_end(
    grpc: &str,
    kafka: &str,
    bench: &BenchArgs,
) -> anyhow::Result<Report> {
    if bench.record_size < 8 {
        bail!("--record-size must be at least 8 for e2e: the send time travels in the value");
    }
    ensure_topic(grpc, bench).await?;
    let ends = Admin::connect(grpc)
        .await?
        .end_offsets(&bench.topic)
        .await?;
    // Followed past any end: the fetcher runs until the records arrived.
    let positions: FetchPositions = ends
        .into_iter()
        .map(|(partition, end)| (partition as i32, end as i64, i64::MAX))
        .collect();
    let mut counted_from: Vec<(i32, i64)> =
        positions.iter().map(|(p, next, _)| (*p, *next)).collect();
    let (reader, writer) = connect(kafka).await?;
    let (answers, mut answered) = mpsc::channel(ANSWERS_AHEAD);
    let fetcher = tokio::spawn(fetch_ahead(
        reader,
        writer,
        bench.topic.clone(),
        positions,
        answers,
    ));
    let epoch = Instant::now();
    let records = bench.records;
    let arrived = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&arrived);
    let receiving = tokio::spawn(async move {
        let mut latencies = histogram();
        let mut decoder = RecordDecoder::new();
        let mut received = 0u64;
        while received < records {
            let Some((response, _)) = answered.recv().await else {
                // The fetcher ended: its error says why.
                return Ok(None);
            };
            let now_us = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
            check_records(
                &response,
                &mut counted_from,
                &mut decoder,
                records - received,
                |record| {
                    let sent_us = record
                        .value
                        .and_then(|v| v.first_chunk::<8>())
                        .map_or(0, |b| u64::from_le_bytes(*b));
                    let _ = latencies.record(now_us.saturating_sub(sent_us).max(1));
                    received += 1;
                },
            )?;
            counted.store(received, Relaxed);
        }
        Ok::<_, anyhow::Error>(Some(latencies))
    });
    let started = Instant::now();
    let sent = produce_stamped(grpc, kafka, bench, Some(epoch)).await?;
    if sent.errors > 0 {
        fetcher.abort();
        bail!("{} of {records} records were refused", sent.errors);
    }
    let latencies = match super::arrived_in_time(
        receiving,
        || arrived.load(Relaxed),
        records,
        super::ARRIVAL_TIMEOUT,
    )
    .await
    {
        Ok(received) => received.context("the consumer task failed")??,
        Err(error) => {
            fetcher.abort();
            return Err(error);
        }
    };
    let elapsed = started.elapsed();
    let Some(latencies) = latencies else {
        fetcher.await.context("the fetch task failed")??;
        bail!("the fetch task ended before every record arrived");
    };
    fetcher.abort();
    let bytes = records * bench.record_size as u64;
    Ok(report("e2e", bench, records, bytes, 0, elapsed, &latencies))
}

/// Answers fetched but not yet checked: each up to `fetch_max_bytes`, so the
/// bench holds at most this many of them beside the one being checked.
const ANSWERS_AHEAD: usize = 2;

/// Fetches every partition to its end, one Fetch in flight, the next sent as
/// soon as an answer arrives, its offsets read from the batch headers alone:
/// Kafka's consumers fetch on their own thread, ahead of the records they hand
/// out, and so does this task, while the caller checks what it got. Stops when
/// every partition is read or the caller stops taking answers.
async fn fetch_ahead(
    mut reader: BufReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
    topic: String,
    mut positions: FetchPositions,
    answers: mpsc::Sender<(FetchResponse, u64)>,
) -> anyhow::Result<()> {
    let mut correlation_id = 0i32;
    // A partition read to its end has nothing more to give, even if it held
    // fewer records than its offsets span (a compacted topic).
    while positions.iter().any(|(_, next, end)| next < end) {
        correlation_id += 1;
        let polled_at = Instant::now();
        writer
            .write_all(&fetch_frame(correlation_id, &topic, &positions)?)
            .await?;
        let response: FetchResponse = decode::<FetchRequest>(
            read_frame(&mut reader).await?,
            FETCH_VERSION,
            correlation_id,
        )?;
        let latency_us = elapsed_us(polled_at);
        for data in response.responses.iter().flat_map(|t| &t.partitions) {
            if data.error_code != 0 {
                bail!(
                    "partition {}: Kafka error code {}",
                    data.partition_index,
                    data.error_code
                );
            }
            let (Some(position), Some(buf)) = (
                positions
                    .iter_mut()
                    .find(|(partition, _, _)| *partition == data.partition_index),
                data.records.as_ref(),
            ) else {
                continue;
            };
            for (header, _) in batches(buf).map_while(Result::ok) {
                position.1 = position.1.max(header.next_offset());
            }
        }
        if answers.send((response, latency_us)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Per partition: its number, the next offset to fetch, and its end.
type FetchPositions = Vec<(i32, i64, i64)>;

/// A Fetch request for every partition not read to its end, from its next offset.
fn fetch_frame(
    correlation_id: i32,
    topic: &str,
    positions: &FetchPositions,
) -> anyhow::Result<Bytes> {
    let config = weir_client::ConsumerConfig::default();
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(config.fetch_max_bytes as i32)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                positions
                    .iter()
                    .filter(|(_, next, end)| next < end)
                    .map(|(partition, next, _)| {
                        FetchPartition::default()
                            .with_partition(*partition)
                            .with_fetch_offset(*next)
                            .with_partition_max_bytes(config.partition_max_bytes as i32)
                    })
                    .collect(),
            )]);
    frame(correlation_id, FETCH_VERSION, &request)
}
