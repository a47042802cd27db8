//! The grid message: a 7-element MessagePack tuple plus optional subroute and CRC trailers
//! (PROTOCOL.md §3.1, §3.7).

use super::crc::{crc32_of, CRC_LEN};
use super::error::{DecodeError, EncodeError};
use super::ids::{HandlerId, MuxId};
use super::msgpack::{self, Reader};
use super::subroute::{SubrouteId, SUBROUTE_LEN};
use super::{Flags, Op};
use bytes::{BufMut, Bytes, BytesMut};

/// Default maximum size of one grid message: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Extra room above the per-message limit allowed for a whole WebSocket message, so that a
/// merged envelope (at most the writer's merge budget, 128 KiB by default, or the reference's
/// 31 KiB plus one message) always fits.
pub const FRAME_SLACK: usize = 256 << 10;

/// Decode limits, so a peer cannot make us accept unbounded messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size in bytes of one grid message (tuple, payload and trailers).
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// Most bytes a message's framing adds to its payload: the 7-element tuple with every integer
/// at its widest and a 32-bit binary header (31 bytes), the subroute trailer and the CRC.
pub const MAX_MESSAGE_OVERHEAD: usize = 31 + SUBROUTE_LEN + CRC_LEN;

impl Limits {
    /// Largest WebSocket message (one grid message or a merged envelope) we accept.
    pub fn max_frame_size(&self) -> usize {
        self.max_message_size.saturating_add(FRAME_SLACK)
    }

    /// Largest payload that always fits in one message under this limit, whatever the
    /// message's other fields ([`MAX_MESSAGE_OVERHEAD`] less than `max_message_size`).
    pub fn max_payload(&self) -> usize {
        self.max_message_size.saturating_sub(MAX_MESSAGE_OVERHEAD)
    }
}

/// The tuple fields of a message, decoded from its first bytes alone (see
/// [`Message::decode_header`]): enough to answer a message that is not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Call identifier.
    pub mux_id: MuxId,
    /// Per-mux sequence number (for a merged envelope, the number of inner messages).
    pub seq: u32,
    /// Relative deadline in milliseconds.
    pub deadline_ms: u32,
    /// Handler ID.
    pub handler: HandlerId,
    /// Operation.
    pub op: Op,
    /// Flag bits.
    pub flags: Flags,
    /// Length of the payload the message announces.
    pub payload_len: usize,
}

/// Bytes of a message that always hold its whole header: the 7-element tuple up to the payload
/// bytes, with every integer at its widest (1 + 9 + 5 + 5 + 2 + 2 + 2 + 5 = 31), rounded up.
pub const MESSAGE_HEADER_MAX_LEN: usize = 32;

impl MessageHeader {
    /// A message with these tuple fields and no payload (to build a reply that echoes them).
    pub fn to_message(&self) -> Message {
        Message {
            mux_id: self.mux_id,
            seq: self.seq,
            deadline_ms: self.deadline_ms,
            handler: self.handler,
            op: self.op,
            flags: self.flags,
            payload: Bytes::new(),
            subroute: None,
        }
    }
}

/// The error text a receiver answers a message too large for it with (a `MuxConnectError`
/// or a stream's error): exact, so that the caller can turn it back into numbers with
/// [`parse_too_large_text`].
pub fn too_large_text(size: u64, limit: usize) -> String {
    format!("grid message of {size} bytes exceeds the receiver's limit of {limit} bytes (max_message_size)")
}

/// The size and limit of a [`too_large_text`], if `text` is one.
pub fn parse_too_large_text(text: &str) -> Option<(u64, usize)> {
    let rest = text.strip_prefix("grid message of ")?;
    let (size, rest) = rest.split_once(" bytes exceeds the receiver's limit of ")?;
    let limit = rest.strip_suffix(" bytes (max_message_size)")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(size) || !digits(limit) {
        return None;
    }
    Some((size.parse().ok()?, limit.parse().ok()?))
}

/// One grid message.
///
/// The payload is a [`Bytes`] slice of the received buffer (no copy). On the wire an absent and
/// an empty payload are both `c4 00`; the [`Flags::ZERO`] bit tells them apart, see
/// [`Message::payload_opt`] and [`Message::set_payload`].
///
/// The SUBROUTE flag is derived from [`Message::subroute`] when encoding, and the CRC trailer is
/// written iff [`Flags::CRC`] is set, so an encoded message is always self-consistent.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Call identifier chosen by the caller; 0 = connection level.
    pub mux_id: MuxId,
    /// Per-mux sequence number; for a merged envelope, the number of inner messages.
    pub seq: u32,
    /// Relative deadline in milliseconds; 0 = none.
    pub deadline_ms: u32,
    /// Handler ID, 0 when not applicable.
    pub handler: HandlerId,
    /// Operation.
    pub op: Op,
    /// Flag bits (unknown bits are preserved).
    pub flags: Flags,
    /// Payload bytes (see [`Message::payload_opt`] for absent vs empty).
    pub payload: Bytes,
    /// Subroute trailer, present iff the SUBROUTE flag is set.
    pub subroute: Option<SubrouteId>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("op", &self.op)
            .field("mux_id", &self.mux_id)
            .field("seq", &self.seq)
            .field("deadline_ms", &self.deadline_ms)
            .field("handler", &self.handler)
            .field("flags", &self.flags)
            .field("payload_len", &self.payload.len());
        if let Some(s) = &self.subroute {
            d.field("subroute", s);
        }
        d.finish()
    }
}

/// Bytes of the tuple besides its integers and payload: the array header (1) and the op and
/// flags bytes are counted with the integers; this is only the fixarray marker.
const ARRAY_HEADER_LEN: usize = 1;

impl Message {
    /// The tuple fields of this message (as [`Message::decode_header`] gives them).
    pub fn header(&self) -> MessageHeader {
        MessageHeader {
            mux_id: self.mux_id,
            seq: self.seq,
            deadline_ms: self.deadline_ms,
            handler: self.handler,
            op: self.op,
            flags: self.flags,
            payload_len: self.payload.len(),
        }
    }

    /// A message with the given op and mux ID and every other field zero / absent.
    pub fn new(op: Op, mux_id: MuxId) -> Message {
        Message {
            mux_id,
            seq: 0,
            deadline_ms: 0,
            handler: 0,
            op,
            flags: Flags::NONE,
            payload: Bytes::new(),
            subroute: None,
        }
    }

    /// The payload, or `None` if it is absent (zero length without the ZERO flag, §3.7).
    pub fn payload_opt(&self) -> Option<&Bytes> {
        if self.payload.is_empty() && !self.flags.contains(Flags::ZERO) {
            None
        } else {
            Some(&self.payload)
        }
    }

    /// Sets the payload and the ZERO flag so that absent and empty survive the trip (§3.7).
    pub fn set_payload(&mut self, payload: Option<Bytes>) {
        match payload {
            Some(p) => {
                self.flags.set(Flags::ZERO, p.is_empty());
                self.payload = p;
            }
            None => {
                self.flags.set(Flags::ZERO, false);
                self.payload = Bytes::new();
            }
        }
    }

    /// The flags as they go on the wire: SUBROUTE follows [`Message::subroute`].
    pub fn wire_flags(&self) -> Flags {
        let mut f = self.flags;
        f.set(Flags::SUBROUTE, self.subroute.is_some());
        f
    }

    /// Encoded length of the tuple alone.
    fn tuple_len(&self) -> usize {
        ARRAY_HEADER_LEN
            + msgpack::uint_len(self.mux_id)
            + msgpack::uint_len(self.seq as u64)
            + msgpack::uint_len(self.deadline_ms as u64)
            + msgpack::uint_len(self.handler as u64)
            + msgpack::uint_len(self.op.as_u8() as u64)
            + msgpack::uint_len(self.wire_flags().0 as u64)
            + msgpack::bin_header_len(self.payload.len())
            + self.payload.len()
    }

    /// Exact number of bytes [`Message::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        let flags = self.wire_flags();
        self.tuple_len()
            + if flags.contains(Flags::SUBROUTE) {
                SUBROUTE_LEN
            } else {
                0
            }
            + if flags.contains(Flags::CRC) {
                CRC_LEN
            } else {
                0
            }
    }

    /// Appends the encoded message (tuple, subroute trailer, CRC trailer) to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        if self.payload.len() > u32::MAX as usize {
            return Err(EncodeError::PayloadTooLarge(self.payload.len()));
        }
        let flags = self.wire_flags();
        buf.reserve(self.encoded_len());
        let start = buf.len();
        // The header goes through a stack buffer and into `buf` in one copy: at most
        // 1 + 6 × 9 (array marker, six uints) + 5 (bin header) = 60 bytes.
        const HDR_MAX: usize = 64;
        let mut hdr = [0u8; HDR_MAX];
        let mut w: &mut [u8] = &mut hdr[..];
        w.put_u8(0x97);
        msgpack::put_uint(&mut w, self.mux_id);
        msgpack::put_uint(&mut w, self.seq as u64);
        msgpack::put_uint(&mut w, self.deadline_ms as u64);
        msgpack::put_uint(&mut w, self.handler as u64);
        msgpack::put_uint(&mut w, self.op.as_u8() as u64);
        msgpack::put_uint(&mut w, flags.0 as u64);
        msgpack::put_bin_header(&mut w, self.payload.len());
        let n = HDR_MAX - w.len();
        buf.put_slice(&hdr[..n]);
        buf.put_slice(&self.payload);
        if let Some(s) = &self.subroute {
            buf.put_slice(&s.0);
        }
        if flags.contains(Flags::CRC) {
            let crc = crc32_of(&buf[start..]);
            buf.put_u32_le(crc);
        }
        Ok(())
    }

    /// Encodes into a new buffer.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b)?;
        Ok(b.freeze())
    }

    /// Decodes the tuple fields of a message from its first bytes (at least
    /// [`MESSAGE_HEADER_MAX_LEN`] of them, or the whole message if shorter), without its
    /// payload or trailers, and without checking its size or CRC. Used to answer a message too
    /// large to be read whole.
    pub fn decode_header(prefix: &[u8]) -> Result<MessageHeader, DecodeError> {
        Self::read_header(&mut Reader::new(prefix))
    }

    /// Reads the tuple up to the payload's bytes: the one reading of the tuple's fields, for
    /// [`Message::decode_header`] and for the full decode.
    #[inline(always)]
    fn read_header(r: &mut Reader<'_>) -> Result<MessageHeader, DecodeError> {
        let n = r.array_len("message tuple")?;
        if n != 7 {
            return Err(DecodeError::WrongTupleLen(n));
        }
        Ok(MessageHeader {
            mux_id: r.uint("MuxID", u64::MAX)?,
            seq: r.uint("Seq", u32::MAX as u64)? as u32,
            deadline_ms: r.uint("DeadlineMS", u32::MAX as u64)? as u32,
            handler: r.uint("Handler", u8::MAX as u64)? as u8,
            op: Op::from_u8(r.uint("Op", u8::MAX as u64)? as u8),
            flags: Flags(r.uint("Flags", u8::MAX as u64)? as u8),
            payload_len: r.bin_header("Payload")?,
        })
    }

    /// Decodes one grid message with the default [`Limits`]. The payload is a slice of `buf`.
    ///
    /// A merged envelope decodes as its header message (op [`Op::Merged`]); use
    /// [`crate::wire::split_frame`] to get the messages it carries.
    pub fn decode(buf: &Bytes) -> Result<Message, DecodeError> {
        Self::decode_with(buf, &Limits::default())
    }

    /// Decodes one grid message, enforcing `limits`.
    pub fn decode_with(buf: &Bytes, limits: &Limits) -> Result<Message, DecodeError> {
        Ok(Self::decode_parts(buf, limits)?.0)
    }

    /// Decodes a message and also returns the byte range that follows its tuple and precedes
    /// its trailers (the inner items of a merged envelope live there).
    pub(crate) fn decode_parts(
        buf: &Bytes,
        limits: &Limits,
    ) -> Result<(Message, std::ops::Range<usize>), DecodeError> {
        let mut r = Reader::new(buf);
        let h = Self::read_header(&mut r)?;
        let payload_start = r.pos();
        r.take(h.payload_len, "Payload")?;
        let payload_range = payload_start..payload_start + h.payload_len;
        let (op, flags) = (h.op, h.flags);
        let tuple_end = r.pos();
        // A merged envelope may exceed the per-message limit by the merge budget.
        let max = if op == Op::Merged {
            limits.max_frame_size()
        } else {
            limits.max_message_size
        };
        if buf.len() > max {
            return Err(DecodeError::TooLarge {
                size: buf.len(),
                limit: max,
            });
        }

        let mut end = buf.len();
        let mut needed = 0;
        if flags.contains(Flags::CRC) {
            needed += CRC_LEN;
        }
        if flags.contains(Flags::SUBROUTE) {
            needed += SUBROUTE_LEN;
        }
        let available = end - tuple_end;
        if available < needed {
            return Err(DecodeError::MissingTrailer { available, needed });
        }
        if flags.contains(Flags::CRC) {
            end -= CRC_LEN;
            let mut t = [0u8; CRC_LEN];
            t.copy_from_slice(&buf[end..end + CRC_LEN]);
            let received = u32::from_le_bytes(t);
            let computed = crc32_of(&buf[..end]);
            if computed != received {
                return Err(DecodeError::CrcMismatch { computed, received });
            }
        }
        let subroute = if flags.contains(Flags::SUBROUTE) {
            end -= SUBROUTE_LEN;
            let mut id = [0u8; SUBROUTE_LEN];
            id.copy_from_slice(&buf[end..end + SUBROUTE_LEN]);
            Some(SubrouteId(id))
        } else {
            None
        };
        let msg = Message {
            mux_id: h.mux_id,
            seq: h.seq,
            deadline_ms: h.deadline_ms,
            handler: h.handler,
            op,
            flags,
            payload: buf.slice(payload_range),
            subroute,
        };
        Ok((msg, tuple_end..end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Bytes {
        let s: String = s.split_whitespace().collect();
        Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn spec_request_example() {
        let wire = hex("97 01 00 cd ea 60 4e 0e 03 c4 05 68 65 6c 6c 6f 81 f4 02 a0");
        let m = Message::decode(&wire).unwrap();
        assert_eq!(m.mux_id, 1);
        assert_eq!(m.deadline_ms, 60000);
        assert_eq!(m.handler, 78);
        assert_eq!(m.op, Op::Request);
        assert_eq!(m.flags, Flags::CRC | Flags::EOF);
        assert_eq!(&m.payload[..], b"hello");
        assert_eq!(m.to_bytes().unwrap(), wire);
        assert_eq!(m.encoded_len(), wire.len());
    }

    #[test]
    fn absent_vs_empty() {
        let mut m = Message::new(Op::MuxServerMsg, 5);
        m.set_payload(Some(Bytes::new()));
        let d = Message::decode(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(d.payload_opt().map(|b| b.len()), Some(0));
        m.set_payload(None);
        let d = Message::decode(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(d.payload_opt(), None);
    }

    #[test]
    fn limits_are_enforced() {
        let mut m = Message::new(Op::Request, 1);
        m.payload = Bytes::from(vec![7u8; 1000]);
        let b = m.to_bytes().unwrap();
        let lim = Limits {
            max_message_size: 100,
        };
        assert!(matches!(
            Message::decode_with(&b, &lim),
            Err(DecodeError::TooLarge { limit: 100, .. })
        ));
    }

    #[test]
    fn the_widest_message_with_the_largest_payload_fits_the_limit() {
        let lim = Limits {
            max_message_size: 100_000,
        };
        let mut m = Message::new(Op::MuxServerMsg, u64::MAX);
        m.seq = u32::MAX;
        m.deadline_ms = u32::MAX;
        m.handler = u8::MAX;
        m.flags = Flags::CRC | Flags::EOF | Flags::SUBROUTE;
        m.subroute = Some(SubrouteId::new(1, "a/b"));
        m.payload = Bytes::from(vec![1u8; lim.max_payload()]);
        let b = m.to_bytes().unwrap();
        // Op and flags fit in one byte each here; the bound allows two for each.
        assert_eq!(b.len(), lim.max_message_size - 2);
        assert_eq!(Message::decode_with(&b, &lim).unwrap(), m);
    }

    #[test]
    fn the_header_decodes_from_a_prefix_of_the_widest_message() {
        let mut m = Message::new(Op::MuxClientMsg, u64::MAX);
        m.seq = u32::MAX;
        m.deadline_ms = u32::MAX;
        m.handler = u8::MAX;
        m.flags = Flags::CRC | Flags::SUBROUTE;
        m.subroute = Some(SubrouteId::new(1, "a/b"));
        m.payload = Bytes::from(vec![9u8; 70_000]);
        let b = m.to_bytes().unwrap();
        let h = Message::decode_header(&b[..MESSAGE_HEADER_MAX_LEN]).unwrap();
        assert_eq!(
            h,
            MessageHeader {
                mux_id: u64::MAX,
                seq: u32::MAX,
                deadline_ms: u32::MAX,
                handler: u8::MAX,
                op: Op::MuxClientMsg,
                flags: Flags::CRC | Flags::SUBROUTE,
                payload_len: 70_000,
            }
        );
        // Op and flags take one byte each here, so this header is 29 bytes: 28 are not enough.
        assert!(matches!(
            Message::decode_header(&b[..28]),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            Message::decode_header(&b[..29]).unwrap().payload_len,
            70_000
        );
        // The spec's request, whole (shorter than the prefix length).
        let wire = hex("97 01 00 cd ea 60 4e 0e 03 c4 05 68 65 6c 6c 6f 81 f4 02 a0");
        let h = Message::decode_header(&wire).unwrap();
        assert_eq!(
            (h.mux_id, h.deadline_ms, h.handler, h.op),
            (1, 60000, 78, Op::Request)
        );
        assert_eq!((h.flags, h.payload_len), (Flags::CRC | Flags::EOF, 5));
        let back = h.to_message();
        assert_eq!(
            (back.mux_id, back.op, back.payload.len()),
            (1, Op::Request, 0)
        );
        // Garbage is an error, never a panic.
        assert_eq!(
            Message::decode_header(&[0x96, 1, 2]),
            Err(DecodeError::WrongTupleLen(6))
        );
        assert!(Message::decode_header(&[]).is_err());
        assert!(Message::decode_header(&[0x97, 0xc1]).is_err());
    }

    #[test]
    fn the_too_large_text_round_trips_exactly() {
        let t = too_large_text(200_000, 65_536);
        assert_eq!(
            t,
            "grid message of 200000 bytes exceeds the receiver's limit of 65536 bytes (max_message_size)"
        );
        assert_eq!(parse_too_large_text(&t), Some((200_000, 65_536)));
        for bad in [
            "grid message of x bytes exceeds the receiver's limit of 1 bytes (max_message_size)",
            "grid message of 1 bytes exceeds the receiver's limit of  bytes (max_message_size)",
            "grid message of -1 bytes exceeds the receiver's limit of 1 bytes (max_message_size)",
            "grid message of 1 bytes exceeds the receiver's limit of 1 bytes",
            "remote disconnected",
        ] {
            assert_eq!(parse_too_large_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn crc_mismatch_and_missing_trailers() {
        let mut wire = hex("97 01 00 cd ea 60 4e 0e 03 c4 05 68 65 6c 6c 6f 81 f4 02 a0").to_vec();
        wire[12] ^= 1;
        assert!(matches!(
            Message::decode(&Bytes::from(wire.clone())),
            Err(DecodeError::CrcMismatch { .. })
        ));
        wire.truncate(17);
        assert!(matches!(
            Message::decode(&Bytes::from(wire)),
            Err(DecodeError::MissingTrailer {
                available: 1,
                needed: 4
            })
        ));
    }
}
