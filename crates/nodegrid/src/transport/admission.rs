//! What the front door knows of one connection until it authenticates: its place among the
//! unauthenticated connections ([`PreAuthSlot`]) and the [`Admission`] each of its requests
//! carries, through which a route marks it authenticated.

use crate::stats::FrontDoorCounters;
use parking_lot::Mutex;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::time::Instant;

/// One place among the unauthenticated connections; given back when dropped.
pub(crate) struct PreAuthSlot(Arc<FrontDoorCounters>);

impl PreAuthSlot {
    pub(crate) fn take(c: &Arc<FrontDoorCounters>, max: usize) -> Option<PreAuthSlot> {
        let before = c.unauthenticated.fetch_add(1, Relaxed);
        if before >= max as u64 {
            c.unauthenticated.fetch_sub(1, Relaxed);
            return None;
        }
        Some(PreAuthSlot(c.clone()))
    }
}

impl Drop for PreAuthSlot {
    fn drop(&mut self) {
        self.0.unauthenticated.fetch_sub(1, Relaxed);
    }
}

/// The front door's view of one connection, in the extensions of each of its requests: who it
/// comes from, and whether it has authenticated. A route that authenticates its caller calls
/// [`Admission::authenticated`]; until one does, the connection counts against
/// `max_unauthenticated` and is closed at `handshake_timeout`.
#[derive(Clone)]
pub struct Admission(Arc<AdmissionInner>);

struct AdmissionInner {
    peer: SocketAddr,
    cert: Option<CertificateDer<'static>>,
    slot: Mutex<Option<PreAuthSlot>>,
    counters: Arc<FrontDoorCounters>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("peer", &self.0.peer)
            .field("authenticated", &self.is_authenticated())
            .finish()
    }
}

impl Admission {
    /// The admission of a new connection from `peer`, holding its place among the
    /// unauthenticated connections.
    pub(crate) fn new(
        peer: SocketAddr,
        cert: Option<CertificateDer<'static>>,
        slot: PreAuthSlot,
        counters: Arc<FrontDoorCounters>,
    ) -> Admission {
        Admission(Arc::new(AdmissionInner {
            peer,
            cert,
            slot: Mutex::new(Some(slot)),
            counters,
        }))
    }

    /// The admission of the connection that carried `req`, if it came through a front door.
    pub fn of<B>(req: &http::Request<B>) -> Option<&Admission> {
        req.extensions().get::<Admission>()
    }

    /// Marks the connection authenticated: it no longer counts against `max_unauthenticated`
    /// and is not closed at `handshake_timeout`. Idempotent.
    pub fn authenticated(&self) {
        let slot = self.0.slot.lock().take();
        if slot.is_some() {
            self.0.counters.authenticated.fetch_add(1, Relaxed);
        }
    }

    /// Whether [`Admission::authenticated`] was called.
    pub fn is_authenticated(&self) -> bool {
        self.0.slot.lock().is_none()
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> SocketAddr {
        self.0.peer
    }

    /// The client certificate the peer presented in the TLS handshake, if any.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.0.cert.as_ref()
    }

    /// Completes at `deadline` if the connection has not authenticated by then; never
    /// otherwise.
    pub(crate) async fn unauthenticated_at(&self, deadline: Instant) {
        tokio::time::sleep_until(deadline).await;
        if self.is_authenticated() {
            std::future::pending::<()>().await;
        }
    }
}
