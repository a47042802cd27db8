//! What a session knows of the handlers it runs: the single-request handler API ([`Request`],
//! [`SingleHandler`]), the entries it finds for an incoming call, and the [`Handlers`] trait
//! through which it looks them up. The registry that implements the trait sits above the
//! session (`registry.rs`); the session never imports it.

use crate::error::RemoteError;
use crate::session::stream::server::StreamHandler;
use crate::wire::{HandlerId, SubrouteId};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a single-request handler receives.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request payload; `None` when absent (an empty request arrives as absent, §3.7).
    pub payload: Option<Bytes>,
    /// The caller's host string as configured on this node.
    pub caller: Arc<str>,
    /// The subroute the handler was registered under, if any.
    pub subroute: Option<Arc<str>>,
    /// When the caller stops waiting, if it sent a deadline.
    pub deadline: Option<Instant>,
    /// Fires when the caller cancels, the deadline passes or the connection drops.
    pub cancel: CancellationToken,
}

impl Request {
    /// The payload, or empty bytes if absent.
    pub fn bytes(&self) -> Bytes {
        self.payload.clone().unwrap_or_default()
    }
}

/// An async single-request handler: bytes in, bytes or a remote error out.
///
/// Implemented for every `Fn(Request) -> impl Future<Output = Result<Bytes, RemoteError>>`.
pub trait SingleHandler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, req: Request) -> BoxFuture<'static, Result<Bytes, RemoteError>>;
}

impl<F, Fut> SingleHandler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, RemoteError>> + Send + 'static,
{
    fn call(&self, req: Request) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        Box::pin(self(req))
    }
}

/// A registered single handler, the subroute it was registered under and its name.
#[derive(Clone)]
pub(crate) struct SingleEntry {
    pub handler: Arc<dyn SingleHandler>,
    pub subroute: Option<Arc<str>>,
    pub name: Option<Arc<str>>,
}

/// A registered streaming handler and its registration options.
#[derive(Clone)]
pub(crate) struct StreamEntry {
    pub handler: Arc<dyn StreamHandler>,
    pub subroute: Option<Arc<str>>,
    pub name: Option<Arc<str>>,
    pub in_capacity: usize,
    pub out_capacity: usize,
    pub with_payload: bool,
    /// Streams of this handler running at once (all peers), and the limit.
    pub running: Arc<AtomicUsize>,
    pub max_running: usize,
}

/// Where a session finds the handler for an incoming call (implemented by the registry).
pub(crate) trait Handlers: Send + Sync + 'static {
    /// The single-request handler for `id`, or for the subroute if the call carries one.
    fn single(&self, id: HandlerId, sub: Option<&SubrouteId>) -> Option<SingleEntry>;
    /// The streaming handler for `id`, or for the subroute if the call carries one.
    fn stream(&self, id: HandlerId, sub: Option<&SubrouteId>) -> Option<StreamEntry>;
}

/// The text of a caught handler panic.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
