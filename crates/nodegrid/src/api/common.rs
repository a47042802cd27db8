//! What every connection of a manager shares: the node's identity and host list, its
//! credentials and configuration, the handler registry, the dialer and the shutdown signal.

use crate::auth::Auth;
use crate::config::GridConfig;
use crate::observe::Observer;
use crate::registry::Registry;
use crate::transport::Dialer;
use crate::wire::Limits;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What every connection of a manager shares.
pub(crate) struct Common {
    pub local: Arc<str>,
    pub hosts: Vec<String>,
    pub route: String,
    pub auth: Auth,
    pub cfg: GridConfig,
    pub instance_id: [u8; 16],
    pub registry: Arc<Registry>,
    pub dialer: Arc<dyn Dialer>,
    pub shutdown: CancellationToken,
    /// Set by [`crate::Manager::shutdown`] before `shutdown` fires: every call checks it, and
    /// an atomic load costs nothing where the token's `is_cancelled` takes a shared lock.
    pub stopped: std::sync::atomic::AtomicBool,
    pub local_tls: bool,
    pub handshake_permits: Arc<Semaphore>,
    pub observer: Option<Observer>,
    session_ids: AtomicU64,
}

impl Common {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        local: Arc<str>,
        hosts: Vec<String>,
        route: String,
        auth: Auth,
        cfg: GridConfig,
        dialer: Arc<dyn Dialer>,
        local_tls: bool,
        observer: Option<Observer>,
    ) -> Common {
        let permits = Arc::new(Semaphore::new(cfg.max_pending_handshakes));
        Common {
            local,
            hosts,
            route,
            auth,
            cfg,
            instance_id: *uuid::Uuid::new_v4().as_bytes(),
            registry: Arc::default(),
            dialer,
            shutdown: CancellationToken::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            local_tls,
            handshake_permits: permits,
            observer,
            session_ids: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.session_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_message_size: self.cfg.max_message_size,
        }
    }
}
