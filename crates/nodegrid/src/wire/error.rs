//! Errors of the wire layer: everything that can be wrong with bytes a peer sent us.
//!
//! A decode error always means "the peer sent malformed bytes"; the session layer reacts by
//! ending the session (PROTOCOL.md §4.4). Nothing in the wire layer panics on input.

/// A grid message (or one of its payloads) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the structure did.
    #[error("truncated input: {context} needs {needed} more byte(s) at offset {offset}")]
    Truncated {
        /// What was being read.
        context: &'static str,
        /// Offset at which the read started.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A MessagePack value of an unexpected type was found.
    #[error("{field}: unexpected MessagePack type byte 0x{byte:02x} at offset {offset}")]
    UnexpectedType {
        /// The field being decoded.
        field: &'static str,
        /// The offending type byte.
        byte: u8,
        /// Where it was found.
        offset: usize,
    },
    /// An integer does not fit the field (negative, or too wide).
    #[error("{field}: integer {value} out of range")]
    IntOutOfRange {
        /// The field being decoded.
        field: &'static str,
        /// The value read, as i128 so that both signed and unsigned fit.
        value: i128,
    },
    /// The message tuple is not an array of exactly 7 elements.
    #[error("message tuple has {0} elements, expected 7")]
    WrongTupleLen(u32),
    /// The CRC trailer does not match the message.
    #[error("CRC mismatch: computed 0x{computed:08x}, trailer says 0x{received:08x}")]
    CrcMismatch {
        /// CRC computed over the received bytes.
        computed: u32,
        /// CRC found in the trailer.
        received: u32,
    },
    /// Flags announce trailers (CRC and/or subroute) that are not there.
    #[error(
        "message too short for its trailers: {available} byte(s) after the tuple, {needed} needed"
    )]
    MissingTrailer {
        /// Bytes after the tuple.
        available: usize,
        /// Bytes the flags require.
        needed: usize,
    },
    /// A message exceeds the configured size limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size of the message (or announced payload).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{field}: invalid UTF-8")]
    InvalidUtf8 {
        /// The field being decoded.
        field: &'static str,
    },
    /// A UUID field is not exactly 16 bytes long.
    #[error("{field}: UUID must be 16 bytes, got {len}")]
    InvalidUuidLength {
        /// The field being decoded.
        field: &'static str,
        /// Its actual length.
        len: usize,
    },
    /// A timestamp extension is malformed.
    #[error("{field}: invalid timestamp ({reason})")]
    InvalidTimestamp {
        /// The field being decoded.
        field: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// MessagePack nesting deeper than we are willing to skip.
    #[error("MessagePack value nested deeper than {0} levels")]
    TooDeep(usize),
    /// A merged envelope announced more inner messages than it carries.
    #[error("merged envelope announced {announced} messages but holds only {found}")]
    MergedTruncated {
        /// The count in the envelope header.
        announced: u32,
        /// How many complete inner messages were found.
        found: u32,
    },
}

/// A message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload does not fit in a MessagePack bin32 (4 GiB).
    #[error("payload of {0} bytes does not fit in a MessagePack bin (max 4 GiB - 1)")]
    PayloadTooLarge(usize),
}
