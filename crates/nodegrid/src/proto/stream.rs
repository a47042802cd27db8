//! Stream state machines (PROTOCOL.md §6), with no I/O and no locking: the caller's side
//! ([`CallerState`]) and the callee's side ([`CalleeState`]). They check sequence numbers,
//! count credits and build the messages to send; the async layer (`crate::stream`) owns them
//! behind a lock, queues what they return, and wakes waiters.
//!
//! Sequence numbers (§6.3): each direction counts every numbered message it sends, control
//! messages included. Caller → callee: ConnectMux (0), MuxClientMsg, UnblockSrvMux, Ping, and
//! a cancelling DisconnectServerMux. Callee → caller: AckMux (0), UnblockClMux, MuxServerMsg.

use crate::error::Error;
use crate::wire::{Flags, HandlerId, Message, MuxId, Op, SubrouteId};
use bytes::Bytes;
use std::collections::VecDeque;
use tokio::time::Instant;

/// The callee's text for a sequence mismatch (§6.3).
pub(crate) fn seq_mismatch(want: u32, got: u32) -> String {
    format!("receive sequence number mismatch. want {want}, got {got}")
}

fn numbered(op: Op, mux_id: MuxId, seq: &mut u32, flags: Flags) -> Message {
    let mut m = Message::new(op, mux_id);
    m.seq = *seq;
    *seq = seq.wrapping_add(1);
    m.flags = flags;
    m
}

/// How a caller's stream ended (as seen by the consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallerEnd {
    /// Clean end of output.
    Eof,
    /// Failed.
    Failed(Error),
}

/// The caller's side of one stream.
#[derive(Debug)]
pub(crate) struct CallerState {
    pub mux_id: MuxId,
    base: Flags,
    send_seq: u32,
    recv_seq: u32,
    acked: bool,
    /// Input credits available.
    pub credits: u32,
    pub in_capacity: u32,
    pub out_capacity: usize,
    /// Output items received and not yet consumed (at most `out_capacity`).
    pub buf: VecDeque<Bytes>,
    /// Input EOF sent (or the stream takes no input).
    pub input_closed: bool,
    /// Set when the stream has ended; buffered items are still delivered before an EOF.
    pub end: Option<CallerEnd>,
    /// Messages received for this stream (output, ack, unblock, pong); the session's ticker
    /// turns progress of this count into liveness (§6.8) without reading the clock per message.
    pub recv_count: u64,
    /// `recv_count` at the last liveness check, and when it last changed.
    pub progress: (u64, Instant),
    /// Largest number of buffered items ever held (for tests of the memory bound).
    pub max_buffered: usize,
}

impl CallerState {
    pub(crate) fn new(
        mux_id: MuxId,
        base: Flags,
        in_capacity: u32,
        out_capacity: usize,
        now: Instant,
    ) -> Self {
        CallerState {
            mux_id,
            base,
            send_seq: 0,
            recv_seq: 0,
            acked: false,
            credits: 0,
            in_capacity,
            out_capacity: out_capacity.max(1),
            buf: VecDeque::new(),
            input_closed: in_capacity == 0,
            end: None,
            recv_count: 0,
            progress: (0, now),
            max_buffered: 0,
        }
    }

    /// The ConnectMux that opens the stream (seq 0; EOF when the stream takes no input).
    pub(crate) fn connect_msg(
        &mut self,
        handler: HandlerId,
        deadline_ms: u32,
        payload: Option<Bytes>,
        subroute: Option<SubrouteId>,
    ) -> Message {
        let mut flags = self.base;
        if self.in_capacity == 0 {
            flags |= Flags::EOF;
        }
        let mut m = numbered(Op::ConnectMux, self.mux_id, &mut self.send_seq, flags);
        m.handler = handler;
        m.deadline_ms = deadline_ms;
        m.set_payload(payload);
        m.subroute = subroute;
        m
    }

    fn check_seq(&mut self, m: &Message) -> Result<(), Error> {
        if m.seq != self.recv_seq {
            return Err(Error::OutOfSequence);
        }
        self.recv_seq = self.recv_seq.wrapping_add(1);
        Ok(())
    }

    pub(crate) fn on_ack(&mut self, m: &Message) -> Result<(), Error> {
        self.check_seq(m)?;
        self.recv_count += 1;
        if !self.acked {
            self.acked = true;
            self.credits = self.credits.saturating_add(self.in_capacity);
        }
        Ok(())
    }

    pub(crate) fn on_unblock(&mut self, m: &Message) -> Result<(), Error> {
        self.check_seq(m)?;
        self.recv_count += 1;
        if self.credits >= self.in_capacity {
            return Err(Error::Protocol(format!(
                "input credit overflow: peer granted more than the capacity of {}",
                self.in_capacity
            )));
        }
        self.credits += 1;
        Ok(())
    }

    /// An output item, EOF or error from the callee. The item's payload is moved out of `m`
    /// (no reference-count traffic on the shared read buffer).
    pub(crate) fn on_server_msg(&mut self, m: &mut Message) -> Result<(), Error> {
        let is_err = m.flags.contains(Flags::ERR);
        let is_eof = m.flags.contains(Flags::EOF);
        let payload = m.payload_opt();
        if is_eof && !is_err && payload.is_none() {
            // A pure EOF is not sequence-checked (§6.3).
            self.recv_count += 1;
            self.end.get_or_insert(CallerEnd::Eof);
            return Ok(());
        }
        self.check_seq(m)?;
        self.recv_count += 1;
        if is_err {
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            self.end
                .get_or_insert(CallerEnd::Failed(Error::from_remote_text(text)));
            return Ok(());
        }
        if self.buf.len() >= self.out_capacity {
            return Err(Error::Protocol(format!(
                "output buffer overflow: peer sent more than the capacity of {} (INTERNAL ERROR: Response was blocked)",
                self.out_capacity
            )));
        }
        let item = if payload.is_some() {
            std::mem::take(&mut m.payload)
        } else {
            Bytes::new()
        };
        self.buf.push_back(item);
        self.max_buffered = self.max_buffered.max(self.buf.len());
        if is_eof {
            self.end.get_or_insert(CallerEnd::Eof);
        }
        Ok(())
    }

    /// Takes the next buffered item and the UnblockSrvMux that returns its credit.
    pub(crate) fn pop_item(&mut self) -> Option<(Bytes, Message)> {
        let item = self.buf.pop_front()?;
        let unblock = numbered(
            Op::UnblockSrvMux,
            self.mux_id,
            &mut self.send_seq,
            self.base,
        );
        Some((item, unblock))
    }

    /// The MuxClientMsg for an input item, or `Ok(None)` if no credit is available yet.
    pub(crate) fn input_msg(&mut self, payload: &Bytes) -> Result<Option<Message>, Error> {
        if self.in_capacity == 0 {
            return Err(Error::NoInput);
        }
        if self.input_closed {
            return Err(Error::InputClosed);
        }
        if self.credits == 0 {
            return Ok(None);
        }
        self.credits -= 1;
        let mut m = numbered(Op::MuxClientMsg, self.mux_id, &mut self.send_seq, self.base);
        m.set_payload(Some(payload.clone()));
        Ok(Some(m))
    }

    /// The input EOF (needs no credit), unless input is already closed.
    pub(crate) fn eof_msg(&mut self) -> Option<Message> {
        if self.input_closed {
            return None;
        }
        self.input_closed = true;
        Some(numbered(
            Op::MuxClientMsg,
            self.mux_id,
            &mut self.send_seq,
            self.base | Flags::EOF,
        ))
    }

    /// Liveness check at `now`: whether nothing arrived for longer than `idle`.
    pub(crate) fn is_idle(&mut self, now: Instant, idle: std::time::Duration) -> bool {
        if self.recv_count != self.progress.0 {
            self.progress = (self.recv_count, now);
            return false;
        }
        now.duration_since(self.progress.1) > idle
    }

    /// A stream ping (no payload).
    pub(crate) fn ping_msg(&mut self) -> Message {
        numbered(Op::Ping, self.mux_id, &mut self.send_seq, self.base)
    }

    /// The DisconnectServerMux that cancels the stream.
    pub(crate) fn cancel_msg(&mut self) -> Message {
        numbered(
            Op::DisconnectServerMux,
            self.mux_id,
            &mut self.send_seq,
            self.base,
        )
    }
}

/// The callee's side of one stream.
#[derive(Debug)]
pub(crate) struct CalleeState {
    pub mux_id: MuxId,
    base: Flags,
    recv_seq: u32,
    send_seq: u32,
    /// Output tokens available.
    pub tokens: u32,
    pub out_capacity: u32,
    pub in_capacity: usize,
    /// Input items received and not yet handed to the handler (at most `in_capacity`).
    pub inbox: VecDeque<Bytes>,
    /// Input EOF received (or the stream takes no input).
    pub input_closed: bool,
    /// Last ping from the caller (or creation), for the callee liveness check (§6.8).
    pub last_ping: Instant,
    /// Largest number of buffered input items ever held.
    pub max_buffered: usize,
    /// Payload bytes received (input items).
    pub bytes_in: u64,
    /// Payload bytes sent (output items).
    pub bytes_out: u64,
    /// When the first output item was sent.
    pub first_output: Option<Instant>,
}

impl CalleeState {
    /// State for a ConnectMux with sequence `connect_seq`.
    pub(crate) fn new(
        mux_id: MuxId,
        base: Flags,
        connect_seq: u32,
        in_capacity: usize,
        out_capacity: u32,
        input_eof: bool,
        now: Instant,
    ) -> Self {
        let out_capacity = out_capacity.max(1);
        CalleeState {
            mux_id,
            base,
            recv_seq: connect_seq.wrapping_add(1),
            send_seq: connect_seq,
            tokens: out_capacity,
            out_capacity,
            in_capacity,
            inbox: VecDeque::new(),
            input_closed: input_eof || in_capacity == 0,
            last_ping: now,
            max_buffered: 0,
            bytes_in: 0,
            bytes_out: 0,
            first_output: None,
        }
    }

    /// The AckMux, queued before anything else for this stream.
    pub(crate) fn ack_msg(&mut self) -> Message {
        numbered(Op::AckMux, self.mux_id, &mut self.send_seq, self.base)
    }

    fn check_seq(&mut self, m: &Message) -> Result<(), String> {
        if m.seq != self.recv_seq {
            return Err(seq_mismatch(self.recv_seq, m.seq));
        }
        self.recv_seq = self.recv_seq.wrapping_add(1);
        Ok(())
    }

    /// An input item or input EOF. `Err` carries the remote error text to end the stream with.
    /// An input item or EOF from the caller; the item's payload is moved out of `m`.
    pub(crate) fn on_client_msg(&mut self, m: &mut Message) -> Result<(), String> {
        // The sequence is checked before the capacity (§11 item 20).
        self.check_seq(m)?;
        if m.flags.contains(Flags::EOF) {
            // An EOF with a payload is accepted; the payload is discarded (§6.4).
            self.input_closed = true;
            return Ok(());
        }
        if self.input_closed {
            return Err("did not expect inbound message".to_string());
        }
        if self.inbox.len() >= self.in_capacity {
            return Err("handler blocked".to_string());
        }
        let item = if m.payload_opt().is_some() {
            std::mem::take(&mut m.payload)
        } else {
            Bytes::new()
        };
        self.bytes_in += item.len() as u64;
        self.inbox.push_back(item);
        self.max_buffered = self.max_buffered.max(self.inbox.len());
        Ok(())
    }

    /// Takes the next input item and the UnblockClMux that returns its credit.
    pub(crate) fn pop_input(&mut self) -> Option<(Bytes, Message)> {
        let item = self.inbox.pop_front()?;
        let unblock = numbered(Op::UnblockClMux, self.mux_id, &mut self.send_seq, self.base);
        Some((item, unblock))
    }

    /// One more output token. Exceeding the capacity is a protocol error that ends the stream.
    pub(crate) fn on_unblock(&mut self, m: &Message) -> Result<(), String> {
        self.check_seq(m)?;
        if self.tokens >= self.out_capacity {
            return Err(format!(
                "output credit overflow: caller granted more than the capacity of {}",
                self.out_capacity
            ));
        }
        self.tokens += 1;
        Ok(())
    }

    pub(crate) fn on_ping(&mut self, m: &Message, now: Instant) -> Result<(), String> {
        self.check_seq(m)?;
        self.last_ping = now;
        Ok(())
    }

    /// The MuxServerMsg for an output item, or `None` without a token.
    pub(crate) fn output_msg(&mut self, payload: &Bytes) -> Option<Message> {
        if self.tokens == 0 {
            return None;
        }
        self.tokens -= 1;
        self.bytes_out += payload.len() as u64;
        self.first_output.get_or_insert_with(Instant::now);
        let mut m = numbered(Op::MuxServerMsg, self.mux_id, &mut self.send_seq, self.base);
        m.set_payload(Some(payload.clone()));
        Some(m)
    }

    /// The final message: EOF, or ERR|EOF with the handler's error text. Consumes a token if
    /// one is available (the caller waits for one first, as the reference does).
    pub(crate) fn final_msg(&mut self, result: Result<(), String>) -> Message {
        self.tokens = self.tokens.saturating_sub(1);
        match result {
            Ok(()) => numbered(
                Op::MuxServerMsg,
                self.mux_id,
                &mut self.send_seq,
                self.base | Flags::EOF,
            ),
            Err(text) => self.error_msg(text),
        }
    }

    /// An ERR|EOF MuxServerMsg that bypasses tokens (protocol errors).
    pub(crate) fn error_msg(&mut self, text: String) -> Message {
        let mut m = numbered(
            Op::MuxServerMsg,
            self.mux_id,
            &mut self.send_seq,
            self.base | Flags::EOF | Flags::ERR,
        );
        m.payload = Bytes::from(text);
        m
    }
}

/// The DisconnectClientMux a callee sends when it forgets a stream (seq 0, §6.3).
pub(crate) fn disconnect_client(mux_id: MuxId, base: Flags) -> Message {
    let mut m = Message::new(Op::DisconnectClientMux, mux_id);
    m.flags = base;
    m
}

/// The DisconnectServerMux a caller sends for a stream it no longer knows (seq 0).
pub(crate) fn disconnect_server(mux_id: MuxId, base: Flags) -> Message {
    let mut m = Message::new(Op::DisconnectServerMux, mux_id);
    m.flags = base;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a caller and a callee against each other in memory, like two nodes would.
    struct Pair {
        c: CallerState,
        s: CalleeState,
    }

    fn pair(in_cap: u32, out_cap: u32) -> (Pair, Message) {
        let now = Instant::now();
        let mut c = CallerState::new(7, Flags::CRC, in_cap, out_cap as usize, now);
        let connect = c.connect_msg(78, 0, Some(Bytes::from_static(b"init")), None);
        let s = CalleeState::new(
            7,
            Flags::CRC,
            connect.seq,
            in_cap as usize,
            out_cap,
            connect.flags.contains(Flags::EOF),
            now,
        );
        (Pair { c, s }, connect)
    }

    #[test]
    fn captured_two_way_exchange_sequence_numbers() {
        // §6.9: InCapacity = OutCapacity = 1 on both sides.
        let (mut p, connect) = pair(1, 1);
        assert_eq!(
            (connect.op, connect.seq, connect.flags),
            (Op::ConnectMux, 0, Flags::CRC)
        );
        let ack = p.s.ack_msg();
        assert_eq!((ack.op, ack.seq), (Op::AckMux, 0));
        p.c.on_ack(&ack).unwrap();
        assert_eq!(p.c.credits, 1);
        let mut a = p.c.input_msg(&Bytes::from_static(b"a")).unwrap().unwrap();
        assert_eq!(a.seq, 1);
        assert_eq!(
            p.c.input_msg(&Bytes::from_static(b"b")).unwrap(),
            None,
            "no credit left"
        );
        p.s.on_client_msg(&mut a).unwrap();
        let (item, unblock) = p.s.pop_input().unwrap();
        assert_eq!(
            (&item[..], unblock.op, unblock.seq),
            (&b"a"[..], Op::UnblockClMux, 1)
        );
        let mut out = p.s.output_msg(&Bytes::from_static(b"r:a")).unwrap();
        assert_eq!(out.seq, 2);
        assert!(
            p.s.output_msg(&Bytes::from_static(b"x")).is_none(),
            "no token left"
        );
        p.c.on_unblock(&unblock).unwrap();
        p.c.on_server_msg(&mut out).unwrap();
        let (r, ub) = p.c.pop_item().unwrap();
        assert_eq!((&r[..], ub.op, ub.seq), (&b"r:a"[..], Op::UnblockSrvMux, 2));
        let mut b = p.c.input_msg(&Bytes::from_static(b"b")).unwrap().unwrap();
        let mut eof = p.c.eof_msg().unwrap();
        assert_eq!((b.seq, eof.seq, eof.flags), (3, 4, Flags::CRC | Flags::EOF));
        assert!(p.c.eof_msg().is_none());
        p.s.on_unblock(&ub).unwrap();
        p.s.on_client_msg(&mut b).unwrap();
        p.s.on_client_msg(&mut eof).unwrap();
        let (_, ub2) = p.s.pop_input().unwrap();
        assert_eq!(ub2.seq, 3);
        assert!(p.s.input_closed);
        assert_eq!(p.s.bytes_in, 2, "input payload bytes are counted");
        assert!(
            b.payload.is_empty(),
            "the item's payload was moved, not cloned"
        );
        let mut fin = p.s.final_msg(Ok(()));
        assert_eq!((fin.seq, fin.flags), (4, Flags::CRC | Flags::EOF));
        p.c.on_unblock(&ub2).unwrap();
        p.c.on_server_msg(&mut fin).unwrap();
        assert_eq!(p.c.end, Some(CallerEnd::Eof));
    }

    #[test]
    fn callee_rejections() {
        let (mut p, _) = pair(1, 1);
        let _ = p.s.ack_msg();
        p.c.on_ack(&Message {
            seq: 0,
            ..Message::new(Op::AckMux, 7)
        })
        .unwrap();
        let mut a = p.c.input_msg(&Bytes::from_static(b"a")).unwrap().unwrap();
        a.seq = 5;
        assert_eq!(
            p.s.on_client_msg(&mut a).unwrap_err(),
            "receive sequence number mismatch. want 1, got 5"
        );
        // Inbox full: capacity 1, second item without a pop.
        let (mut p, _) = pair(1, 1);
        let mut m = Message::new(Op::MuxClientMsg, 7);
        m.seq = 1;
        p.s.on_client_msg(&mut m).unwrap();
        m.seq = 2;
        assert_eq!(p.s.on_client_msg(&mut m).unwrap_err(), "handler blocked");
        // No input expected.
        let (mut p, connect) = pair(0, 1);
        assert!(connect.flags.contains(Flags::EOF));
        let mut m = Message::new(Op::MuxClientMsg, 7);
        m.seq = 1;
        assert_eq!(
            p.s.on_client_msg(&mut m).unwrap_err(),
            "did not expect inbound message"
        );
        // Credit overflow on the callee is an error.
        let (mut p, _) = pair(1, 2);
        let mut u = Message::new(Op::UnblockSrvMux, 7);
        u.seq = 1;
        assert!(p.s.on_unblock(&u).unwrap_err().contains("credit overflow"));
    }

    #[test]
    fn caller_checks() {
        let (mut p, _) = pair(1, 1);
        let mut ack = p.s.ack_msg();
        ack.seq = 3;
        assert_eq!(p.c.on_ack(&ack), Err(Error::OutOfSequence));
        // Pure EOF is not sequence checked; buffered items stay deliverable.
        let (mut p, _) = pair(0, 2);
        let ack = p.s.ack_msg();
        p.c.on_ack(&ack).unwrap();
        let mut o1 = p.s.output_msg(&Bytes::from_static(b"1")).unwrap();
        p.c.on_server_msg(&mut o1).unwrap();
        let mut eof = Message::new(Op::MuxServerMsg, 7);
        eof.flags = Flags::EOF;
        eof.seq = 99;
        p.c.on_server_msg(&mut eof).unwrap();
        assert_eq!(p.c.end, Some(CallerEnd::Eof));
        assert_eq!(p.c.buf.len(), 1);
        // Buffer overflow beyond out capacity.
        let (mut p, _) = pair(0, 1);
        let ack = p.s.ack_msg();
        p.c.on_ack(&ack).unwrap();
        let mut m = Message::new(Op::MuxServerMsg, 7);
        m.seq = 1;
        m.set_payload(Some(Bytes::from_static(b"x")));
        p.c.on_server_msg(&mut m).unwrap();
        m.seq = 2;
        assert!(matches!(p.c.on_server_msg(&mut m), Err(Error::Protocol(_))));
        // Error message.
        let (mut p, _) = pair(0, 1);
        let ack = p.s.ack_msg();
        p.c.on_ack(&ack).unwrap();
        let mut e = p.s.final_msg(Err("boom".into()));
        p.c.on_server_msg(&mut e).unwrap();
        assert_eq!(
            p.c.end,
            Some(CallerEnd::Failed(Error::Remote(crate::error::RemoteError(
                "boom".into()
            ))))
        );
        // Input on a stream without input.
        assert_eq!(p.c.input_msg(&Bytes::new()), Err(Error::NoInput));
    }

    #[test]
    fn one_way_memory_bound_with_paused_consumer() {
        // A producer that always sends when it holds a token never makes the caller buffer
        // more than the capacity.
        let (mut p, _) = pair(0, 4);
        let ack = p.s.ack_msg();
        p.c.on_ack(&ack).unwrap();
        let mut sent = 0;
        let mut delivered = 0;
        for round in 0..1000 {
            // At most the capacity per round (bounded, so a token leak fails instead of
            // looping).
            for _ in 0..=4 {
                let Some(mut m) = p.s.output_msg(&Bytes::from_static(b"x")) else {
                    break;
                };
                p.c.on_server_msg(&mut m).unwrap();
                sent += 1;
            }
            // The consumer takes one item every third round.
            if round % 3 == 0 {
                if let Some((_, ub)) = p.c.pop_item() {
                    p.s.on_unblock(&ub).unwrap();
                    delivered += 1;
                }
            }
            assert!(p.c.buf.len() <= 4);
        }
        assert_eq!(p.c.max_buffered, 4);
        assert_eq!(sent, delivered + p.c.buf.len());
    }

    #[test]
    fn every_message_from_the_callee_counts_as_progress() {
        // The caller's liveness (§6.8) counts the ack, credits, items, errors and a pure EOF.
        let (mut p, _) = pair(1, 2);
        assert_eq!(p.c.recv_count, 0);
        p.c.on_ack(&p.s.ack_msg()).unwrap();
        assert_eq!(p.c.recv_count, 1);
        let mut input = p.c.input_msg(&Bytes::from_static(b"in")).unwrap().unwrap();
        p.s.on_client_msg(&mut input).unwrap();
        let (_, unblock) = p.s.pop_input().unwrap();
        p.c.on_unblock(&unblock).unwrap();
        assert_eq!(p.c.recv_count, 2);
        let mut item = p.s.output_msg(&Bytes::from_static(b"out")).unwrap();
        p.c.on_server_msg(&mut item).unwrap();
        assert_eq!(p.c.recv_count, 3);
        let mut eof = Message::new(Op::MuxServerMsg, 7);
        eof.flags = Flags::EOF;
        p.c.on_server_msg(&mut eof).unwrap();
        assert_eq!(p.c.recv_count, 4);
        let (mut p2, _) = pair(0, 1);
        p2.c.on_ack(&p2.s.ack_msg()).unwrap();
        let mut err = p2.s.final_msg(Err("boom".into()));
        p2.c.on_server_msg(&mut err).unwrap();
        assert_eq!(p2.c.recv_count, 2);
    }

    #[test]
    fn caller_idle_only_after_the_full_limit_without_progress() {
        let t0 = Instant::now();
        let idle = std::time::Duration::from_secs(30);
        let mut c = CallerState::new(1, Flags::NONE, 0, 1, t0);
        // Nothing received: idle strictly after the limit, measured from creation.
        assert!(!c.is_idle(t0 + idle, idle));
        assert!(c.is_idle(t0 + idle + std::time::Duration::from_nanos(1), idle));
        assert!(c.is_idle(t0 + 2 * idle, idle));
        // Progress restarts the clock at the check that sees it.
        c.recv_count += 1;
        let t1 = t0 + 3 * idle;
        assert!(!c.is_idle(t1, idle));
        assert!(!c.is_idle(t1 + idle, idle));
        assert!(c.is_idle(t1 + 2 * idle, idle));
    }

    #[test]
    fn callee_tokens_and_output_bytes() {
        let (mut p, _) = pair(0, 3);
        p.c.on_ack(&p.s.ack_msg()).unwrap();
        assert_eq!(p.s.tokens, 3);
        // Bounded: a token count that never drops must fail here, not loop.
        let mut sent: Vec<Message> = (0..10)
            .map_while(|_| p.s.output_msg(&Bytes::from_static(b"12345")))
            .collect();
        assert_eq!((sent.len(), p.s.tokens, p.s.bytes_out), (3, 0, 15));
        for m in &mut sent {
            p.c.on_server_msg(m).unwrap();
        }
        // Each credit returned is one more token, up to the capacity.
        for want in 1..=3 {
            let (_, ub) = p.c.pop_item().unwrap();
            p.s.on_unblock(&ub).unwrap();
            assert_eq!(p.s.tokens, want);
        }
        let mut extra = Message::new(Op::UnblockSrvMux, 7);
        extra.seq = 4;
        assert!(p.s.on_unblock(&extra).is_err(), "beyond the capacity");
    }
}
