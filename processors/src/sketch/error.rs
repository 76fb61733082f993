//! The one error type of the sketch module: bad parameters, merges of unlike sketches and
//! undecodable bytes.

use thiserror::Error;

/// Everything that can go wrong building, merging or decoding a sketch.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SketchError {
    /// A dimension that must be positive was zero.
    #[error("{what} must be at least 1, got 0")]
    Zero { what: &'static str },

    /// A probability parameter outside the open interval (0, 1).
    #[error("{name} must be in the open interval (0, 1), got {value}")]
    ProbabilityOutOfRange { name: &'static str, value: f64 },

    /// A parameter outside the range the sketch supports.
    #[error("{name} is {value}, above the supported maximum of {max}")]
    TooLarge {
        name: &'static str,
        value: u64,
        max: u64,
    },

    /// A parameter that is invalid for another reason (negative skew, NaN, ...).
    #[error("{name} is invalid: {reason}")]
    InvalidParameter { name: &'static str, reason: String },

    /// A memory budget that cannot hold even the smallest sketch of the requested kind.
    #[error("a memory budget of {budget_bytes} bytes cannot hold {what}; it needs at least {needed_bytes} bytes")]
    BudgetTooSmall {
        what: String,
        budget_bytes: usize,
        needed_bytes: usize,
    },

    /// Two sketches whose shapes differ cannot be merged.
    #[error("cannot merge {what}: this one is {left}, the other is {right}")]
    MergeMismatch {
        what: &'static str,
        left: String,
        right: String,
    },

    /// Serialized bytes that are not a valid sketch.
    #[error("cannot decode sketch: {0}")]
    Decode(#[from] DecodeError),
}

impl SketchError {
    /// `value` must be at least 1 and at most `max`; the error names `name`.
    pub(super) fn check_count(name: &'static str, value: u64, max: u64) -> Result<(), SketchError> {
        if value == 0 {
            return Err(SketchError::Zero { what: name });
        }
        if value > max {
            return Err(SketchError::TooLarge { name, value, max });
        }
        Ok(())
    }
}

/// Why serialized sketch bytes were rejected. Offsets are byte positions in the input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("input is {available} bytes, shorter than the {needed}-byte header")]
    TruncatedHeader { needed: usize, available: usize },

    #[error("bad magic {found:02x?} at offset 0, expected {expected:02x?}")]
    BadMagic { found: [u8; 4], expected: [u8; 4] },

    #[error("format version {found} at offset 4 is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },

    #[error("field {field} at offset {offset} holds {value}, which is not valid: {reason}")]
    BadField {
        field: &'static str,
        offset: usize,
        value: u64,
        reason: &'static str,
    },

    #[error("input is {actual} bytes but its header describes {expected} bytes")]
    LengthMismatch { expected: u64, actual: usize },

    #[error("checksum mismatch: header says {stored:#010x}, contents hash to {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
}
