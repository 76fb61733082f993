//! Compression and decompression of a batch's records section, byte-compatible
//! with the Kafka Java client:
//!
//! - gzip: a gzip stream (several concatenated members are accepted on read);
//! - snappy: written in snappy-java's "xerial" framing (magic, version, then
//!   length-prefixed raw snappy blocks of 32 KiB input), which is what the Java
//!   client writes; plain raw snappy (librdkafka) is accepted on read;
//! - lz4: the standard LZ4 *frame* format with independent 64 KiB blocks and no
//!   checksums beyond the header's, as Kafka's `Lz4BlockOutputStream` writes
//!   for magic 2 (the broken header checksum of magic 0/1 does not apply);
//! - zstd: a standard zstd frame, level 3 like the Java client's default.
//!
//! Decompression never sizes a buffer from a length found in the data before
//! checking it against a limit, and stops with an error past that limit.

use std::io::{self, Read, Write};

use bytes::{BufMut, BytesMut};
use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};
use zstd::zstd_safe;

use super::{BatchError, Compression};

/// snappy-java's stream header: magic, format version 1, compatible version 1.
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
const XERIAL_MAGIC_BYTES: usize = 8;
/// snappy-java's default block size; each block is compressed on its own.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
const ZSTD_LEVEL: i32 = 3;
/// Largest zstd window accepted on read (16 MiB); a frame asking for more is
/// refused rather than allowed to make the decoder allocate it.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Reusable compression state; lives in a [`super::BatchBuilder`].
#[derive(Default)]
pub(crate) struct Compressor {
    zstd: Option<zstd::bulk::Compressor<'static>>,
    snappy: Option<snap::raw::Encoder>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

impl Compressor {
    /// Appends `records` compressed with `codec` to `out`.
    pub(crate) fn compress(
        &mut self,
        codec: Compression,
        records: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), BatchError> {
        let wrap = |source: io::Error| BatchError::Compress { codec, source };
        match codec {
            Compression::None => {
                out.extend_from_slice(records);
                Ok(())
            }
            Compression::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(out.writer(), flate2::Compression::default());
                encoder.write_all(records).map_err(wrap)?;
                encoder.finish().map_err(wrap)?;
                Ok(())
            }
            Compression::Snappy => self.compress_snappy(records, out).map_err(wrap),
            Compression::Lz4 => {
                let info = FrameInfo::new()
                    .block_size(BlockSize::Max64KB)
                    .block_mode(BlockMode::Independent);
                let mut encoder = FrameEncoder::with_frame_info(info, out.writer());
                encoder.write_all(records).map_err(wrap)?;
                encoder
                    .finish()
                    .map_err(|err| wrap(io::Error::other(err)))?;
                Ok(())
            }
            Compression::Zstd => self.compress_zstd(records, out).map_err(wrap),
        }
    }

    fn compress_snappy(&mut self, records: &[u8], out: &mut BytesMut) -> io::Result<()> {
        let encoder = self.snappy.get_or_insert_with(snap::raw::Encoder::new);
        out.extend_from_slice(&XERIAL_HEADER);
        for block in records.chunks(XERIAL_BLOCK_BYTES) {
            let start = out.len();
            let bound = snap::raw::max_compress_len(block.len());
            out.resize(start + 4 + bound, 0);
            let written = encoder
                .compress(block, &mut out[start + 4..])
                .map_err(io::Error::other)?;
            // A block is at most 32 KiB of input, so its output fits in u32.
            let written_u32 = u32::try_from(written).map_err(io::Error::other)?;
            out[start..start + 4].copy_from_slice(&written_u32.to_be_bytes());
            out.truncate(start + 4 + written);
        }
        Ok(())
    }

    fn compress_zstd(&mut self, records: &[u8], out: &mut BytesMut) -> io::Result<()> {
        let compressor = match &mut self.zstd {
            Some(compressor) => compressor,
            empty => empty.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        let start = out.len();
        out.resize(start + zstd_safe::compress_bound(records.len()), 0);
        let written = compressor.compress_to_buffer(records, &mut out[start..])?;
        out.truncate(start + written);
        Ok(())
    }
}

/// Reusable decompression state; lives in a [`super::RecordDecoder`].
pub(crate) struct Decompressor {
    zstd: Option<zstd_safe::DCtx<'static>>,
    snappy: snap::raw::Decoder,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor").finish_non_exhaustive()
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Decompressor {
            zstd: None,
            snappy: snap::raw::Decoder::new(),
        }
    }
}

/// Why decompression stopped: bad data, or more output than allowed.
pub(crate) enum DecompressError {
    Corrupt(io::Error),
    TooLarge,
}

impl From<io::Error> for DecompressError {
    fn from(err: io::Error) -> Self {
        DecompressError::Corrupt(err)
    }
}

impl Decompressor {
    /// Replaces `out` with `compressed` decompressed by `codec`, producing at
    /// most `limit_bytes` bytes. `codec` must not be `None`.
    pub(crate) fn decompress(
        &mut self,
        codec: Compression,
        compressed: &[u8],
        out: &mut Vec<u8>,
        limit_bytes: usize,
    ) -> Result<(), DecompressError> {
        out.clear();
        match codec {
            Compression::None => {
                if compressed.len() > limit_bytes {
                    return Err(DecompressError::TooLarge);
                }
                out.extend_from_slice(compressed);
                Ok(())
            }
            Compression::Gzip => read_limited(
                flate2::read::MultiGzDecoder::new(compressed),
                out,
                limit_bytes,
            ),
            Compression::Snappy => self.decompress_snappy(compressed, out, limit_bytes),
            Compression::Lz4 => read_limited(FrameDecoder::new(compressed), out, limit_bytes),
            Compression::Zstd => {
                let context = match &mut self.zstd {
                    Some(context) => context,
                    empty => empty.insert(new_zstd_context()?),
                };
                context
                    .reset(zstd_safe::ResetDirective::SessionOnly)
                    .map_err(zstd_error)?;
                let decoder = zstd::stream::read::Decoder::with_context(compressed, context);
                read_limited(decoder, out, limit_bytes)
            }
        }
    }

    fn decompress_snappy(
        &mut self,
        compressed: &[u8],
        out: &mut Vec<u8>,
        limit_bytes: usize,
    ) -> Result<(), DecompressError> {
        let is_xerial = compressed.len() >= XERIAL_HEADER.len()
            && compressed[..XERIAL_MAGIC_BYTES] == XERIAL_HEADER[..XERIAL_MAGIC_BYTES];
        if !is_xerial {
            return self.append_raw_snappy(compressed, out, limit_bytes);
        }
        let mut rest = &compressed[XERIAL_HEADER.len()..];
        while !rest.is_empty() {
            let Some((length, tail)) = rest.split_first_chunk::<4>() else {
                return Err(corrupt("snappy block length is cut short"));
            };
            let length = usize::try_from(u32::from_be_bytes(*length)).unwrap_or(usize::MAX);
            let Some((block, tail)) = tail.split_at_checked(length) else {
                return Err(corrupt("snappy block is longer than the data"));
            };
            self.append_raw_snappy(block, out, limit_bytes)?;
            rest = tail;
        }
        Ok(())
    }

    fn append_raw_snappy(
        &mut self,
        block: &[u8],
        out: &mut Vec<u8>,
        limit_bytes: usize,
    ) -> Result<(), DecompressError> {
        let claimed = snap::raw::decompress_len(block).map_err(io::Error::other)?;
        let start = out.len();
        // Checked against the limit before the buffer grows to the claimed size.
        if claimed > limit_bytes.saturating_sub(start) {
            return Err(DecompressError::TooLarge);
        }
        out.resize(start + claimed, 0);
        let written = self
            .snappy
            .decompress(block, &mut out[start..])
            .map_err(io::Error::other)?;
        out.truncate(start + written);
        Ok(())
    }
}

fn new_zstd_context() -> io::Result<zstd_safe::DCtx<'static>> {
    let mut context = zstd_safe::DCtx::try_create()
        .ok_or_else(|| io::Error::other("cannot allocate a zstd context"))?;
    context
        .set_parameter(zstd_safe::DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
        .map_err(zstd_error)?;
    Ok(context)
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd_safe::get_error_name(code))
}

fn corrupt(reason: &'static str) -> DecompressError {
    DecompressError::Corrupt(io::Error::new(io::ErrorKind::InvalidData, reason))
}

/// Reads `reader` to its end into `out`, failing once more than `limit_bytes`
/// would be produced. The buffer grows with the data actually produced.
fn read_limited(
    reader: impl Read,
    out: &mut Vec<u8>,
    limit_bytes: usize,
) -> Result<(), DecompressError> {
    let limit_plus_one = u64::try_from(limit_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader.take(limit_plus_one).read_to_end(out)?;
    if out.len() > limit_bytes {
        return Err(DecompressError::TooLarge);
    }
    Ok(())
}
