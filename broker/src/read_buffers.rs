//! Recycled buffers for fetch reads: a read takes a buffer, `pread`s the
//! stored batches into it and hands it out as `Bytes`; when the response
//! that carries it has been sent and the last `Bytes` drops, the buffer comes
//! back. A recycled buffer is already initialised, so a warm broker neither
//! zeroes (a fresh `vec![0; n]` costs as much as the read) nor faults in new
//! pages per fetch.
//!
//! Bounded: at most [`RETAINED_BYTES_MAX`] of idle buffers are kept, the rest
//! are freed. A buffer's bytes past the length read are stale data of an
//! earlier fetch and are never exposed: the `Bytes` covers `..len` only.

use std::sync::Mutex;

use bytes::Bytes;
use weir_log::{FileSlice, LogError};

/// Idle buffer capacity kept for reuse, in bytes.
pub const RETAINED_BYTES_MAX: usize = 64 * 1024 * 1024;

struct Free {
    buffers: Vec<Vec<u8>>,
    retained_bytes: usize,
}

static FREE: Mutex<Free> = Mutex::new(Free {
    buffers: Vec::new(),
    retained_bytes: 0,
});

/// A buffer on loan, returned to the pool when dropped.
struct Loaned {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Loaned {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl Drop for Loaned {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.buf));
    }
}

fn take(len: usize) -> Vec<u8> {
    let Ok(mut free) = FREE.lock() else {
        return Vec::new();
    };
    // The most recently returned buffer that is large enough; else the largest.
    let position = free
        .buffers
        .iter()
        .rposition(|b| b.len() >= len)
        .or_else(|| (!free.buffers.is_empty()).then(|| free.buffers.len() - 1));
    match position {
        Some(at) => {
            let buf = free.buffers.swap_remove(at);
            free.retained_bytes -= buf.capacity();
            buf
        }
        None => Vec::new(),
    }
}

fn give_back(buf: Vec<u8>) {
    if buf.capacity() == 0 {
        return;
    }
    if let Ok(mut free) = FREE.lock() {
        if free.retained_bytes + buf.capacity() <= RETAINED_BYTES_MAX {
            free.retained_bytes += buf.capacity();
            free.buffers.push(buf);
        }
    }
}

/// Copies the slice's batches out (one `pread`) into a recycled buffer.
pub fn read(slice: &FileSlice) -> Result<Bytes, LogError> {
    let len = slice.len();
    let mut buf = take(len);
    if buf.len() < len {
        // Zeroes only the growth, once per buffer size reached.
        buf.resize(len, 0);
    }
    let target = buf.get_mut(..len).unwrap_or_default();
    slice.read_into(target)?;
    debug_assert!(buf.len() >= len);
    Ok(Bytes::from_owner(Loaned { buf, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_and_its_stale_tail_is_hidden() {
        let big = Bytes::from_owner(Loaned {
            buf: vec![7u8; 4096],
            len: 4096,
        });
        drop(big);
        let mut reused = take(100);
        assert!(reused.len() >= 100, "a retained buffer was handed out");
        reused[..3].copy_from_slice(b"abc");
        let bytes = Bytes::from_owner(Loaned {
            buf: reused,
            len: 3,
        });
        assert_eq!(&bytes[..], b"abc");
    }
}
