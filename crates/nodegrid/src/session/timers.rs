//! The session's timers, in one task off the read and write paths: connection pings and the
//! pong timeout (§4.3), stream pings and liveness (§6.8), and the deadline sweep of single
//! requests.

use crate::session::keepalive;
use crate::session::outq::Outbound;
use crate::session::single;
use crate::session::state::Session;
use crate::session::stream::{callee_ops, caller_ops};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often a session expires single requests with long deadlines. Calls with a deadline of
/// at most [`single::EXACT_DEADLINE_LIMIT`] get an exact timer instead; the others (60 s by default)
/// end within this much of their deadline, without a timer per call.
pub(crate) const DEADLINE_SWEEP: Duration = Duration::from_millis(100);

/// The session's timers, off the write path: connection pings and the pong timeout (§4.3),
/// stream pings and liveness (§6.8), and the deadline sweep of single requests.
pub(crate) async fn housekeeping(sess: Arc<Session>) {
    let cfg = sess.cfg();
    let start = Instant::now();
    let mut next_ping = start + cfg.ping_interval;
    let check = cfg.stream_ping_interval;
    let mut next_stream_check = start + check;
    let mut tick = tokio::time::interval_at(start + DEADLINE_SWEEP, DEADLINE_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            // The session ended, or the manager is shutting down (the token is a child of
            // the shutdown token): end it, which stops the reader and the writer.
            _ = sess.cancel.cancelled() => {
                sess.end("shutting down");
                return;
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        single::expire_singles(&sess);
        if now >= next_ping {
            next_ping = now + cfg.ping_interval;
            let since = sess.since_last_pong();
            if since > cfg.pong_timeout {
                sess.end(&format!("no pong from peer for {since:?}"));
                return;
            }
            sess.out
                .push_urgent(Outbound::Msg(keepalive::conn_ping_msg()))
                .ok();
        }
        if now >= next_stream_check {
            next_stream_check = now + check;
            caller_ops::tick(&sess, now);
            callee_ops::tick(&sess, now);
        }
    }
}
