//! `weir log dump PATH`: one line per batch (offsets, count, timestamps, codec,
//! size, position, CRC check), optionally each record, as text or JSON lines.
//! A batch that fails its checks is still printed, marked invalid; bytes that
//! cannot be split into batches end the file's dump and the exit status is 1.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use weir_log::batch::{compute_crc, validate, BatchHeader, RecordDecoder, RecordView};

use super::segment_files::{find_segments, lock_for_reading, BatchScanner, Scanned, SegmentFiles};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A partition directory, or one `<base offset>.log` segment file.
    path: PathBuf,
    /// Also print every record of every batch.
    #[arg(long)]
    records: bool,
    /// `text` (one line per batch, `|` lines per record) or `json` (one object per batch per line).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _lock = lock_for_reading(&args.path)?;
    let segments = find_segments(&args.path)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut decoder = RecordDecoder::new();
    let mut first_problem: Option<String> = None;
    for segment in &segments {
        if let Some(problem) = dump_segment(&args, segment, &mut decoder, &mut out)? {
            first_problem.get_or_insert(problem);
        }
    }
    out.flush()?;
    match first_problem {
        None => Ok(ExitCode::SUCCESS),
        Some(problem) => {
            eprintln!("weir: {problem}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Dumps one segment; returns the first problem found, as a line naming file and byte.
fn dump_segment(
    args: &Args,
    segment: &SegmentFiles,
    decoder: &mut RecordDecoder,
    out: &mut impl Write,
) -> anyhow::Result<Option<String>> {
    let file = segment.log.display().to_string();
    let mut scanner = BatchScanner::open(&segment.log)?;
    if args.output == Output::Text {
        writeln!(out, "Dumping {file} ({} bytes)", scanner.len_bytes())?;
    }
    let mut first_problem = None;
    loop {
        match scanner.next_batch()? {
            Scanned::End => return Ok(first_problem),
            Scanned::Broken { position, error } => {
                match args.output {
                    Output::Text => writeln!(out, "position: {position} error: {error}")?,
                    Output::Json => writeln!(
                        out,
                        "{}",
                        json!({"file": file, "position": position, "error": error.to_string()})
                    )?,
                }
                return Ok(Some(
                    first_problem.unwrap_or(format!("{file}: byte {position}: {error}")),
                ));
            }
            Scanned::Batch { position, bytes } => {
                if let Some(problem) = dump_batch(args, &file, position, bytes, decoder, out)? {
                    first_problem.get_or_insert(format!("{file}: byte {position}: {problem}"));
                }
            }
        }
    }
}

/// Prints one batch; returns why it is invalid, if it is.
fn dump_batch(
    args: &Args,
    file: &str,
    position: u64,
    bytes: &[u8],
    decoder: &mut RecordDecoder,
    out: &mut impl Write,
) -> anyhow::Result<Option<String>> {
    let header = match BatchHeader::parse(bytes) {
        Ok(header) => header,
        Err(error) => {
            // Framing was fine (the scanner checked it) but the header is not v2.
            match args.output {
                Output::Text => writeln!(
                    out,
                    "position: {position} size: {} error: {error}",
                    bytes.len()
                )?,
                Output::Json => writeln!(
                    out,
                    "{}",
                    json!({"file": file, "position": position, "size_bytes": bytes.len(), "error": error.to_string()})
                )?,
            }
            return Ok(Some(error.to_string()));
        }
    };
    let invalid = validate(bytes, usize::MAX).err().map(|e| e.to_string());
    let crc_ok = compute_crc(bytes) == Some(header.crc);
    let mut records = Vec::new();
    let mut records_error = None;
    if args.records && invalid.is_none() {
        match decoder.records(bytes) {
            Ok(iter) => {
                for record in iter {
                    match record {
                        Ok(record) => records.push(match args.output {
                            Output::Text => Value::String(record_text(&record)),
                            Output::Json => record_json(&record),
                        }),
                        Err(error) => {
                            records_error = Some(error.to_string());
                            break;
                        }
                    }
                }
            }
            Err(error) => records_error = Some(error.to_string()),
        }
    }
    match args.output {
        Output::Text => {
            let mut line = batch_text(&header, position, crc_ok);
            if let Some(error) = &invalid {
                let _ = write!(line, " error: {error}");
            }
            writeln!(out, "{line}")?;
            for record in &records {
                if let Value::String(text) = record {
                    writeln!(out, "{text}")?;
                }
            }
            if let Some(error) = &records_error {
                writeln!(out, "| error: {error}")?;
            }
        }
        Output::Json => {
            let mut object = batch_json(&header, file, position, crc_ok);
            if let Some(error) = &invalid {
                object["error"] = Value::String(error.clone());
            }
            if args.records {
                object["records"] = Value::Array(records);
            }
            if let Some(error) = &records_error {
                object["records_error"] = Value::String(error.clone());
            }
            writeln!(out, "{object}")?;
        }
    }
    Ok(invalid.or(records_error))
}

fn codec_name(header: &BatchHeader) -> String {
    match header.compression() {
        Ok(codec) => codec.to_string(),
        Err(_) => format!("unknown({})", header.attributes & 0x07),
    }
}

fn batch_text(header: &BatchHeader, position: u64, crc_ok: bool) -> String {
    format!(
        "baseOffset: {} lastOffset: {} count: {} baseTimestamp: {} maxTimestamp: {} timestampType: {} \
         codec: {} size: {} position: {} crc: {:#010x} crcOk: {} producerId: {} producerEpoch: {} \
         baseSequence: {} leaderEpoch: {} transactional: {} control: {}",
        header.base_offset,
        header.last_offset(),
        header.record_count,
        header.base_timestamp,
        header.max_timestamp,
        header.timestamp_type(),
        codec_name(header),
        header.size_bytes(),
        position,
        header.crc,
        crc_ok,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        header.partition_leader_epoch,
        header.is_transactional(),
        header.is_control(),
    )
}

fn batch_json(header: &BatchHeader, file: &str, position: u64, crc_ok: bool) -> Value {
    json!({
        "file": file,
        "position": position,
        "base_offset": header.base_offset,
        "last_offset": header.last_offset(),
        "count": header.record_count,
        "base_timestamp": header.base_timestamp,
        "max_timestamp": header.max_timestamp,
        "timestamp_type": header.timestamp_type().to_string(),
        "codec": codec_name(header),
        "size_bytes": header.size_bytes(),
        "crc": header.crc,
        "crc_ok": crc_ok,
        "producer_id": header.producer_id,
        "producer_epoch": header.producer_epoch,
        "base_sequence": header.base_sequence,
        "partition_leader_epoch": header.partition_leader_epoch,
        "transactional": header.is_transactional(),
        "control": header.is_control(),
    })
}

fn lossy(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Lossy UTF-8 with control characters escaped, so one record stays one line.
fn text(bytes: Option<&[u8]>) -> String {
    let Some(bytes) = bytes else {
        return "null".to_owned();
    };
    let mut out = String::with_capacity(bytes.len());
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn record_text(record: &RecordView<'_>) -> String {
    let headers: Vec<String> = record
        .headers()
        .map(|(key, value)| format!("{}={}", text(Some(key.as_bytes())), text(value)))
        .collect();
    format!(
        "| offset: {} timestamp: {} key: {} value: {} headers: [{}]",
        record.offset,
        record.timestamp,
        text(record.key),
        text(record.value),
        headers.join(", "),
    )
}

fn record_json(record: &RecordView<'_>) -> Value {
    let headers: Vec<Value> = record
        .headers()
        .map(|(key, value)| json!({"key": key, "value": lossy(value)}))
        .collect();
    json!({
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": lossy(record.key),
        "value": lossy(record.value),
        "headers": headers,
    })
}
