//! The marker that keeps the targets' own activity out of the log pipeline (LOGGING.md §4.2,
//! §8.2 "re-entrancy trap").
//!
//! Every task a target spawns runs inside [`internal`], which sets a thread-local flag for the
//! duration of each poll; the layer ignores events emitted while the flag is set (e.g. by hyper
//! or rustls). Events whose `tracing` target starts with [`INTERNAL_TARGET`] are ignored too.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Events whose target starts with this are never forwarded to targets.
pub const INTERNAL_TARGET: &str = "nodegrid_log::internal";

thread_local! {
    static IN_INTERNAL: Cell<bool> = const { Cell::new(false) };
}

/// Wraps a future so that `tracing` events emitted while it is polled are ignored by the
/// layer. Every task the targets spawn runs inside it; a node may use it for its own
/// logging-related tasks.
pub fn internal<F: Future>(fut: F) -> Internal<F> {
    Internal { fut: Box::pin(fut) }
}

/// Future returned by [`internal`].
pub struct Internal<F> {
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Internal<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let prev = IN_INTERNAL.with(|f| f.replace(true));
        let r = self.fut.as_mut().poll(cx);
        IN_INTERNAL.with(|f| f.set(prev));
        r
    }
}

/// Whether the current thread is polling an [`internal`] future.
pub(crate) fn in_internal() -> bool {
    IN_INTERNAL.with(|f| f.get())
}
