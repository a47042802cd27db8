//! Connection keepalive (PROTOCOL.md §4.3): answering the peer's connection pings, recording
//! its pongs (the round-trip time), and the ping this side sends. The interval and the pong
//! timeout are checked by the session's timers (`timers.rs`).

use crate::session::outq::Outbound;
use crate::session::state::Session;
use crate::wire::{GridTime, Message, Op, PingPayload, PongPayload};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Answers a connection-level ping (mux 0) with a pong, ahead of queued data.
pub(crate) fn conn_ping(sess: &Arc<Session>, m: Message) {
    // Pings without (or with an undecodable) payload are answered with the zero time (§4.3).
    let t = PingPayload::decode(&m.payload)
        .map(|p| p.t)
        .unwrap_or(GridTime::ZERO);
    let payload = PongPayload {
        not_found: false,
        err: None,
        t,
    }
    .encode();
    let pong = sess.echo(&m, Op::Pong, payload);
    // Ahead of queued data: the peer's liveness check waits for it (§12 item 10).
    let _ = sess.out.push_urgent(Outbound::Msg(pong));
}

/// Records a connection-level pong: the session is alive, and the round-trip time.
pub(crate) fn conn_pong(sess: &Arc<Session>, m: Message) {
    sess.last_pong_ns
        .store(sess.started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let c = sess.counters();
    c.last_pong_unix_ms.store(
        (GridTime::now().unix_nanos() / 1_000_000) as u64,
        Ordering::Relaxed,
    );
    if let Ok(p) = PongPayload::decode(&m.payload) {
        if !p.t.is_zero() {
            let rtt = GridTime::now().nanos_since(&p.t);
            if rtt >= 0 {
                c.record_rtt(rtt as u64);
            }
        }
    }
}

/// The connection-level ping this side sends (§4.3).
pub(crate) fn conn_ping_msg() -> Message {
    let mut p = Message::new(Op::Ping, 0);
    p.deadline_ms = 10_000;
    p.payload = PingPayload { t: GridTime::now() }.encode();
    p
}
