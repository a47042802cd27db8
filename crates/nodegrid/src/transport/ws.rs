//! A minimal RFC 6455 frame codec, just what the grid needs (PROTOCOL.md §2.8).
//!
//! Why our own: the grid sends every message as one binary frame built in a buffer that already
//! holds the encoded grid messages, so the frame header is written into reserved headroom and
//! the whole frame goes out in one `write` with no extra copy; received payloads are frozen
//! slices of the read buffer (zero copy); and the size limits are ours (§2.8 says the reference
//! has none). The codec is sans-IO: it works on byte buffers and is unit-tested on the golden
//! WebSocket frames of the test vectors.

use crate::wire::{Message, MessageHeader, Op, MESSAGE_HEADER_MAX_LEN};
use bytes::{Buf, Bytes, BytesMut};

/// Largest frame header: 2 bytes + 8 bytes extended length + 4 bytes mask key.
pub(crate) const MAX_HEADER_LEN: usize = 14;
/// Largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Which end of the WebSocket we are: the dialer masks what it sends and requires unmasked
/// frames; the acceptor requires masked frames (the reference enforces both strictly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Dialer,
    Acceptor,
}

/// A WebSocket-level protocol violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The peer broke RFC 6455 (or the grid's stricter rules).
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A message exceeds the configured limit.
    #[error("websocket message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced or accumulated size.
        size: u64,
        /// Configured limit.
        limit: usize,
    },
}

/// What one complete frame (or reassembled message) means to the session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WsEvent {
    /// A complete binary message.
    Binary(Bytes),
    /// A complete text message (discarded after the handshake).
    Text(Bytes),
    /// A ping; must be answered with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong (ignored).
    Pong,
    /// A close frame; answer with close and end the session.
    Close,
    /// A binary message over the skip limit (see [`FrameDecoder::skip_oversized`]), discarded
    /// as it arrived: the grid header decoded from its first bytes, and its size.
    Oversized {
        /// The tuple fields of the skipped message.
        header: MessageHeader,
        /// The message's size in bytes (all its fragments).
        size: u64,
    },
}

/// Most bytes a skipped message asks to be read at once: skipping never makes the reader
/// reserve room for the whole message.
const SKIP_READ: usize = 64 * 1024;

/// A message being discarded.
#[derive(Debug)]
struct Skipping {
    header: MessageHeader,
    /// Bytes of the message so far (all fragments).
    size: u64,
    /// Bytes of the current frame still to discard.
    in_frame: u64,
    /// Whether the current frame is the message's last.
    fin: bool,
}

/// Length of the header for a payload of `len` bytes.
pub(crate) fn header_len(len: usize, masked: bool) -> usize {
    let base = match len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    };
    base + if masked { 4 } else { 0 }
}

/// Writes a FIN binary frame header for `len` payload bytes into `out`, which must be exactly
/// `header_len(len, mask.is_some())` bytes long.
pub(crate) fn write_header(out: &mut [u8], opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out[0] = 0x80 | opcode;
    let n = match len {
        0..=125 => {
            out[1] = mask_bit | len as u8;
            2
        }
        126..=0xffff => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    if let Some(k) = mask {
        out[n..n + 4].copy_from_slice(&k);
    }
}

/// Frames `buf[start..]` as one binary frame, writing the header into the headroom before
/// `start` and masking the payload in place when `mask` is given. Returns the frame's first
/// byte offset. The caller guarantees `start >= MAX_HEADER_LEN`.
pub(crate) fn frame_in_place(buf: &mut [u8], start: usize, mask: Option<[u8; 4]>) -> usize {
    let len = buf.len() - start;
    let hl = header_len(len, mask.is_some());
    let frame_start = start - hl;
    write_header(&mut buf[frame_start..start], OP_BINARY, len, mask);
    if let Some(k) = mask {
        apply_mask(&mut buf[start..], k);
    }
    frame_start
}

/// Builds a complete control or data frame in a new buffer (used for pongs and close frames,
/// which are rare).
pub(crate) fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let hl = header_len(payload.len(), mask.is_some());
    let mut v = vec![0u8; hl + payload.len()];
    write_header(&mut v[..hl], opcode, payload.len(), mask);
    v[hl..].copy_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut v[hl..], k);
    }
    v
}

/// A pong frame answering a ping.
pub(crate) fn pong_frame(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    frame(OP_PONG, payload, mask)
}

/// XORs `data` with the 4-byte mask key, eight bytes at a time.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let k8 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_ne_bytes(w) ^ k8;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Incremental frame decoder: feed it the read buffer, it takes complete frames off the front.
#[derive(Debug)]
pub(crate) struct FrameDecoder {
    role: Role,
    /// Data messages larger than this are a protocol error ([`WsError::TooLarge`]).
    max_message: usize,
    /// Binary messages larger than this that are not merged envelopes are skipped (their grid
    /// header kept) instead; `usize::MAX` when off.
    skip_over: usize,
    /// A fragmented data message being reassembled: (opcode, bytes so far).
    partial: Option<(u8, BytesMut)>,
    /// A message being discarded.
    skipping: Option<Skipping>,
}

/// Result of [`FrameDecoder::decode`] when no complete frame is buffered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// At least this many more bytes must be read before anything can be decoded.
    More(usize),
}

impl FrameDecoder {
    pub(crate) fn new(role: Role, max_message: usize) -> Self {
        FrameDecoder {
            role,
            max_message,
            skip_over: usize::MAX,
            partial: None,
            skipping: None,
        }
    }

    /// Binary messages over `limit` bytes (at most the hard limit) are no longer an error: the
    /// decoder keeps the first bytes of such a message, enough for its grid header
    /// ([`MESSAGE_HEADER_MAX_LEN`]), discards the rest as it arrives and yields
    /// [`WsEvent::Oversized`]. A merged envelope (op 17) still may be as large as the hard
    /// limit, and is an error beyond it, as is a message whose first bytes are no grid header.
    pub(crate) fn skip_oversized(mut self, limit: usize) -> Self {
        self.skip_over = limit.min(self.max_message);
        self
    }

    /// The grid header of a message whose first bytes are `done` (already unmasked) followed by
    /// `next` (masked with `key` from its start).
    fn peek_header(done: &[u8], next: &[u8], key: Option<[u8; 4]>) -> Option<MessageHeader> {
        let mut p = [0u8; MESSAGE_HEADER_MAX_LEN];
        let a = done.len().min(MESSAGE_HEADER_MAX_LEN);
        p[..a].copy_from_slice(&done[..a]);
        let b = next.len().min(MESSAGE_HEADER_MAX_LEN - a);
        p[a..a + b].copy_from_slice(&next[..b]);
        if let Some(k) = key {
            apply_mask(&mut p[a..a + b], k);
        }
        Message::decode_header(&p[..a + b]).ok()
    }

    /// Discards what is buffered of the message being skipped; the event once it is done.
    fn discard(&mut self, buf: &mut BytesMut) -> Option<Result<WsEvent, Need>> {
        let sk = self.skipping.as_mut()?;
        let n = (sk.in_frame.min(buf.len() as u64)) as usize;
        buf.advance(n);
        sk.in_frame -= n as u64;
        if sk.in_frame > 0 {
            return Some(Err(Need::More((sk.in_frame as usize).min(SKIP_READ))));
        }
        if !sk.fin {
            // More fragments follow: read the next frame's header.
            return None;
        }
        let sk = self.skipping.take()?;
        Some(Ok(WsEvent::Oversized {
            header: sk.header,
            size: sk.size,
        }))
    }

    /// Takes the next complete event off the front of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Result<WsEvent, Need>, WsError> {
        loop {
            if self
                .skipping
                .as_ref()
                .is_some_and(|s| s.in_frame > 0 || s.fin)
            {
                if let Some(r) = self.discard(buf) {
                    return Ok(r);
                }
            }
            if buf.len() < 2 {
                return Ok(Err(Need::More(2 - buf.len())));
            }
            let b0 = buf[0];
            let b1 = buf[1];
            let fin = b0 & 0x80 != 0;
            if b0 & 0x70 != 0 {
                return Err(WsError::Protocol("reserved bits set"));
            }
            let opcode = b0 & 0x0f;
            let masked = b1 & 0x80 != 0;
            match (self.role, masked) {
                (Role::Acceptor, false) => {
                    return Err(WsError::Protocol("unmasked frame from client"))
                }
                (Role::Dialer, true) => return Err(WsError::Protocol("masked frame from server")),
                _ => {}
            }
            let (len, mut hl) = match b1 & 0x7f {
                126 => {
                    if buf.len() < 4 {
                        return Ok(Err(Need::More(4 - buf.len())));
                    }
                    (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
                }
                127 => {
                    if buf.len() < 10 {
                        return Ok(Err(Need::More(10 - buf.len())));
                    }
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&buf[2..10]);
                    (u64::from_be_bytes(a), 10)
                }
                n => (n as u64, 2),
            };
            let is_control = opcode & 0x08 != 0;
            if is_control && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
                return Err(WsError::Protocol("invalid control frame"));
            }
            let so_far = self.partial.as_ref().map_or(0, |(_, b)| b.len() as u64);
            let total = len.saturating_add(if is_control { 0 } else { so_far });
            if !is_control && self.skipping.is_some() {
                if opcode != OP_CONT {
                    return Err(WsError::Protocol(
                        "new data frame inside a fragmented message",
                    ));
                }
                // The next fragment of a message being skipped: skip it too.
                hl += if masked { 4 } else { 0 };
                if buf.len() < hl {
                    return Ok(Err(Need::More(hl - buf.len())));
                }
                buf.advance(hl);
                if let Some(sk) = self.skipping.as_mut() {
                    sk.size = sk.size.saturating_add(len);
                    sk.in_frame = len;
                    sk.fin = fin;
                }
                continue;
            }
            let binary = match (&self.partial, opcode) {
                (None, OP_BINARY) => true,
                (Some((op, _)), OP_CONT) => *op == OP_BINARY,
                _ => false,
            };
            let skip = binary && total > self.skip_over as u64;
            if total > self.max_message as u64 && !skip {
                return Err(WsError::TooLarge {
                    size: total,
                    limit: self.max_message,
                });
            }
            let key = if masked {
                if buf.len() < hl + 4 {
                    return Ok(Err(Need::More(hl + 4 - buf.len())));
                }
                let k = [buf[hl], buf[hl + 1], buf[hl + 2], buf[hl + 3]];
                hl += 4;
                Some(k)
            } else {
                None
            };
            if skip {
                // Enough of the message for its grid header: what is reassembled so far plus
                // the first bytes of this frame.
                let done = self.partial.as_ref().map_or(&[][..], |(_, b)| &b[..]);
                let want = (MESSAGE_HEADER_MAX_LEN.saturating_sub(done.len()) as u64).min(len);
                let want = want as usize;
                if buf.len() < hl + want {
                    return Ok(Err(Need::More(hl + want - buf.len())));
                }
                let header = Self::peek_header(done, &buf[hl..hl + want], key);
                let too_large = WsError::TooLarge {
                    size: total,
                    limit: self.skip_over,
                };
                let Some(header) = header else {
                    // No grid message: nothing to answer, so this stays an error.
                    return Err(too_large);
                };
                if header.op == Op::Merged {
                    if total > self.max_message as u64 {
                        return Err(WsError::TooLarge {
                            size: total,
                            limit: self.max_message,
                        });
                    }
                    // An envelope may use the whole hard limit: read it as usual.
                } else {
                    buf.advance(hl);
                    self.partial = None;
                    self.skipping = Some(Skipping {
                        header,
                        size: total,
                        in_frame: len,
                        fin,
                    });
                    continue;
                }
            }
            let len = len as usize;
            if buf.len() < hl + len {
                return Ok(Err(Need::More(hl + len - buf.len())));
            }
            buf.advance(hl);
            let mut payload = buf.split_to(len);
            if let Some(k) = key {
                apply_mask(&mut payload, k);
            }
            match opcode {
                OP_PING => return Ok(Ok(WsEvent::Ping(payload.freeze()))),
                OP_PONG => return Ok(Ok(WsEvent::Pong)),
                OP_CLOSE => return Ok(Ok(WsEvent::Close)),
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() || self.skipping.is_some() {
                        return Err(WsError::Protocol(
                            "new data frame inside a fragmented message",
                        ));
                    }
                    if fin {
                        let p = payload.freeze();
                        return Ok(Ok(if opcode == OP_BINARY {
                            WsEvent::Binary(p)
                        } else {
                            WsEvent::Text(p)
                        }));
                    }
                    self.partial = Some((opcode, payload));
                }
                OP_CONT => {
                    let Some((op, mut acc)) = self.partial.take() else {
                        return Err(WsError::Protocol("continuation without a started message"));
                    };
                    acc.extend_from_slice(&payload);
                    if fin {
                        let p = acc.freeze();
                        return Ok(Ok(if op == OP_BINARY {
                            WsEvent::Binary(p)
                        } else {
                            WsEvent::Text(p)
                        }));
                    }
                    self.partial = Some((op, acc));
                }
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(role: Role, bytes: &[u8]) -> Vec<WsEvent> {
        let mut d = FrameDecoder::new(role, 1 << 20);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Ok(e) = d.decode(&mut buf).unwrap() {
            out.push(e);
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn masked_and_unmasked_golden_frames() {
        let payload = hex::decode("97000300001100c400c410976400cdea604e0e03c401611edf9968c410976500cdea604e0e03c40162567670c3c410976600cdea604e0e03c4016362cc5edf").unwrap();
        let masked = hex::decode("82bf0102030496020004011303c001c613936502ceee614c0d07c503621ade9b6bc011956604cce8634a0f01c70563547574c2c613936702ceee614c0d07c5036066cd5cdc").unwrap();
        let mut buf = vec![0u8; MAX_HEADER_LEN];
        buf.extend_from_slice(&payload);
        let start = frame_in_place(&mut buf, MAX_HEADER_LEN, Some([1, 2, 3, 4]));
        assert_eq!(&buf[start..], &masked[..]);
        assert_eq!(
            decode_all(Role::Acceptor, &masked),
            vec![WsEvent::Binary(Bytes::from(payload.clone()))]
        );
        let unmasked = frame(OP_BINARY, &payload, None);
        assert_eq!(unmasked[..2], [0x82, 0x3f]);
        assert_eq!(
            decode_all(Role::Dialer, &unmasked),
            vec![WsEvent::Binary(Bytes::from(payload))]
        );
    }

    #[test]
    fn masking_rules_and_rsv_enforced() {
        let unmasked = frame(OP_BINARY, b"x", None);
        let mut d = FrameDecoder::new(Role::Acceptor, 100);
        assert!(d.decode(&mut BytesMut::from(&unmasked[..])).is_err());
        let masked = frame(OP_BINARY, b"x", Some([9, 9, 9, 9]));
        let mut d = FrameDecoder::new(Role::Dialer, 100);
        assert!(d.decode(&mut BytesMut::from(&masked[..])).is_err());
        let mut rsv = unmasked.clone();
        rsv[0] |= 0x40;
        let mut d = FrameDecoder::new(Role::Dialer, 100);
        assert_eq!(
            d.decode(&mut BytesMut::from(&rsv[..])),
            Err(WsError::Protocol("reserved bits set"))
        );
    }

    #[test]
    fn fragments_with_interleaved_ping_and_partial_reads() {
        let mut wire = Vec::new();
        let mut f1 = frame(OP_BINARY, b"hel", None);
        f1[0] &= 0x7f; // not FIN
        wire.extend(f1);
        wire.extend(frame(OP_PING, b"p", None));
        let mut f2 = frame(OP_CONT, b"lo", None);
        f2[0] |= 0x80;
        wire.extend(f2);
        // Feed one byte at a time: every prefix is either incomplete or yields an event.
        let mut d = FrameDecoder::new(Role::Dialer, 100);
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            while let Ok(e) = d.decode(&mut buf).unwrap() {
                events.push(e);
            }
        }
        assert_eq!(
            events,
            vec![
                WsEvent::Ping(Bytes::from_static(b"p")),
                WsEvent::Binary(Bytes::from_static(b"hello"))
            ]
        );
    }

    #[test]
    fn size_limit_and_lengths() {
        let big = frame(OP_BINARY, &vec![1u8; 70_000], None);
        assert_eq!(big[1], 127);
        let mut d = FrameDecoder::new(Role::Dialer, 65_536);
        assert!(matches!(
            d.decode(&mut BytesMut::from(&big[..])),
            Err(WsError::TooLarge { size: 70_000, .. })
        ));
        let mid = frame(OP_BINARY, &vec![1u8; 300], None);
        assert_eq!(mid[1], 126);
        assert_eq!(decode_all(Role::Dialer, &mid).len(), 1);
        // A truncated frame asks for exactly the missing bytes.
        let mut d = FrameDecoder::new(Role::Dialer, 65_536);
        let mut buf = BytesMut::from(&mid[..100]);
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Err(Need::More(mid.len() - 100))
        );
    }

    fn grid_msg(op: crate::wire::Op, mux: u64, payload_len: usize) -> Vec<u8> {
        let mut m = Message::new(op, mux);
        m.seq = 3;
        m.handler = 78;
        m.payload = Bytes::from(vec![5u8; payload_len]);
        m.to_bytes().unwrap().to_vec()
    }

    /// Feeds `wire` in chunks of `chunk` bytes; returns the events and the largest number of
    /// bytes the buffer ever held.
    fn feed(d: &mut FrameDecoder, wire: &[u8], chunk: usize) -> (Vec<WsEvent>, usize) {
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        let mut peak = 0;
        for c in wire.chunks(chunk) {
            buf.extend_from_slice(c);
            peak = peak.max(buf.len());
            while let Ok(e) = d.decode(&mut buf).unwrap() {
                events.push(e);
            }
        }
        assert!(buf.is_empty());
        (events, peak)
    }

    #[test]
    fn oversized_messages_are_skipped_with_their_header_without_being_buffered() {
        use crate::wire::Op;
        let big = grid_msg(Op::Request, 7, 1 << 20);
        let small = grid_msg(Op::Request, 8, 10);
        for (role, mask) in [(Role::Acceptor, Some([1, 2, 3, 4])), (Role::Dialer, None)] {
            let mut wire = frame(OP_BINARY, &big, mask);
            wire.extend(frame(OP_PING, b"p", mask));
            wire.extend(frame(OP_BINARY, &small, mask));
            let mut d = FrameDecoder::new(role, 2 << 20).skip_oversized(64 << 10);
            let (events, peak) = feed(&mut d, &wire, 4096);
            assert!(peak <= 8192, "buffered {peak} bytes");
            let WsEvent::Oversized { header, size } = &events[0] else {
                panic!("{events:?}");
            };
            assert_eq!(*size, big.len() as u64);
            assert_eq!(
                (header.mux_id, header.seq, header.handler, header.op),
                (7, 3, 78, Op::Request)
            );
            assert_eq!(header.payload_len, 1 << 20);
            assert_eq!(events[1], WsEvent::Ping(Bytes::from_static(b"p")));
            assert_eq!(events[2], WsEvent::Binary(Bytes::from(small.clone())));
            assert_eq!(events.len(), 3);
        }
        // Beyond the hard limit too: skipping has no upper bound.
        let mut d = FrameDecoder::new(Role::Dialer, 128 << 10).skip_oversized(64 << 10);
        let (events, _) = feed(&mut d, &frame(OP_BINARY, &big, None), 65536);
        assert!(
            matches!(events[..], [WsEvent::Oversized { size, .. }] if size == big.len() as u64)
        );
    }

    #[test]
    fn a_skipped_read_never_asks_for_more_than_a_chunk() {
        let big = grid_msg(crate::wire::Op::Response, 1, 10 << 20);
        let f = frame(OP_BINARY, &big, None);
        let mut d = FrameDecoder::new(Role::Dialer, 1 << 20).skip_oversized(1 << 20);
        let mut buf = BytesMut::from(&f[..100]);
        assert_eq!(d.decode(&mut buf).unwrap(), Err(Need::More(SKIP_READ)));
        assert!(buf.is_empty());
    }

    #[test]
    fn fragmented_oversized_messages_are_skipped_across_fragments() {
        use crate::wire::Op;
        let big = grid_msg(Op::MuxClientMsg, 9, 300_000);
        let (a, rest) = big.split_at(20);
        let (b, c) = rest.split_at(100_000);
        let mut wire = frame(OP_BINARY, a, None);
        wire[0] &= 0x7f;
        let mut f = frame(OP_CONT, b, None);
        f[0] &= 0x7f;
        wire.extend(f);
        wire.extend(frame(OP_PONG, b"", None));
        wire.extend(frame(OP_CONT, c, None));
        let mut d = FrameDecoder::new(Role::Dialer, 1 << 20).skip_oversized(64 << 10);
        let (events, peak) = feed(&mut d, &wire, 1000);
        assert!(peak <= 2000, "{peak}");
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0], WsEvent::Pong);
        assert!(matches!(
            &events[1],
            WsEvent::Oversized { header, size } if header.mux_id == 9 && header.op == Op::MuxClientMsg && *size == big.len() as u64
        ));
    }

    #[test]
    fn envelopes_may_use_the_hard_limit_and_are_an_error_beyond_it() {
        use crate::wire::{encode_merged, Op};
        let inner: Vec<Message> = (0..3)
            .map(|i| {
                let mut m = Message::new(Op::Request, i);
                m.payload = Bytes::from(vec![1u8; 40_000]);
                m
            })
            .collect();
        let env = encode_merged(&inner).unwrap().to_vec();
        // Over the skip limit, within the hard limit: delivered whole.
        let mut d = FrameDecoder::new(Role::Dialer, 200_000).skip_oversized(64 << 10);
        let (events, _) = feed(&mut d, &frame(OP_BINARY, &env, None), 4096);
        assert_eq!(events, vec![WsEvent::Binary(Bytes::from(env.clone()))]);
        // Over the hard limit: a protocol error, as before.
        let mut d = FrameDecoder::new(Role::Dialer, 100_000).skip_oversized(64 << 10);
        assert!(matches!(
            d.decode(&mut BytesMut::from(&frame(OP_BINARY, &env, None)[..])),
            Err(WsError::TooLarge { limit: 100_000, .. })
        ));
        // Bytes that are no grid message cannot be answered: an error too.
        let mut d = FrameDecoder::new(Role::Dialer, 1 << 20).skip_oversized(100);
        assert!(matches!(
            d.decode(&mut BytesMut::from(
                &frame(OP_BINARY, &[0xffu8; 200], None)[..]
            )),
            Err(WsError::TooLarge {
                size: 200,
                limit: 100
            })
        ));
        // Without skipping (the handshake), an oversized message is an error.
        let big = grid_msg(Op::Request, 1, 1000);
        let mut d = FrameDecoder::new(Role::Dialer, 500);
        assert!(d
            .decode(&mut BytesMut::from(&frame(OP_BINARY, &big, None)[..]))
            .is_err());
    }

    #[test]
    fn mask_is_an_involution() {
        let mut v: Vec<u8> = (0..=255).collect();
        apply_mask(&mut v[3..], [0xde, 0xad, 0xbe, 0xef]);
        apply_mask(&mut v[3..], [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(v, (0..=255).collect::<Vec<u8>>());
    }
}
#[cfg(test)]
#[path = "ws_diff_tests.rs"]
mod diff_tests;
