//! Merged envelopes (op 17, PROTOCOL.md §3.2, §8): several grid messages in one WebSocket
//! message. [`MergedBuilder`] packs messages within a byte budget; [`split_frame`] yields the
//! messages of a received WebSocket message whether or not it is an envelope.

use super::error::{DecodeError, EncodeError};
use super::message::{Limits, Message};
use super::msgpack::{self, Reader};
use super::{Flags, Op};
use bytes::{BufMut, Bytes, BytesMut};

/// The reference writer's merge limit: at most this many pending messages (+1) per envelope.
pub const MERGE_MAX_MESSAGES: usize = 50;
/// The reference writer's merge byte budget: 32 KiB − 1 KiB.
pub const MERGE_MAX_BYTES: usize = 31_744;
/// Largest encoded envelope header: `97 00 <u32> 00 00 11 00 c4 00`.
pub const MERGED_HEADER_MAX_LEN: usize = 13;

/// Writes the envelope header for `count` inner messages.
fn put_header(buf: &mut impl BufMut, count: u32) {
    buf.put_u8(0x97);
    buf.put_u8(0x00); // MuxID
    msgpack::put_uint(buf, count as u64); // Seq = count
    buf.put_slice(&[0x00, 0x00, Op::Merged.as_u8(), Flags::NONE.0, 0xc4, 0x00]);
}

fn header_len(count: u32) -> usize {
    MERGED_HEADER_MAX_LEN - 5 + msgpack::uint_len(count as u64)
}

/// Packs encoded messages into one merged envelope.
///
/// Unlike the reference writer, the builder never exceeds its byte budget, except that the
/// first message is always accepted (a lone message larger than the budget must still go out).
/// Space for the envelope header (and an optional transport header in front of it) is reserved
/// up front, so finishing never moves the body.
#[derive(Debug)]
pub struct MergedBuilder {
    buf: BytesMut,
    headroom: usize,
    count: u32,
    max_messages: usize,
    max_bytes: usize,
}

impl Default for MergedBuilder {
    fn default() -> Self {
        Self::new(MERGE_MAX_MESSAGES + 1, MERGE_MAX_BYTES)
    }
}

impl MergedBuilder {
    /// A builder for at most `max_messages` messages and `max_bytes` bytes of inner items.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self::with_headroom(max_messages, max_bytes, 0)
    }

    /// Like [`MergedBuilder::new`], also reserving `extra` bytes in front of the envelope header
    /// (e.g. for a WebSocket frame header), see [`MergedBuilder::finish_with_headroom`]. The
    /// buffer is allocated on first use.
    pub fn with_headroom(max_messages: usize, max_bytes: usize, extra: usize) -> Self {
        let headroom = extra + MERGED_HEADER_MAX_LEN;
        MergedBuilder {
            buf: BytesMut::new(),
            headroom,
            count: 0,
            max_messages,
            max_bytes,
        }
    }

    /// Number of messages added.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no message was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of inner items so far.
    pub fn body_len(&self) -> usize {
        self.buf.len().saturating_sub(self.headroom)
    }

    /// Whether `msg` would fit without breaking the count or byte budget.
    pub fn fits(&self, msg: &Message) -> bool {
        if self.count == 0 {
            return true;
        }
        let len = msg.encoded_len();
        self.len() < self.max_messages
            && self.body_len() + msgpack::bin_header_len(len) + len <= self.max_bytes
    }

    /// Adds `msg` if it fits; returns whether it was added.
    pub fn try_push(&mut self, msg: &Message) -> Result<bool, EncodeError> {
        if !self.fits(msg) {
            return Ok(false);
        }
        let len = msg.encoded_len();
        if len > u32::MAX as usize {
            return Err(EncodeError::PayloadTooLarge(msg.payload.len()));
        }
        self.ensure_init();
        msgpack::put_bin_header(&mut self.buf, len);
        msg.encode(&mut self.buf)?;
        self.count += 1;
        Ok(true)
    }

    /// Finishes the envelope. Returns the buffer and the offset at which the envelope starts;
    /// the `offset` bytes before it are free for a transport header. The builder is reset; hand
    /// the buffer back with [`MergedBuilder::recycle`] to reuse its allocation.
    pub fn finish_with_headroom(&mut self) -> (BytesMut, usize) {
        self.ensure_init();
        let hl = header_len(self.count);
        let start = self.headroom - hl;
        let mut header = &mut self.buf[start..self.headroom];
        put_header(&mut header, self.count);
        self.count = 0;
        (std::mem::take(&mut self.buf), start)
    }

    /// Gives back a buffer returned by [`MergedBuilder::finish_with_headroom`] for reuse.
    pub fn recycle(&mut self, mut buf: BytesMut) {
        if self.count == 0 && self.buf.capacity() == 0 {
            buf.clear();
            self.buf = buf;
        }
    }

    /// Makes sure the buffer holds the reserved headroom (after a finish without recycle).
    fn ensure_init(&mut self) {
        if self.buf.len() < self.headroom {
            // Start small and let the buffer grow with use (it is reused across envelopes), so
            // idle connections stay cheap.
            self.buf
                .reserve(self.headroom + self.max_bytes.min(16 << 10));
            self.buf.resize(self.headroom, 0);
        }
    }

    /// Finishes the envelope and returns its bytes. The builder is reset.
    pub fn finish(&mut self) -> Bytes {
        let (mut buf, start) = self.finish_with_headroom();
        buf.split_off(start).freeze()
    }
}

/// Encodes `msgs` as one merged envelope (no budget).
pub fn encode_merged(msgs: &[Message]) -> Result<Bytes, EncodeError> {
    let body: usize = msgs
        .iter()
        .map(|m| {
            let l = m.encoded_len();
            msgpack::bin_header_len(l) + l
        })
        .sum();
    let mut b = MergedBuilder {
        buf: BytesMut::with_capacity(MERGED_HEADER_MAX_LEN + body),
        headroom: MERGED_HEADER_MAX_LEN,
        count: 0,
        max_messages: usize::MAX,
        max_bytes: usize::MAX,
    };
    b.buf.resize(MERGED_HEADER_MAX_LEN, 0);
    for m in msgs {
        b.try_push(m)?;
    }
    Ok(b.finish())
}

/// The messages carried by one received WebSocket message.
///
/// Created by [`split_frame`]; yields the single message, or each inner message of a merged
/// envelope in order. An inner envelope is yielded as is (op [`Op::Merged`]); the session treats
/// it as an unknown op. After the first error the iterator ends.
#[derive(Debug)]
pub struct FrameMessages {
    state: State,
    limits: Limits,
}

#[derive(Debug)]
enum State {
    Single(Option<Message>),
    Merged {
        buf: Bytes,
        pos: usize,
        end: usize,
        announced: u32,
        yielded: u32,
    },
    Done,
}

impl FrameMessages {
    /// Number of messages announced (1 for a plain message, N for an envelope).
    pub fn announced(&self) -> u32 {
        match &self.state {
            State::Single(_) => 1,
            State::Merged { announced, .. } => *announced,
            State::Done => 0,
        }
    }

    /// Whether the frame was a merged envelope.
    pub fn is_merged(&self) -> bool {
        matches!(self.state, State::Merged { .. })
    }
}

/// Splits a received WebSocket message into its grid messages.
///
/// Decoding the outer message happens here (so its errors are returned at once); inner messages
/// are decoded lazily by the iterator. Every payload is a slice of `buf`.
pub fn split_frame(buf: Bytes, limits: &Limits) -> Result<FrameMessages, DecodeError> {
    let (msg, body) = Message::decode_parts(&buf, limits)?;
    let state = if msg.op == Op::Merged {
        State::Merged {
            buf,
            pos: body.start,
            end: body.end,
            announced: msg.seq,
            yielded: 0,
        }
    } else {
        State::Single(Some(msg))
    };
    Ok(FrameMessages {
        state,
        limits: *limits,
    })
}

impl Iterator for FrameMessages {
    type Item = Result<Message, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.state {
            State::Single(m) => {
                let m = m.take();
                self.state = State::Done;
                m.map(Ok)
            }
            State::Merged {
                buf,
                pos,
                end,
                announced,
                yielded,
            } => {
                if *yielded == *announced {
                    self.state = State::Done;
                    return None;
                }
                let mut r = Reader::new(&buf[*pos..*end]);
                let res = r.bin_range("merged item").and_then(|range| {
                    let inner = buf.slice(*pos + range.start..*pos + range.end);
                    Message::decode_with(&inner, &self.limits).map(|m| (m, r.pos()))
                });
                match res {
                    Ok((m, used)) => {
                        *pos += used;
                        *yielded += 1;
                        Some(Ok(m))
                    }
                    Err(e) => {
                        let e = match e {
                            DecodeError::Truncated { .. } if *pos >= *end => {
                                DecodeError::MergedTruncated {
                                    announced: *announced,
                                    found: *yielded,
                                }
                            }
                            e => e,
                        };
                        self.state = State::Done;
                        Some(Err(e))
                    }
                }
            }
            State::Done => None,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.state {
            State::Single(Some(_)) => (1, Some(1)),
            State::Merged {
                announced, yielded, ..
            } => (0, Some((*announced - *yielded) as usize)),
            _ => (0, Some(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(mux: u64, p: &'static [u8]) -> Message {
        let mut m = Message::new(Op::Request, mux);
        m.deadline_ms = 60000;
        m.handler = 78;
        m.flags = Flags::CRC | Flags::EOF;
        m.payload = Bytes::from_static(p);
        m
    }

    #[test]
    fn spec_example_two_requests() {
        let want = "97000200001100c400c410970300cdea604e0e03c40161ea40d2f2c410970400cdea604e0e03c4016246d960f4";
        let b = encode_merged(&[req(3, b"a"), req(4, b"b")]).unwrap();
        assert_eq!(hex::encode(&b), want);
        let msgs: Vec<Message> = split_frame(b, &Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(msgs, vec![req(3, b"a"), req(4, b"b")]);
    }

    #[test]
    fn budget_is_never_exceeded_but_first_always_fits() {
        let mut b = MergedBuilder::new(10, 40);
        let big = req(1, b"0123456789012345678901234567890123456789");
        assert!(b.try_push(&big).unwrap());
        assert!(!b.try_push(&req(2, b"x")).unwrap());
        let mut b = MergedBuilder::new(2, 1000);
        assert!(b.try_push(&req(1, b"x")).unwrap());
        assert!(b.try_push(&req(2, b"x")).unwrap());
        assert!(!b.try_push(&req(3, b"x")).unwrap());
        assert_eq!(b.len(), 2);
        let env = b.finish();
        assert!(b.is_empty());
        assert_eq!(split_frame(env, &Limits::default()).unwrap().count(), 2);
    }

    #[test]
    fn truncated_envelope_is_an_error() {
        let b = encode_merged(&[req(3, b"a"), req(4, b"b")]).unwrap();
        let cut = b.slice(..b.len() - 18);
        let res: Result<Vec<_>, _> = split_frame(cut, &Limits::default()).unwrap().collect();
        assert_eq!(
            res,
            Err(DecodeError::MergedTruncated {
                announced: 2,
                found: 1
            })
        );
    }

    #[test]
    fn header_forms() {
        for n in [0u32, 1, 127, 128, 300, 70000] {
            let mut v = Vec::new();
            put_header(&mut v, n);
            assert_eq!(v.len(), header_len(n));
            let m = Message::decode(&Bytes::from(v)).unwrap();
            assert_eq!((m.op, m.seq), (Op::Merged, n));
        }
    }
}
