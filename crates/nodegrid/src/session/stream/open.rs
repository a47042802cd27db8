//! Opening a stream (PROTOCOL.md §6.2, caller side), and the caller's handle to it, which
//! cancels the stream when the last reference goes away (§6.6).

use crate::error::Error;
use crate::proto::stream::CallerState;
use crate::session::state::{Outgoing, Session};
use crate::session::stream::client::ClientStream;
use crate::stats::ConnCounters;
use crate::wire::{HandlerId, MuxId, SubrouteId};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The caller's handle to one stream; dropping the last one cancels the stream.
pub(crate) struct CallHandle {
    pub(crate) s: Arc<ClientStream>,
    sess: Arc<Session>,
}

impl CallHandle {
    /// Cancels the stream: the callee's handler is told, and the stream ends with `e`.
    pub(crate) fn abort(&self, e: Error) {
        self.sess.abort_stream(&self.s, e);
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        self.sess.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.sess.abort_stream(&self.s, Error::Cancelled);
    }
}

/// Opens a stream to `handler` on `sess` as mux `mux_id`, with the capacities
/// `(in, out)` of the local registration, and queues its ConnectMux.
pub(crate) async fn open(
    sess: Arc<Session>,
    mux_id: MuxId,
    (in_cap, out_cap): (u32, usize),
    handler: HandlerId,
    subroute: Option<SubrouteId>,
    payload: Option<Bytes>,
    timeout: Option<Duration>,
) -> Result<CallHandle, Error> {
    let deadline_ms = match timeout {
        Some(t) if t < Duration::from_millis(1) => return Err(Error::DeadlineExceeded),
        Some(t) => t.as_millis().min(u32::MAX as u128) as u32,
        None => 0,
    };
    if let Some(p) = &payload {
        // Larger than the peer accepts (when it told us its limit): never sent.
        sess.out.check_peer_size(p.len())?;
    }
    let pings = timeout.is_none_or(|t| t > sess.cfg().stream_ping_interval);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut st = CallerState::new(mux_id, sess.base_flags, in_cap, out_cap, Instant::now());
    let connect = st.connect_msg(handler, deadline_ms, payload, subroute);
    let s = Arc::new(ClientStream::new(st, sess.out.clone(), pings));
    sess.outgoing
        .insert(mux_id, Outgoing::Stream(s.clone()))
        .map_err(|_| Error::Disconnected)?;
    sess.in_flight.fetch_add(1, Ordering::Relaxed);
    ConnCounters::add(&sess.counters().streams_out, 1);
    let handle = CallHandle {
        s: s.clone(),
        sess: sess.clone(),
    };
    // The deadline also bounds the wait for space in a full outbound queue, as for single
    // requests (§8: a caller gives up when its context ends).
    let queued = match deadline {
        Some(d) => tokio::time::timeout_at(d, sess.out.push_wait(connect))
            .await
            .ok(),
        None => Some(sess.out.push_wait(connect).await),
    };
    match queued {
        Some(Ok(())) => {}
        Some(Err(_)) => return Err(Error::Disconnected),
        None => {
            // Never queued, so the callee knows nothing to cancel: forget the entry silently.
            sess.outgoing.remove(mux_id);
            return Err(Error::DeadlineExceeded);
        }
    }
    if let Some(d) = deadline {
        let s2 = s.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(d) => sess.abort_stream(&s2, Error::DeadlineExceeded),
                _ = s2.done.cancelled() => {}
            }
        });
    }
    Ok(handle)
}
