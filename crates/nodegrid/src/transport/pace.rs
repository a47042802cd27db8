//! A minimum pace for request bodies: a body that trickles in (1 byte a second) would hold its
//! connection, and its handler, for as long as the sender likes.

use crate::config::FrontDoorConfig;
use crate::stats::FrontDoorCounters;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A request body that must keep a minimum pace: at least `min` bytes in each `period`
/// (counted from the first poll, and again after each `min` bytes). A slower body ends with an
/// error. Costs one timer reset per `min` bytes, nothing per chunk beyond an addition.
pub(crate) struct PacedBody<B> {
    inner: B,
    min: u64,
    period: Duration,
    got: u64,
    timer: Option<Pin<Box<Sleep>>>,
    counters: Arc<FrontDoorCounters>,
}

impl<B> PacedBody<B> {
    pub(crate) fn new(
        inner: B,
        cfg: &FrontDoorConfig,
        counters: Arc<FrontDoorCounters>,
    ) -> PacedBody<B> {
        PacedBody {
            inner,
            min: cfg.body_min_bytes,
            period: cfg.body_timeout,
            got: 0,
            timer: None,
            counters,
        }
    }
}

/// A request body slower than the front door's minimum pace.
#[derive(Debug, thiserror::Error)]
#[error("request body too slow: less than {min} bytes in {period:?}")]
pub struct SlowBody {
    min: u64,
    period: Duration,
}

impl<B> Body for PacedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.got += d.len() as u64;
                    if this.got >= this.min {
                        this.got = 0;
                        if let Some(t) = this.timer.as_mut() {
                            t.as_mut().reset(Instant::now() + this.period);
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let period = this.period;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.counters.slow_bodies.fetch_add(1, Relaxed);
                    return Poll::Ready(Some(Err(Box::new(SlowBody {
                        min: this.min,
                        period,
                    }))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
