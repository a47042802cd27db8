//! The session's reader task: reads WebSocket frames, splits merged envelopes, and hands each
//! message to the dispatch, with stream wake-ups held until the frame is done. It never waits
//! on anything but the socket: replies go to the outbound queue without waiting (§12.8).

use crate::session::dispatch::dispatch;
use crate::session::outq::Outbound;
use crate::session::oversized;
use crate::session::state::Session;
use crate::session::wake::deferring_wakes;
use crate::stats::ConnCounters;
use crate::transport::ws::{FrameDecoder, Need, WsEvent};
use crate::transport::BoxRead;
use crate::wire::{split_frame, DecodeError, FrameMessages, Limits, Op};
#[cfg(test)]
use bytes::Bytes;
use bytes::BytesMut;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::AsyncReadExt;

/// Read buffer growth step.
const READ_CHUNK: usize = 32 * 1024;
/// An empty read buffer larger than this (grown for a large frame) is released.
const MAX_KEPT_READ_BUF: usize = 256 * 1024;

/// Makes room in the read buffer for at least `need` more bytes before a read.
///
/// Once everything read is handled and nobody holds a slice of the buffer any more, reading
/// starts at its beginning again instead of further on: only the first pages of a quiet
/// connection's buffer stay resident (at 32 in-process nodes, 992 connection ends, the peak RSS
/// fell from 90 to 51 MiB) and the next read lands on lines still in the cache. An empty
/// buffer that grew for a large frame is released rather than kept for the connection's life.
fn prepare_read_buf(buf: &mut BytesMut, need: usize) {
    if buf.is_empty() {
        // Succeeds only if this handle is the allocation's sole owner; otherwise a no-op.
        let _ = buf.try_reclaim(buf.capacity() + 1);
        if buf.capacity() > MAX_KEPT_READ_BUF {
            *buf = BytesMut::new();
        }
    }
    if buf.capacity() - buf.len() < need {
        buf.reserve(need.max(READ_CHUNK));
    }
}

/// Reads until the socket closes or the session ends, then ends the session.
pub(crate) async fn reader_task(sess: Arc<Session>, mut r: BoxRead, buf: BytesMut) {
    let reason = match reader_loop(&sess, &mut r, buf).await {
        Ok(()) => "session closed".to_string(),
        Err(e) => e,
    };
    sess.end(&reason);
}

async fn reader_loop(
    sess: &Arc<Session>,
    r: &mut BoxRead,
    mut buf: BytesMut,
) -> Result<(), String> {
    let limits = sess.limits();
    let relaxed = Limits {
        max_message_size: limits.max_frame_size(),
    };
    let mut dec = FrameDecoder::new(sess.role, limits.max_frame_size())
        .skip_oversized(limits.max_message_size);
    loop {
        match dec.decode(&mut buf) {
            Err(e) => {
                ConnCounters::add(&sess.counters().protocol_errors, 1);
                return Err(e.to_string());
            }
            Ok(Ok(WsEvent::Binary(b))) => {
                ConnCounters::add(&sess.counters().bytes_in, b.len() as u64);
                // Messages are decoded up to the frame limit and checked against ours one by
                // one (`handle_messages`): one over it, alone or inside an envelope (a sender
                // with a larger limit merges messages of up to its merge budget), fails its call
                // alone.
                let mut msgs = split_frame(b, &relaxed).map_err(|e| malformed(sess, e))?;
                // Handled message by message; the reader stops reading while the control lane
                // of the outbound queue is at its bound, even in the middle of a frame.
                while deferring_wakes(|| handle_messages(sess, &mut msgs, &limits))? {
                    wait_for_drain(sess).await;
                    if sess.is_ended() {
                        return Ok(());
                    }
                }
            }
            Ok(Ok(WsEvent::Oversized { header, size })) => {
                ConnCounters::add(&sess.counters().bytes_in, size);
                oversized::received(sess, header, size);
            }
            Ok(Ok(WsEvent::Text(_))) | Ok(Ok(WsEvent::Pong)) => {}
            Ok(Ok(WsEvent::Ping(p))) => {
                // Replaces a pong not yet sent: only the latest ping is answered.
                let _ = sess.out.push_urgent(Outbound::WsPong(p));
            }
            Ok(Ok(WsEvent::Close)) => return Err("websocket close received".to_string()),
            Ok(Err(Need::More(n))) => {
                if sess.out.control_full() {
                    // Answers produced outside a frame's handling (a ping's) are bounded too.
                    wait_for_drain(sess).await;
                }
                let read = std::future::poll_fn(|cx| {
                    // Registered before the check, so an `end` in between still wakes us.
                    sess.reader_waker.register(cx.waker());
                    if sess.is_ended() {
                        return Poll::Ready(None);
                    }
                    // At each read attempt, not once before the first: by then the slices
                    // handed out from the last frame have usually been dropped.
                    prepare_read_buf(&mut buf, n);
                    // `read_buf` is cancel-safe: a fresh one per poll loses nothing.
                    std::pin::pin!(r.read_buf(&mut buf)).poll(cx).map(Some)
                })
                .await;
                match read {
                    None => return Ok(()),
                    Some(Ok(0)) => return Err("connection closed by peer".to_string()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("read: {e}")),
                }
            }
        }
    }
}

fn malformed(sess: &Session, e: DecodeError) -> String {
    ConnCounters::add(&sess.counters().protocol_errors, 1);
    format!("malformed message: {e}")
}

/// Dispatches the messages of one frame until they are done (`Ok(false)`) or the control lane
/// of the outbound queue is at its bound (`Ok(true)`: wait, then call again).
fn handle_messages(
    sess: &Arc<Session>,
    msgs: &mut FrameMessages,
    limits: &Limits,
) -> Result<bool, String> {
    for m in msgs.by_ref() {
        let m = m.map_err(|e| malformed(sess, e))?;
        ConnCounters::add(&sess.counters().msgs_in, 1);
        if m.payload.len() > limits.max_payload() {
            let size = m.encoded_len();
            if size > limits.max_message_size && m.op != Op::Merged {
                oversized::received(sess, m.header(), size as u64);
                continue;
            }
        }
        dispatch(sess, m);
        if sess.out.control_full() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Stops reading until the writer has drained the control lane below half its bound (or the
/// session ends): the peer is sending faster than it reads our answers. Counted, not logged
/// (it may happen many times a second).
async fn wait_for_drain(sess: &Arc<Session>) {
    ConnCounters::add(&sess.counters().read_pauses, 1);
    std::future::poll_fn(|cx| sess.out.poll_control_drained(cx)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read buffer of `cap` bytes whose first `used` bytes were read and handed out as the
    /// returned frame.
    fn consumed(cap: usize, used: usize) -> (BytesMut, Bytes) {
        let mut buf = BytesMut::with_capacity(cap);
        buf.extend_from_slice(&vec![7u8; used]);
        let frame = buf.split_to(used).freeze();
        (buf, frame)
    }

    #[test]
    fn a_drained_read_buffer_is_read_into_from_its_start_again() {
        let (mut buf, frame) = consumed(READ_CHUNK, 1000);
        drop(frame);
        assert_eq!(buf.capacity(), READ_CHUNK - 1000);
        let before = buf.as_ptr();
        prepare_read_buf(&mut buf, 64);
        // The whole allocation again, from its start (1000 bytes before the old position).
        assert_eq!(buf.capacity(), READ_CHUNK);
        assert_eq!(before as usize - buf.as_ptr() as usize, 1000);
    }

    #[test]
    fn a_read_buffer_still_referenced_is_left_where_it_is() {
        let (mut buf, frame) = consumed(READ_CHUNK, 1000);
        let before = buf.as_ptr();
        prepare_read_buf(&mut buf, 64);
        assert_eq!(buf.as_ptr(), before);
        assert_eq!(buf.capacity(), READ_CHUNK - 1000);
        // The handed-out frame is intact.
        assert_eq!(&frame[..], &vec![7u8; 1000][..]);
    }

    #[test]
    fn unread_bytes_stay_in_place_and_room_is_made_for_the_rest_of_a_frame() {
        let mut buf = BytesMut::with_capacity(1024);
        buf.extend_from_slice(b"partial frame");
        prepare_read_buf(&mut buf, 4096);
        assert_eq!(&buf[..], b"partial frame");
        assert!(buf.capacity() - buf.len() >= 4096);
    }

    #[test]
    fn a_read_buffer_grown_for_a_large_frame_is_released_once_drained() {
        let (mut buf, frame) = consumed(4 << 20, 3 << 20);
        drop(frame);
        prepare_read_buf(&mut buf, 64);
        assert!(buf.capacity() <= MAX_KEPT_READ_BUF, "{}", buf.capacity());
        assert!(buf.capacity() >= 64);
        // While the large frame is still held, its rest is not kept for further reads either:
        // the frame alone keeps the allocation, which goes when the frame does.
        let (mut buf, frame) = consumed(4 << 20, 3 << 20);
        prepare_read_buf(&mut buf, 64);
        assert!(buf.capacity() <= MAX_KEPT_READ_BUF, "{}", buf.capacity());
        assert_eq!(frame.len(), 3 << 20);
        assert!(frame.iter().all(|&b| b == 7));
    }
}
