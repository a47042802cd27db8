//! The session's writer task: drains the outbound queue, liveness items first, merges small
//! messages into one WebSocket message where that pays (§8), frames and writes them. A write
//! that makes no progress for `write_timeout` ends the session.

use crate::session::outq::{Outbound, Queued, Written};
use crate::session::state::Session;
use crate::stats::ConnCounters;
use crate::transport::ws::{self, Role};
use crate::transport::BoxWrite;
use crate::wire::{MergedBuilder, Message};
use bytes::BytesMut;
use futures::FutureExt;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A write buffer that grew beyond this is released after use (§8 "Buffers").
const MAX_KEPT_WRITE_BUF: usize = 256 * 1024;
/// Written bytes are reported to the queue (which wakes waiting senders and a paused reader)
/// when the writer next takes the queue's lock anyway (to wait for items or take them), or
/// sooner once this much has been written: no extra lock in the usual case, and a large batch
/// still frees its room as it goes.
const RELEASE_STEP: usize = 64 * 1024;

/// Writes until the queue closes or a write fails, then ends the session.
pub(crate) async fn writer_task(sess: Arc<Session>, mut w: BoxWrite) {
    let reason = match writer_loop(&sess, &mut w).await {
        Ok(()) => "session closed".to_string(),
        Err(e) => e,
    };
    sess.end(&reason);
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
}

/// Runs `f` for at most `limit`; `None` if it did not finish. A future that is ready at once
/// (a socket with room, the usual case) costs no timer.
async fn bounded<F: Future>(limit: Duration, f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    if let Some(r) = f.as_mut().now_or_never() {
        return Some(r);
    }
    tokio::time::timeout(limit, f).await.ok()
}

struct FrameWriter {
    role: Role,
    single: BytesMut,
    merged: MergedBuilder,
    write_timeout: Duration,
    mask_state: u64,
}

impl FrameWriter {
    fn mask(&mut self) -> Option<[u8; 4]> {
        if self.role != Role::Dialer {
            return None;
        }
        // xorshift64*: mask keys need to vary, not to be secret (RFC 6455 §10.3 protects
        // browsers from cache poisoning, which does not apply between servers).
        let mut x = self.mask_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.mask_state = x;
        Some(
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32).to_le_bytes()[..4]
                .try_into()
                .unwrap_or([1, 2, 3, 4]),
        )
    }

    /// Writes `bytes`; fails if the socket accepts nothing for `write_timeout` (progress
    /// resets the clock, so large frames on slow links are not cut off).
    async fn write(&self, w: &mut BoxWrite, bytes: &[u8]) -> Result<(), String> {
        let blocked = || format!("write blocked for more than {:?}", self.write_timeout);
        let mut off = 0;
        while off < bytes.len() {
            match bounded(self.write_timeout, w.write(&bytes[off..])).await {
                Some(Ok(0)) => return Err("write: connection closed".to_string()),
                Some(Ok(n)) => off += n,
                Some(Err(e)) => return Err(format!("write: {e}")),
                None => return Err(blocked()),
            }
        }
        match bounded(self.write_timeout, w.flush()).await {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(format!("write: {e}")),
            None => Err(blocked()),
        }
    }

    async fn write_single(
        &mut self,
        sess: &Session,
        w: &mut BoxWrite,
        m: &Message,
    ) -> Result<(), String> {
        let mut buf = std::mem::take(&mut self.single);
        buf.clear();
        buf.resize(ws::MAX_HEADER_LEN, 0);
        m.encode(&mut buf).map_err(|e| e.to_string())?;
        let mask = self.mask();
        let start = ws::frame_in_place(&mut buf, ws::MAX_HEADER_LEN, mask);
        let c = sess.counters();
        ConnCounters::add(&c.msgs_out, 1);
        ConnCounters::add(&c.bytes_out, (buf.len() - ws::MAX_HEADER_LEN) as u64);
        ConnCounters::add(&c.ws_messages_out, 1);
        let r = self.write(w, &buf[start..]).await;
        if buf.capacity() <= MAX_KEPT_WRITE_BUF {
            self.single = buf;
        }
        r
    }

    async fn write_merged(&mut self, sess: &Session, w: &mut BoxWrite) -> Result<(), String> {
        let n = self.merged.len() as u64;
        let (mut buf, start) = self.merged.finish_with_headroom();
        // The WebSocket payload, envelope header included, as the receiver counts it.
        let payload = (buf.len() - start) as u64;
        let mask = self.mask();
        let fs = ws::frame_in_place(&mut buf, start, mask);
        let c = sess.counters();
        ConnCounters::add(&c.msgs_out, n);
        ConnCounters::add(&c.bytes_out, payload);
        ConnCounters::add(&c.ws_messages_out, 1);
        let r = self.write(w, &buf[fs..]).await;
        if buf.capacity() <= MAX_KEPT_WRITE_BUF {
            self.merged.recycle(buf);
        }
        r
    }
}

async fn writer_loop(sess: &Arc<Session>, w: &mut BoxWrite) -> Result<(), String> {
    let cfg = sess.cfg();
    let mut fw = FrameWriter {
        role: sess.role,
        single: BytesMut::new(),
        merged: MergedBuilder::with_headroom(
            cfg.merge_max_messages,
            cfg.merge_max_bytes,
            ws::MAX_HEADER_LEN,
        ),
        write_timeout: cfg.write_timeout,
        mask_state: rand::random::<u64>() | 1,
    };
    let mut batch: VecDeque<Queued> = VecDeque::new();
    let mut urgent: Vec<Outbound> = Vec::new();
    // What was written and not yet reported to the queue (released under the lock that
    // `ready` and `drain_into` take anyway).
    let mut written = Written::default();
    loop {
        // Timers live in the housekeeping task, so each wake-up of the writer polls no timer,
        // nor a token: the session's end closes the queue, which wakes the writer, and then
        // `drain_into` says so.
        sess.out.ready(&mut written).await;
        // Let other ready tasks queue their messages first when many calls are active: more
        // messages per write at high concurrency, no added latency for a lone call.
        if sess.activity() > 1 {
            tokio::task::yield_now().await;
        }
        if !sess.out.drain_into(&mut batch, &mut written) {
            return Ok(());
        }
        write_batch(sess, w, &mut fw, &mut batch, &mut urgent, &mut written).await?;
    }
}

/// Writes one item in a frame of its own.
async fn write_one(
    sess: &Arc<Session>,
    w: &mut BoxWrite,
    fw: &mut FrameWriter,
    item: &Outbound,
) -> Result<(), String> {
    match item {
        Outbound::WsPong(p) => {
            let f = ws::pong_frame(p, fw.mask());
            fw.write(w, &f).await
        }
        Outbound::Msg(m) => fw.write_single(sess, w, m).await,
    }
}

async fn write_batch(
    sess: &Arc<Session>,
    w: &mut BoxWrite,
    fw: &mut FrameWriter,
    batch: &mut VecDeque<Queued>,
    urgent: &mut Vec<Outbound>,
    written: &mut Written,
) -> Result<(), String> {
    loop {
        // Liveness items go first, before every frame of data (one atomic load when none).
        sess.out.take_urgent(urgent);
        for item in urgent.drain(..) {
            write_one(sess, w, fw, &item).await?;
        }
        if written.total() >= RELEASE_STEP {
            sess.out.release(written);
        }
        let Some(q) = batch.pop_front() else {
            return Ok(());
        };
        written.add(&q);
        let m = q.msg;
        let pair_fits = match batch.front() {
            Some(n) => {
                let (a, b) = (m.encoded_len(), n.msg.encoded_len());
                fw.merged.is_empty() && a + b + 10 <= sess.cfg().merge_max_bytes
            }
            None => false,
        };
        if !pair_fits {
            fw.write_single(sess, w, &m).await?;
            continue;
        }
        fw.merged.try_push(&m).map_err(|e| e.to_string())?;
        while let Some(n) = batch.front() {
            if !fw.merged.fits(&n.msg) {
                break;
            }
            if let Some(n) = batch.pop_front() {
                written.add(&n);
                fw.merged.try_push(&n.msg).map_err(|e| e.to_string())?;
            }
        }
        fw.write_merged(sess, w).await?;
    }
}
