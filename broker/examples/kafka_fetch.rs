//! Fetch throughput of one partition from the page cache, over the Kafka
//! listener (batches sent with `sendfile`) and over gRPC (`pread` into a
//! recycled buffer, HTTP/2), with the broker and the reader in one process.
//!
//! ```sh
//! cargo run --profile bench -p weir-broker --example kafka_fetch -- 512 1024
//! ```
//! (MiB to store, bytes per record). The reader decodes only the frame and
//! the batch headers it needs for the next offset, as a consumer's fetcher
//! does before handing records out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::proto::fetch_client::FetchClient;
use weir_client::proto::produce_client::ProduceClient;
use weir_client::proto::{
    FetchRequest as GrpcFetch, PartitionFetchRequest, PartitionProduceData, ProduceRequest,
};
use weir_log::batch::{BatchBuilder, Compression};

const TOPIC: &str = "fetch-bench";
const FETCH_BYTES_MAX: i32 = 16 * 1024 * 1024;
const RECORDS_PER_BATCH: usize = 1000;
const ROUNDS: usize = 3;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(256), |a| a.parse())?;
    let record_bytes: usize = args.next().map_or(Ok(1024), |a| a.parse())?;
    let data = tempfile::tempdir()?;
    let config = BrokerConfig {
        data_dir: data.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        kafka_listen: Some("127.0.0.1:0".parse()?),
        ..BrokerConfig::default()
    };
    let running = RunningBroker::start(config).await?;
    let grpc = running.local_addr().to_string();
    let kafka = running.kafka_addr().context("no Kafka listener")?;
    running
        .broker()
        .create_topic(TOPIC, 1, 1, BTreeMap::new())
        .await?;
    let (records, bytes) = fill(&grpc, mib, record_bytes).await?;
    println!(
        "stored {records} records of {record_bytes} B, {:.0} MiB",
        bytes as f64 / 1048576.0
    );
    for round in 0..ROUNDS {
        let from_file = weir_broker::kafka_sent_from_file_bytes();
        let (read, took) = kafka_read_all(kafka, records).await?;
        report("kafka", round, read, records, took);
        let sent = weir_broker::kafka_sent_from_file_bytes() - from_file;
        println!(
            "      {:.0}% of it sent with sendfile",
            sent as f64 * 100.0 / read as f64
        );
        let (read, took) = grpc_read_all(&grpc, records).await?;
        report("grpc", round, read, records, took);
    }
    running.shutdown().await?;
    Ok(())
}

fn report(protocol: &str, round: usize, bytes: u64, records: u64, took: Duration) {
    let secs = took.as_secs_f64();
    println!(
        "{protocol:5} round {round}: {:.0} MB/s, {:.2} M records/s",
        bytes as f64 / secs / 1e6,
        records as f64 / secs / 1e6
    );
}

async fn fill(grpc: &str, mib: usize, record_bytes: usize) -> Result<(u64, u64)> {
    let mut client =
        ProduceClient::new(weir_client::connect(grpc).await?).max_encoding_message_size(64 << 20);
    let value = vec![b'x'; record_bytes];
    let mut builder = BatchBuilder::new(Compression::None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let (mut records, mut bytes) = (0u64, 0u64);
    while bytes < (mib as u64) << 20 {
        for _ in 0..RECORDS_PER_BATCH {
            builder.push(now, None, Some(&value), &[]);
        }
        let batch = builder.build()?;
        bytes += batch.len() as u64;
        records += RECORDS_PER_BATCH as u64;
        client
            .produce(ProduceRequest {
                topic: TOPIC.to_string(),
                acks: 1,
                timeout_ms: 30_000,
                partitions: vec![PartitionProduceData {
                    partition: 0,
                    batches: batch,
                }],
            })
            .await?;
    }
    Ok((records, bytes))
}

/// The offset after the last batch in `batches`.
fn next_offset(batches: &[u8]) -> Result<Option<i64>> {
    let mut next = None;
    for batch in weir_log::batch::batches(batches) {
        let (header, _) = batch?;
        next = Some(header.last_offset() + 1);
    }
    Ok(next)
}

async fn kafka_read_all(addr: SocketAddr, records: u64) -> Result<(u64, Duration)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut offset, mut bytes, mut correlation_id) = (0i64, 0u64, 0i32);
    let started = Instant::now();
    while offset < records as i64 {
        correlation_id += 1;
        let request = FetchRequest::default()
            .with_max_bytes(FETCH_BYTES_MAX)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(FETCH_BYTES_MAX)])]);
        let header = RequestHeader::default()
            .with_request_api_key(1)
            .with_request_api_version(12)
            .with_correlation_id(correlation_id);
        let mut out = BytesMut::new();
        out.put_i32(0);
        header.encode(&mut out, FetchRequest::header_version(12))?;
        request.encode(&mut out, 12)?;
        let len = i32::try_from(out.len() - 4)?;
        out[..4].copy_from_slice(&len.to_be_bytes());
        stream.write_all(&out).await?;
        let size = stream.read_i32().await?;
        let mut frame = vec![0u8; usize::try_from(size)?];
        stream.read_exact(&mut frame).await?;
        let mut body = Bytes::from(frame);
        let _ = ResponseHeader::decode(&mut body, 1)?;
        let response = kafka_protocol::messages::FetchResponse::decode(&mut body, 12)?;
        let partition = &response.responses[0].partitions[0];
        anyhow::ensure!(
            partition.error_code == 0,
            "fetch error {}",
            partition.error_code
        );
        let batches = partition.records.clone().unwrap_or_default();
        bytes += batches.len() as u64;
        offset = next_offset(&batches)?.context("an empty fetch before the end")?;
    }
    Ok((bytes, started.elapsed()))
}

async fn grpc_read_all(grpc: &str, records: u64) -> Result<(u64, Duration)> {
    let mut client =
        FetchClient::new(weir_client::connect(grpc).await?).max_decoding_message_size(64 << 20);
    let (mut offset, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    while offset < records {
        let response = client
            .fetch(GrpcFetch {
                topic: TOPIC.to_string(),
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: FETCH_BYTES_MAX as u32,
                partitions: vec![PartitionFetchRequest {
                    partition: 0,
                    offset,
                    max_bytes: FETCH_BYTES_MAX as u32,
                }],
            })
            .await?
            .into_inner();
        let batches = &response.partitions[0].batches;
        bytes += batches.len() as u64;
        offset = u64::try_from(next_offset(batches)?.context("an empty fetch before the end")?)?;
    }
    Ok((bytes, started.elapsed()))
}
