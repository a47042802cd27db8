//! The raw-TCP baseline of `nodegrid bench --baseline`: the simplest correct multiplexer over
//! one TCP connection (length-prefixed frames with request IDs, one reader and one writer
//! task per side), and raw one-way framed messages for streams (multiplexed with the same
//! concurrency, or from one sender). Measured in the same process
//! with the same payload and concurrency, so the grid's figures can be given as ratios.

use crate::measure::{new_hist, Run};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

type Frame = (u64, Bytes);

/// Appends one length-prefixed frame.
fn put(id: u64, p: &[u8], buf: &mut BytesMut) {
    buf.put_u32_le(8 + p.len() as u32);
    buf.put_u64_le(id);
    buf.put_slice(p);
}

/// The receiving end of a writer's queue: unbounded for the echo baseline, bounded for the
/// one-way streams (whose senders must wait when it is full).
trait FrameQueue {
    async fn next(&mut self) -> Option<Frame>;
    fn try_next(&mut self) -> Option<Frame>;
}

impl FrameQueue for mpsc::UnboundedReceiver<Frame> {
    async fn next(&mut self) -> Option<Frame> {
        self.recv().await
    }
    fn try_next(&mut self) -> Option<Frame> {
        self.try_recv().ok()
    }
}

impl FrameQueue for mpsc::Receiver<Frame> {
    async fn next(&mut self) -> Option<Frame> {
        self.recv().await
    }
    fn try_next(&mut self) -> Option<Frame> {
        self.try_recv().ok()
    }
}

/// Writes every frame queued so far in one `write_all`.
async fn writer(mut w: OwnedWriteHalf, mut rx: impl FrameQueue) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.next().await {
        buf.clear();
        put(first.0, &first.1, &mut buf);
        while buf.len() < 256 * 1024 {
            match rx.try_next() {
                Some((id, p)) => put(id, &p, &mut buf),
                None => break,
            }
        }
        if w.write_all(&buf).await.is_err() {
            return;
        }
    }
}

/// Takes the next complete frame off `buf`, if there is one (reserving room for the rest of a
/// partial one).
fn next_frame(buf: &mut BytesMut) -> Option<Frame> {
    if buf.len() < 4 {
        return None;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return None;
    }
    buf.advance(4);
    let mut frame = buf.split_to(len).freeze();
    let id = frame.get_u64_le();
    Some((id, frame))
}

/// Reads more into `buf`; false at the end of the connection.
async fn fill(r: &mut OwnedReadHalf, buf: &mut BytesMut) -> bool {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
    matches!(r.read_buf(buf).await, Ok(n) if n > 0)
}

/// Reads frames and hands each to `f`.
async fn reader(mut r: OwnedReadHalf, mut f: impl FnMut(u64, Bytes)) {
    let mut buf = BytesMut::with_capacity(128 * 1024);
    loop {
        while let Some((id, p)) = next_frame(&mut buf) {
            f(id, p);
        }
        if !fill(&mut r, &mut buf).await {
            return;
        }
    }
}

async fn pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    let (c, (s, _)) = (c?, s?);
    c.set_nodelay(true)?;
    s.set_nodelay(true)?;
    Ok((c, s))
}

/// The caller's side of one echo connection: where to queue requests and who waits for which
/// response.
struct EchoConn {
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>,
    tx: mpsc::UnboundedSender<Frame>,
}

/// One TCP connection with an echo server on one end and a caller's reader and writer on the
/// other.
async fn echo_conn() -> std::io::Result<EchoConn> {
    let (c, s) = pair().await?;
    // Server: echo every frame back.
    let (sr, sw) = s.into_split();
    let (stx, srx) = mpsc::unbounded_channel();
    tokio::spawn(writer(sw, srx));
    tokio::spawn(reader(sr, move |id, p| {
        let _ = stx.send((id, p));
    }));
    // Client.
    let (cr, cw) = c.into_split();
    let (tx, crx) = mpsc::unbounded_channel::<Frame>();
    tokio::spawn(writer(cw, crx));
    let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>> =
        Arc::new(Mutex::new(HashMap::new()));
    let p2 = pending.clone();
    tokio::spawn(reader(cr, move |id, p| {
        if let Some(tx) = p2.lock().remove(&id) {
            let _ = tx.send(p);
        }
    }));
    Ok(EchoConn { pending, tx })
}

/// Request/response echo with `concurrency` callers in flight, over one TCP connection per
/// pair of `nodes` (the grid run's topology: with 2 nodes, one connection); each call picks a
/// random connection, as the grid's callers pick a random pair of nodes. The tasks of a
/// connection end when its last sender is dropped at the end.
pub async fn single(
    payload: usize,
    concurrency: usize,
    nodes: usize,
    warmup: Duration,
    duration: Duration,
) -> std::io::Result<(Arc<Run>, Histogram<u64>)> {
    let pairs = (nodes.max(2) * (nodes.max(2) - 1) / 2).max(1);
    let mut conns = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        conns.push(echo_conn().await?);
    }
    let conns = Arc::new(conns);
    let run = Run::new(warmup, duration);
    let next = Arc::new(AtomicU64::new(1));
    let body = Bytes::from(vec![0xa5u8; payload]);
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (run, next, conns, body) = (run.clone(), next.clone(), conns.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w as u64 * 7919 + 1);
            let mut h = new_hist();
            while !run.done() {
                let c = &conns[rng.gen_range(0..conns.len())];
                let id = next.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                c.pending.lock().insert(id, tx);
                let t0 = Instant::now();
                if c.tx.send((id, body.clone())).is_err() {
                    break;
                }
                let ok = matches!(rx.await, Ok(p) if p.len() == body.len());
                run.record(&mut h, t0, ok);
            }
            h
        }));
    }
    let mut hist = new_hist();
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = hist.add(&h);
        }
    }
    Ok((run, hist))
}

/// One-way streams, multiplexed as simply as correctness allows, with the grid run's
/// concurrency: `streams` sender tasks each send framed messages tagged with their stream ID
/// through one bounded queue to one writer task (back-pressure instead of unbounded memory);
/// on the other side one reader task hands each message to its stream's consumer task through
/// a bounded channel of `capacity` messages (a full channel holds the reader: per-stream
/// back-pressure without credits). Latency is each consumer's inter-arrival time.
pub async fn one_way(
    payload: usize,
    streams: usize,
    capacity: usize,
    warmup: Duration,
    duration: Duration,
) -> std::io::Result<(Arc<Run>, Histogram<u64>)> {
    let streams = streams.max(1);
    let capacity = capacity.max(1);
    let (c, s) = pair().await?;
    let run = Run::new(warmup, duration);
    let (_cr, cw) = c.into_split();
    let (tx, rx) = mpsc::channel::<Frame>(streams * capacity);
    let writer = tokio::spawn(writer(cw, rx));
    let body = Bytes::from(vec![0xa5u8; payload]);
    let mut senders = Vec::with_capacity(streams);
    for id in 0..streams as u64 {
        let (run, tx, body) = (run.clone(), tx.clone(), body.clone());
        senders.push(tokio::spawn(async move {
            // The clock is read once per 32 messages (the grid's producers do not read it).
            let mut n = 0u32;
            while n % 32 != 0 || !run.done() {
                n = n.wrapping_add(1);
                if tx.send((id, body.clone())).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let (sr, _sw) = s.into_split();
    let mut outs = Vec::with_capacity(streams);
    let mut consumers = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (otx, mut orx) = mpsc::channel::<Bytes>(capacity);
        outs.push(otx);
        let run = run.clone();
        consumers.push(tokio::spawn(async move {
            let mut h = new_hist();
            let mut last = Instant::now();
            while let Some(p) = orx.recv().await {
                let now = Instant::now();
                run.record_at(&mut h, last, now, p.len() == payload);
                last = now;
            }
            h
        }));
    }
    let reader = tokio::spawn(async move {
        let mut r = sr;
        let mut buf = BytesMut::with_capacity(128 * 1024);
        loop {
            while let Some((id, p)) = next_frame(&mut buf) {
                if let Some(out) = outs.get(id as usize) {
                    if let Err(mpsc::error::TrySendError::Full(p)) = out.try_send(p) {
                        let _ = out.send(p).await;
                    }
                }
            }
            if !fill(&mut r, &mut buf).await {
                return;
            }
        }
    });
    tokio::time::sleep(run.remaining()).await;
    run.stop();
    for s in senders {
        let _ = s.await;
    }
    // The writer ends once every sender is gone; its write half closing ends the reader,
    // which drops the consumers' channels.
    let _ = writer.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    let mut hist = new_hist();
    for c in consumers {
        if let Ok(Ok(h)) = tokio::time::timeout(Duration::from_secs(5), c).await {
            let _ = hist.add(&h);
        }
    }
    Ok((run, hist))
}

/// One-way framed messages from one sender task, which writes batches of 64 KiB, to one
/// receiver task, as fast as TCP allows: no multiplexing, the raw wire's limit. Latency is the
/// receiver's inter-arrival time.
pub async fn wire(
    payload: usize,
    warmup: Duration,
    duration: Duration,
) -> std::io::Result<(Arc<Run>, Histogram<u64>)> {
    let (c, s) = pair().await?;
    let run = Run::new(warmup, duration);
    let (_cr, cw) = c.into_split();
    let body = Bytes::from(vec![0xa5u8; payload]);
    let r2 = run.clone();
    let sender = tokio::spawn(async move {
        let mut w = cw;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut id = 0u64;
        while !r2.done() {
            buf.clear();
            while buf.len() + body.len() + 12 <= 64 * 1024 || buf.is_empty() {
                put(id, &body, &mut buf);
                id += 1;
            }
            if w.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let (sr, _sw) = s.into_split();
    let r3 = run.clone();
    let hist = Arc::new(Mutex::new(new_hist()));
    let h2 = hist.clone();
    let recv = tokio::spawn(async move {
        let mut last = Instant::now();
        let mut local = new_hist();
        let r4 = r3.clone();
        reader(sr, |_id, _p| {
            let now = Instant::now();
            r4.record_at(&mut local, last, now, true);
            last = now;
        })
        .await;
        let _ = h2.lock().add(&local);
    });
    tokio::time::sleep(run.remaining()).await;
    run.stop();
    let _ = sender.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), recv).await;
    let h = hist.lock().clone();
    Ok((run, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_whole_and_a_partial_one_waits_for_its_rest() {
        let mut buf = BytesMut::new();
        put(7, b"first", &mut buf);
        put(8, b"", &mut buf);
        put(9, b"third frame", &mut buf);
        // Cut the last frame short.
        let full = buf.len();
        let rest = buf.split_off(full - 4);
        assert_eq!(
            next_frame(&mut buf),
            Some((7, Bytes::from_static(b"first")))
        );
        assert_eq!(next_frame(&mut buf), Some((8, Bytes::new())));
        assert_eq!(next_frame(&mut buf), None);
        // Room was reserved for the rest, and the partial frame is untouched.
        assert!(buf.capacity() - buf.len() >= 4);
        assert_eq!(buf.len(), 4 + 8 + 11 - 4);
        buf.extend_from_slice(&rest);
        assert_eq!(
            next_frame(&mut buf),
            Some((9, Bytes::from_static(b"third frame")))
        );
        assert!(buf.is_empty());
        // Fewer than four bytes: not even a length yet.
        buf.extend_from_slice(&[1, 0]);
        assert_eq!(next_frame(&mut buf), None);
        assert_eq!(buf.len(), 2);
    }
}
