//! Reading the records of a batch: a reusable [`RecordDecoder`] whose iterator
//! yields borrowed [`RecordView`]s (no allocation per record), and owned
//! [`Record`]s for consumers, tools and compaction.
//!
//! Record layout (varints are zigzag, lengths -1 mean null):
//! `length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//! keyLength varint | key | valueLength varint | value | headerCount varint |
//! headers (keyLength varint, key utf-8, valueLength varint, value)*`.

use bytes::Bytes;

use super::codec::{DecompressError, Decompressor};
use super::header::BATCH_HEADER_BYTES;
use super::varint::{split_varint, split_varlong, ReadError, Reader};
use super::{validate, BatchError, BatchHeader, Compression, TimestampType};

/// Default cap on a batch's decompressed records section (256 MiB), far above
/// Kafka's default `max.message.bytes` yet bounded against decompression bombs.
pub const DECOMPRESSED_BYTES_MAX_DEFAULT: usize = 256 * 1024 * 1024;

/// A header's smallest encoding: key length and value length, one byte each.
const HEADER_BYTES_MIN: usize = 2;

/// An owned decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

/// One record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A record borrowed from a batch (or from the decoder's decompression buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub attributes: i8,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers_raw: &'a [u8],
    header_count: u32,
}

impl<'a> RecordView<'a> {
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    /// The record's headers, already checked when the record was read.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            reader: Reader::new(self.headers_raw),
            remaining: self.header_count,
        }
    }

    /// As [`RecordView::to_record`], with keys and values sliced from `buf`,
    /// the buffer this view borrows from (copied only if it is not).
    pub fn to_shared_record(&self, buf: &Bytes) -> Record {
        let share = |bytes: &[u8]| {
            let inside = buf.as_ptr_range();
            let range = bytes.as_ptr_range();
            if inside.start <= range.start && range.end <= inside.end {
                buf.slice_ref(bytes)
            } else {
                Bytes::copy_from_slice(bytes)
            }
        };
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(share),
            value: self.value.map(share),
            headers: self
                .headers()
                .map(|(key, value)| RecordHeader {
                    key: key.to_owned(),
                    value: value.map(share),
                })
                .collect(),
        }
    }

    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(Bytes::copy_from_slice),
            value: self.value.map(Bytes::copy_from_slice),
            headers: self
                .headers()
                .map(|(key, value)| RecordHeader {
                    key: key.to_owned(),
                    value: value.map(Bytes::copy_from_slice),
                })
                .collect(),
        }
    }
}

/// Iterator over `(key, value)` of a record's headers.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    reader: Reader<'a>,
    remaining: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // Every header was parsed once when the record was read, so this
        // cannot fail; stopping (not panicking) is the fallback regardless.
        match read_header(&mut self.reader) {
            Ok(header) => Some(header),
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// Kind of a control record (key version 0: `version i16, type i16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecordType {
    Abort,
    Commit,
}

impl ControlRecordType {
    /// Parses a control record's key; `None` for an unknown version or type.
    pub fn from_key(key: &[u8]) -> Option<ControlRecordType> {
        let (version, rest) = key.split_first_chunk::<2>()?;
        let (kind, _) = rest.split_first_chunk::<2>()?;
        if i16::from_be_bytes(*version) != 0 {
            return None;
        }
        match i16::from_be_bytes(*kind) {
            0 => Some(ControlRecordType::Abort),
            1 => Some(ControlRecordType::Commit),
            _ => None,
        }
    }

    pub(crate) fn key(self) -> [u8; 4] {
        let kind: i16 = match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
        };
        let [k0, k1] = kind.to_be_bytes();
        [0, 0, k0, k1]
    }
}

/// Decodes records of batches, reusing its decompression buffer and codec
/// state so that a warm decoder allocates nothing per record (and, for
/// uncompressed batches, nothing per batch).
#[derive(Debug)]
pub struct RecordDecoder {
    scratch: Vec<u8>,
    decompressor: Decompressor,
    decompressed_bytes_max: usize,
}

impl Default for RecordDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordDecoder {
    pub fn new() -> Self {
        Self::with_decompressed_bytes_max(DECOMPRESSED_BYTES_MAX_DEFAULT)
    }

    pub fn with_decompressed_bytes_max(decompressed_bytes_max: usize) -> Self {
        RecordDecoder {
            scratch: Vec::new(),
            decompressor: Decompressor::default(),
            decompressed_bytes_max,
        }
    }

    /// Validates `batch` (exactly one whole batch, CRC included), decompresses
    /// its records if needed, and returns an iterator over them.
    pub fn records<'s>(&'s mut self, batch: &'s [u8]) -> Result<RecordIter<'s>, BatchError> {
        let header = validate(batch, usize::MAX)?;
        let compression = header.compression()?;
        let section = &batch[BATCH_HEADER_BYTES..];
        if compression == Compression::None {
            return Ok(RecordIter::new(header, section));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let decompressed = self.decompress(&header, section, &mut scratch);
        self.scratch = scratch;
        decompressed?;
        Ok(RecordIter::new(header, &self.scratch))
    }

    /// Decodes all records of `batch` into owned records whose keys, values
    /// and header values share one buffer: `batch` itself when uncompressed
    /// (no copy), else one decompressed buffer per batch. Validates the batch
    /// first, CRC included.
    pub fn decode_shared(&mut self, batch: &Bytes) -> Result<Vec<Record>, BatchError> {
        let header = validate(batch, usize::MAX)?;
        let compression = header.compression()?;
        let records = if compression == Compression::None {
            batch.slice(BATCH_HEADER_BYTES..)
        } else {
            // The buffer is handed to the records, so it cannot be the scratch one.
            let mut decompressed = Vec::new();
            self.decompress(&header, &batch[BATCH_HEADER_BYTES..], &mut decompressed)?;
            Bytes::from(decompressed)
        };
        let iter = RecordIter::new(header, &records);
        let mut out = Vec::with_capacity(iter.size_hint().0);
        for view in iter {
            out.push(view?.to_shared_record(&records));
        }
        Ok(out)
    }

    fn decompress(
        &mut self,
        header: &BatchHeader,
        section: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), BatchError> {
        let limit_bytes = self.decompressed_bytes_max;
        decompress_records(&mut self.decompressor, header, section, out, limit_bytes)
    }

    /// Calls `visit` for each record of `batch`; stops at the first error.
    pub fn for_each_record(
        &mut self,
        batch: &[u8],
        mut visit: impl FnMut(&BatchHeader, RecordView<'_>),
    ) -> Result<BatchHeader, BatchError> {
        let mut records = self.records(batch)?;
        let header = *records.header();
        for record in &mut records {
            visit(&header, record?);
        }
        Ok(header)
    }
}

/// Replaces `out` with the records section `section` of the batch `header`
/// decompressed, producing at most `limit_bytes` bytes.
pub(crate) fn decompress_records(
    decompressor: &mut Decompressor,
    header: &BatchHeader,
    section: &[u8],
    out: &mut Vec<u8>,
    limit_bytes: usize,
) -> Result<(), BatchError> {
    let codec = header.compression()?;
    decompressor
        .decompress(codec, section, out, limit_bytes)
        .map_err(|err| match err {
            DecompressError::Corrupt(source) => BatchError::Decompress {
                codec,
                base_offset: header.base_offset,
                source,
            },
            DecompressError::TooLarge => BatchError::DecompressedTooLarge {
                codec,
                base_offset: header.base_offset,
                limit_bytes,
            },
        })
}

/// Decodes all records of one batch (decompressing as needed) into owned
/// records. Validates the batch first, CRC included.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let mut decoder = RecordDecoder::new();
    let iter = decoder.records(batch)?;
    let mut out = Vec::with_capacity(iter.size_hint().0);
    for record in iter {
        out.push(record?.to_record());
    }
    Ok(out)
}

/// Iterator over the records of one batch; yields `Err` once and then stops if
/// a record is malformed, or if bytes are left after the last record.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    header: BatchHeader,
    reader: Reader<'a>,
    /// Records still to read; `None` after the end (or an error) was reported.
    remaining: Option<u32>,
    index: u32,
    previous_offset_delta: Option<i32>,
}

impl<'a> RecordIter<'a> {
    pub(crate) fn new(header: BatchHeader, records: &'a [u8]) -> Self {
        RecordIter {
            header,
            reader: Reader::new(records),
            // validate() checked record_count >= 0.
            remaining: Some(u32::try_from(header.record_count).unwrap_or(0)),
            index: 0,
            previous_offset_delta: None,
        }
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    fn corrupt(&self, position: usize, reason: &'static str) -> BatchError {
        BatchError::CorruptRecord {
            base_offset: self.header.base_offset,
            record_index: self.index,
            position,
            reason,
        }
    }

    fn read_record(&mut self) -> Result<RecordView<'a>, BatchError> {
        let start = self.reader.position();
        let length = self
            .reader
            .read_varint()
            .map_err(|reason| self.corrupt(start, reason))?;
        let body_start = self.reader.position();
        let body = usize::try_from(length)
            .map_err(|_| "the record length is negative")
            .and_then(|length| self.reader.read_bytes(length))
            .map_err(|reason| self.corrupt(start, reason))?;
        let mut body_reader = Reader::new(body);
        let parts = read_record_body(&mut body_reader)
            .map_err(|reason| self.corrupt(body_start + body_reader.position(), reason))?;
        self.check_offset_delta(parts.offset_delta)
            .map_err(|reason| self.corrupt(start, reason))?;
        self.previous_offset_delta = Some(parts.offset_delta);
        let timestamp = match self.header.timestamp_type() {
            TimestampType::LogAppendTime => self.header.max_timestamp,
            TimestampType::CreateTime => self
                .header
                .base_timestamp
                .wrapping_add(parts.timestamp_delta),
        };
        Ok(RecordView {
            offset: self
                .header
                .base_offset
                .wrapping_add(i64::from(parts.offset_delta)),
            timestamp,
            attributes: parts.attributes,
            key: parts.key,
            value: parts.value,
            headers_raw: parts.headers_raw,
            header_count: parts.header_count,
        })
    }

    /// Offsets inside a batch strictly increase and stay within its range.
    fn check_offset_delta(&self, offset_delta: i32) -> Result<(), ReadError> {
        if offset_delta < 0 || offset_delta > self.header.last_offset_delta {
            return Err("the offset delta is outside the batch's offset range");
        }
        if self
            .previous_offset_delta
            .is_some_and(|previous| offset_delta <= previous)
        {
            return Err("offset deltas do not increase");
        }
        Ok(())
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let remaining = self.remaining?;
        if remaining == 0 {
            self.remaining = None;
            if self.reader.is_empty() {
                return None;
            }
            return Some(Err(BatchError::TrailingBytes {
                base_offset: self.header.base_offset,
                record_count: self.header.record_count,
                trailing_bytes: self.reader.remaining(),
            }));
        }
        match self.read_record() {
            Ok(record) => {
                self.remaining = Some(remaining - 1);
                self.index += 1;
                Some(Ok(record))
            }
            Err(err) => {
                self.remaining = None;
                Some(Err(err))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.remaining {
            // Every record takes at least 7 bytes, which bounds the lower hint
            // by the data actually present, never by the count field alone.
            Some(remaining) => {
                let present = self.reader.remaining() / super::validate::RECORD_BYTES_MIN;
                let remaining = remaining as usize;
                (remaining.min(present), Some(remaining + 1))
            }
            None => (0, Some(0)),
        }
    }
}

impl std::iter::FusedIterator for RecordIter<'_> {}

pub(crate) struct RecordParts<'a> {
    pub(crate) attributes: i8,
    pub(crate) timestamp_delta: i64,
    pub(crate) offset_delta: i32,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers_raw: &'a [u8],
    pub(crate) header_count: u32,
}

/// Reads one record's body (everything after its length varint), all of
/// `reader`: the one definition of a well-formed record, shared by readers
/// and by the validation of appends (whose [`split_record`] must accept the
/// same records, and gives way to this for the error), so the log never
/// stores a record its readers would refuse.
pub(crate) fn read_record_body<'a>(reader: &mut Reader<'a>) -> Result<RecordParts<'a>, ReadError> {
    let attributes = i8::from_be_bytes([reader.read_u8()?]);
    let timestamp_delta = reader.read_varlong()?;
    let offset_delta = reader.read_varint()?;
    let key = reader.read_nullable_bytes()?;
    let value = reader.read_nullable_bytes()?;
    let header_count = reader.read_varint()?;
    let header_count = u32::try_from(header_count).map_err(|_| "the header count is negative")?;
    if (header_count as usize).saturating_mul(HEADER_BYTES_MIN) > reader.remaining() {
        return Err("the header count exceeds the record's bytes");
    }
    let headers_start = reader.position();
    for _ in 0..header_count {
        read_header(reader)?;
    }
    let headers_end = reader.position();
    if !reader.is_empty() {
        return Err("bytes are left after the record's headers");
    }
    Ok(RecordParts {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers_raw: reader.slice(headers_start, headers_end),
        header_count,
    })
}

/// What the validation of an append needs of a record: its deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordDeltas {
    pub(crate) timestamp_delta: i64,
    pub(crate) offset_delta: i32,
    /// Whether the key is present (not null; an empty key is a key).
    pub(crate) keyed: bool,
}

/// The record at the start of `records` (its length varint first), checked as
/// [`read_record_body`] checks it but without building its parts: its deltas
/// and the bytes after it, or `None` where reading it fails (the reader then
/// says why). The two must accept the same records; the walk of an append
/// asserts it in debug builds.
#[inline(always)]
pub(crate) fn split_record(records: &[u8]) -> Option<(RecordDeltas, &[u8])> {
    let (length, rest) = split_varint(records)?;
    let (body, after) = rest.split_at_checked(usize::try_from(length).ok()?)?;
    let [_attributes, body @ ..] = body else {
        return None;
    };
    let (timestamp_delta, body) = split_varlong(body)?;
    let (offset_delta, body) = split_varint(body)?;
    let keyed = body.first() != Some(&NULL_LENGTH_VARINT);
    let body = skip_nullable_bytes(body)?; // key
    let body = skip_nullable_bytes(body)?; // value
    let (header_count, mut body) = split_varint(body)?;
    let header_count = u32::try_from(header_count).ok()?;
    if (header_count as usize).saturating_mul(HEADER_BYTES_MIN) > body.len() {
        return None;
    }
    for _ in 0..header_count {
        body = skip_header(body)?;
    }
    let deltas = RecordDeltas {
        timestamp_delta,
        offset_delta,
        keyed,
    };
    body.is_empty().then_some((deltas, after))
}

/// A length of -1 (null) as a zigzag varint: one byte.
const NULL_LENGTH_VARINT: u8 = 0x01;

/// The bytes after a nullable byte string (length -1 or that many bytes).
#[inline(always)]
fn skip_nullable_bytes(bytes: &[u8]) -> Option<&[u8]> {
    let (length, rest) = split_varint(bytes)?;
    if length == -1 {
        return Some(rest);
    }
    rest.get(usize::try_from(length).ok()?..)
}

/// The bytes after a header: a UTF-8 key (never null) and a nullable value.
fn skip_header(bytes: &[u8]) -> Option<&[u8]> {
    let (key_length, rest) = split_varint(bytes)?;
    let (key, rest) = rest.split_at_checked(usize::try_from(key_length).ok()?)?;
    std::str::from_utf8(key).ok()?;
    skip_nullable_bytes(rest)
}

fn read_header<'a>(reader: &mut Reader<'a>) -> Result<(&'a str, Option<&'a [u8]>), ReadError> {
    let key = reader
        .read_nullable_bytes()?
        .ok_or("a header key is null")?;
    let key = std::str::from_utf8(key).map_err(|_| "a header key is not UTF-8")?;
    let value = reader.read_nullable_bytes()?;
    Ok((key, value))
}
