//! Client-side bodies: what a call sends ([`RequestBody`]) and what it receives
//! ([`ResponseBody`]). Both are streams: the request body is pulled by the connection as it
//! writes, the response body yields chunks as they are read, so a transfer holds at most a few
//! chunks in memory whatever its size. Both count their bytes into the peer's stats.

use crate::error::BoxError;
use crate::stats::{ErrorKind, StatsCell};
use crate::RestError;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send + 'static>>;

/// The body of a call: empty, a buffer already in memory, or a stream pulled as the
/// connection writes (sent chunked).
///
/// ```
/// use bytes::Bytes;
/// use nodegrid_rest::RequestBody;
/// let small = RequestBody::from(Bytes::from_static(b"hello"));
/// let chunks = futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 1024]))));
/// let streamed = RequestBody::from_stream(chunks);
/// # let _ = (small, streamed, RequestBody::empty());
/// ```
pub struct RequestBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(ByteStream),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full(b) => write!(
                f,
                "RequestBody::Full({} bytes)",
                b.as_ref().map_or(0, Bytes::len)
            ),
            Kind::Stream(_) => f.write_str("RequestBody::Stream"),
        }
    }
}

impl RequestBody {
    /// No body.
    pub fn empty() -> RequestBody {
        RequestBody {
            kind: Kind::Full(None),
        }
    }

    /// A body already in memory, sent with a `Content-Length`.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> RequestBody {
        RequestBody {
            kind: Kind::Full(Some(bytes.into())),
        }
    }

    /// A body streamed from `stream`. If the stream fails the call fails with
    /// [`RestError::RequestBody`] and the peer stays online.
    pub fn from_stream<S, E>(stream: S) -> RequestBody
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        RequestBody {
            kind: Kind::Stream(Box::pin(stream.map(|r| r.map_err(Into::into)))),
        }
    }
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::empty()
    }
}

impl From<Bytes> for RequestBody {
    fn from(b: Bytes) -> Self {
        RequestBody::from_bytes(b)
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(b: Vec<u8>) -> Self {
        RequestBody::from_bytes(b)
    }
}

impl From<String> for RequestBody {
    fn from(b: String) -> Self {
        RequestBody::from_bytes(b)
    }
}

impl From<&'static str> for RequestBody {
    fn from(b: &'static str) -> Self {
        RequestBody::from_bytes(b)
    }
}

impl From<&'static [u8]> for RequestBody {
    fn from(b: &'static [u8]) -> Self {
        RequestBody::from_bytes(b)
    }
}

impl From<()> for RequestBody {
    fn from(_: ()) -> Self {
        RequestBody::empty()
    }
}

/// The request body as hyper sees it: counts bytes sent and remembers whether the caller's
/// stream failed, so that failure is not mistaken for a network error.
pub(crate) struct OutBody {
    kind: Kind,
    stats: Option<Arc<StatsCell>>,
    failed: Arc<AtomicBool>,
}

impl OutBody {
    pub(crate) fn new(
        body: RequestBody,
        stats: Option<Arc<StatsCell>>,
        failed: Arc<AtomicBool>,
    ) -> OutBody {
        OutBody {
            kind: body.kind,
            stats,
            failed,
        }
    }

    fn sent(&self, n: usize) {
        if let Some(s) = &self.stats {
            s.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(b) => {
                let b = b.take().filter(|b| !b.is_empty());
                if let Some(b) = &b {
                    this.sent(b.len());
                }
                Poll::Ready(b.map(|b| Ok(Frame::data(b))))
            }
            Kind::Stream(s) => match s.as_mut().poll_next(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Ok(b))) => {
                    this.sent(b.len());
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(Some(Err(e))) => {
                    this.failed.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(e)))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Kind::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

/// The client a response body belongs to: the peer's name, its statistics, and what a broken
/// connection means for it (the client marks the peer offline).
pub(crate) trait BodyOwner: Send + Sync + 'static {
    /// The peer's endpoint, for errors.
    fn peer(&self) -> &str;
    /// The peer's statistics.
    fn stats(&self) -> &StatsCell;
    /// Records a broken connection and returns the error to report.
    fn connection_broken(self: Arc<Self>, source: BoxError) -> RestError;
}

/// A streamed response body. Yields chunks as they arrive; fails with
/// [`RestError::Network`] (marking the peer offline) if the connection breaks, and with
/// [`RestError::Deadline`] if the call's deadline passes before the end.
pub struct ResponseBody {
    incoming: Incoming,
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    client: Arc<dyn BodyOwner>,
    done: bool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("peer", &self.client.peer())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    pub(crate) fn new(
        incoming: Incoming,
        deadline: Option<Pin<Box<Sleep>>>,
        timeout: Duration,
        client: Arc<dyn BodyOwner>,
    ) -> Self {
        ResponseBody {
            incoming,
            deadline,
            timeout,
            client,
            done: false,
        }
    }

    /// The next chunk; `None` at the end of the body (or after an error was returned).
    pub async fn chunk(&mut self) -> Option<Result<Bytes, RestError>> {
        self.next().await
    }

    /// Reads the whole body into memory; fails with [`RestError::ResponseTooLarge`] if it is
    /// longer than `limit` bytes. For small answers only: large ones should be streamed.
    pub async fn bytes(mut self, limit: usize) -> Result<Bytes, RestError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.chunk().await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > limit {
                return Err(RestError::ResponseTooLarge {
                    peer: self.client.peer().to_string(),
                    limit,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Reads the body to its end, discarding it, and returns its length.
    pub async fn drain(mut self) -> Result<u64, RestError> {
        let mut n = 0u64;
        while let Some(chunk) = self.chunk().await {
            n += chunk?.len() as u64;
        }
        Ok(n)
    }

    /// Reads at most `limit` bytes of an error answer as text, without counting failures (the
    /// call's error is the status).
    pub(crate) async fn message(mut self, limit: usize) -> String {
        let mut buf = Vec::new();
        while buf.len() < limit {
            let next = std::future::poll_fn(|cx| {
                if let Some(d) = self.deadline.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                }
                Pin::new(&mut self.incoming).poll_frame(cx)
            })
            .await;
            match next {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.client
                            .stats()
                            .bytes_received
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        buf.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        buf.truncate(limit);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Stream for ResponseBody {
    type Item = Result<Bytes, RestError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(d) = this.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                this.done = true;
                let err = RestError::Deadline {
                    peer: this.client.peer().to_string(),
                    deadline: this.timeout,
                };
                this.client.stats().error(ErrorKind::Deadline);
                return Poll::Ready(Some(Err(err)));
            }
        }
        loop {
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(this
                        .client
                        .clone()
                        .connection_broken(Box::new(e)))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            this.client
                                .stats()
                                .bytes_received
                                .fetch_add(data.len() as u64, Ordering::Relaxed);
                            return Poll::Ready(Some(Ok(data)));
                        }
                    }
                }
            }
        }
    }
}
