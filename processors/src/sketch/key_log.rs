//! Byte-string keys appended to one buffer of fixed capacity, each behind a 4-byte header, and
//! compacted in place by sliding.
//!
//! [`FrequentItems`](super::FrequentItems) must keep its keys inside its memory budget whatever
//! their length, so the buffer is allocated once and never grows: a key that does not fit is the
//! caller's signal to free some (purge) and compact. Compaction needs no memory of its own: the
//! owner first *threads* each live entry (its header is swapped for the owner's slot index, the
//! length going into the owner's slot), then one pass slides live entries down and tells each
//! owner where its key went. Dead entries are skipped by their length.
//!
//! Header (u32, little-endian): bit 31 dead, bit 30 threaded, low 30 bits the key length, or while
//! threaded the owner's slot index.

/// Longest key stored (1 GiB − 1): the length shares its header word with two flags.
pub(super) const LOGGED_KEY_BYTES_MAX: usize = (1 << 30) - 1;
/// Bytes of header before each key.
pub(super) const HEADER_BYTES: usize = 4;

const DEAD: u32 = 1 << 31;
const THREADED: u32 = 1 << 30;
const VALUE_MASK: u32 = THREADED - 1;

#[derive(Debug)]
pub(super) struct KeyLog {
    /// Entries from 0 to `len()`; `capacity()` is fixed at construction.
    bytes: Vec<u8>,
    /// Bytes of dead entries, headers included.
    garbage_bytes: usize,
}

impl KeyLog {
    /// A log of exactly `capacity_bytes` bytes, allocated now. `capacity_bytes <= u32::MAX`.
    pub(super) fn new(capacity_bytes: usize) -> Self {
        debug_assert!(capacity_bytes <= u32::MAX as usize);
        Self {
            bytes: Vec::with_capacity(capacity_bytes),
            garbage_bytes: 0,
        }
    }

    /// Whether a key of `len` bytes can be appended without growing the buffer.
    #[inline]
    pub(super) fn fits(&self, len: usize) -> bool {
        len <= LOGGED_KEY_BYTES_MAX
            && self.bytes.len() + HEADER_BYTES + len <= self.bytes.capacity()
    }

    /// Whether a key of `len` bytes would fit after a compaction that reclaims the dead entries.
    #[inline]
    pub(super) fn fits_after_compaction(&self, len: usize) -> bool {
        len <= LOGGED_KEY_BYTES_MAX
            && self.bytes.len() - self.garbage_bytes + HEADER_BYTES + len <= self.bytes.capacity()
    }

    /// Appends `key` and returns its offset. The caller checked [`fits`](Self::fits).
    #[inline]
    pub(super) fn append(&mut self, key: &[u8]) -> u32 {
        debug_assert!(self.fits(key.len()) && key.len() <= LOGGED_KEY_BYTES_MAX);
        let at = self.bytes.len();
        self.bytes
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(key);
        at as u32
    }

    /// The key of the live entry at `at`.
    #[inline]
    pub(super) fn get(&self, at: u32) -> &[u8] {
        let at = at as usize;
        let word = self.header(at);
        debug_assert_eq!(
            word & (DEAD | THREADED),
            0,
            "reading a dead or threaded entry"
        );
        let start = at + HEADER_BYTES;
        self.bytes
            .get(start..start + (word & VALUE_MASK) as usize)
            .unwrap_or(&[])
    }

    /// Marks the live entry at `at` dead; its bytes are reclaimed by the next compaction.
    pub(super) fn kill(&mut self, at: u32) {
        let at = at as usize;
        let word = self.header(at);
        debug_assert_eq!(word & (DEAD | THREADED), 0);
        self.set_header(at, word | DEAD);
        self.garbage_bytes += HEADER_BYTES + (word & VALUE_MASK) as usize;
    }

    #[cfg(test)]
    pub(super) fn garbage_bytes(&self) -> usize {
        self.garbage_bytes
    }

    /// Hands the live entry at `at` to `owner` (< 2^30) for the next [`slide`](Self::slide) and
    /// returns its key length, which the owner keeps until then.
    pub(super) fn thread(&mut self, at: u32, owner: u32) -> u32 {
        let at = at as usize;
        let word = self.header(at);
        debug_assert_eq!(word & (DEAD | THREADED), 0);
        debug_assert!(owner <= VALUE_MASK);
        self.set_header(at, THREADED | owner);
        word & VALUE_MASK
    }

    /// Drops dead entries and moves the threaded ones down, in order. For each, `relocate(owner,
    /// new_offset)` returns the length [`thread`](Self::thread) gave the owner and learns the new
    /// offset. Every live entry must have been threaded.
    pub(super) fn slide(&mut self, mut relocate: impl FnMut(u32, u32) -> u32) {
        let (mut read, mut write) = (0usize, 0usize);
        while read < self.bytes.len() {
            let word = self.header(read);
            if word & DEAD != 0 {
                read += HEADER_BYTES + (word & VALUE_MASK) as usize;
                continue;
            }
            debug_assert!(
                word & THREADED != 0,
                "live entry at {read} was not threaded"
            );
            let len = relocate(word & VALUE_MASK, write as u32) as usize;
            self.bytes.copy_within(
                read + HEADER_BYTES..read + HEADER_BYTES + len,
                write + HEADER_BYTES,
            );
            self.set_header(write, len as u32);
            read += HEADER_BYTES + len;
            write += HEADER_BYTES + len;
        }
        self.bytes.truncate(write);
        self.garbage_bytes = 0;
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.garbage_bytes = 0;
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    #[inline]
    fn header(&self, at: usize) -> u32 {
        let mut word = [0u8; HEADER_BYTES];
        if let Some(bytes) = self.bytes.get(at..at + HEADER_BYTES) {
            word.copy_from_slice(bytes);
        }
        u32::from_le_bytes(word)
    }

    fn set_header(&mut self, at: usize, word: u32) {
        self.bytes[at..at + HEADER_BYTES].copy_from_slice(&word.to_le_bytes());
    }
}

/// A clone has the same fixed capacity (`Vec::clone` would shrink it to the length, and the next
/// append would then grow past the budget).
impl Clone for KeyLog {
    fn clone(&self) -> Self {
        let mut bytes = Vec::with_capacity(self.bytes.capacity());
        bytes.extend_from_slice(&self.bytes);
        Self {
            bytes,
            garbage_bytes: self.garbage_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slide_keeps_live_keys_in_order_and_reclaims_dead_ones() {
        let mut log = KeyLog::new(64);
        let keys: [&[u8]; 5] = [b"alpha", b"", b"gamma-long-key", b"d", b"epsilon"];
        let mut offsets: Vec<u32> = keys.iter().map(|key| log.append(key)).collect();
        log.kill(offsets[0]);
        log.kill(offsets[3]);
        let live = [1usize, 2, 4];
        let mut stashed = [0u32; 5];
        for &owner in &live {
            stashed[owner] = log.thread(offsets[owner], owner as u32);
        }
        log.slide(|owner, new_offset| {
            offsets[owner as usize] = new_offset;
            stashed[owner as usize]
        });
        for &owner in &live {
            assert_eq!(log.get(offsets[owner]), keys[owner]);
        }
        assert_eq!(offsets[1], 0);
        assert_eq!(log.garbage_bytes(), 0);
        assert_eq!(log.bytes.len(), 3 * HEADER_BYTES + 14 + 7);
        assert!(log.fits(64 - log.bytes.len() - HEADER_BYTES));
        assert!(!log.fits(64 - log.bytes.len() - HEADER_BYTES + 1));
    }

    #[test]
    fn a_clone_keeps_the_fixed_capacity() {
        let mut log = KeyLog::new(100);
        log.append(b"key");
        assert_eq!(log.clone().memory_bytes(), 100);
    }
}
