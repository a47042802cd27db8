//! [`Manager`]: one per node. Holds the cluster's host list, the handler registry and one
//! [`Connection`] per remote host; dials the peers this node is responsible for (§2.6) and
//! accepts the others through [`Manager::serve`] or a mounted [`GridService`].

use crate::api::acceptor::{await_dialer, Acceptor};
use crate::api::common::Common;
use crate::api::connection::{ConnShared, Connection};
use crate::api::reconnect::dial_loop;
use crate::auth::Auth;
use crate::config::FrontDoorConfig;
use crate::config::GridConfig;
use crate::error::{ConfigError, Error};
use crate::observe::{CallRecord, Observer};
use crate::proto::state::ConnState;
use crate::session::handlers::{SingleHandler, StreamEntry};
use crate::session::StreamHandler;
use crate::stats::FrontDoorCounters;
use crate::stats::ManagerStats;
use crate::transport::endpoint::{Endpoint, SourceLimit};
use crate::transport::{Dialer, FrontDoor, GridService, Target, TcpDialer, TlsConfig};
use crate::wire::{should_dial, HandlerId};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The default route path of the grid (the "common" grid of MinIO).
pub const DEFAULT_ROUTE: &str = "/minio/grid/v1";
/// The route path of MinIO's lock grid.
pub const LOCK_ROUTE: &str = "/minio/grid/lock/v1";

pub(crate) struct ManagerShared {
    pub(crate) common: Arc<Common>,
    pub(crate) conns: Arc<HashMap<String, Arc<ConnShared>>>,
    pub(crate) tls: Option<TlsConfig>,
    /// The upgrade endpoint's settings, shared by every [`GridService`] of this manager.
    endpoint: Arc<Endpoint>,
    /// The counters of the front doors this manager created.
    front_door: Arc<FrontDoorCounters>,
}

/// Registration options of a single-request handler: its name and subroute, for
/// [`Manager::register_single_with`].
///
/// ```no_run
/// # fn f(mgr: &nodegrid::Manager) -> Result<(), nodegrid::ConfigError> {
/// use bytes::Bytes;
/// use nodegrid::{handler::Request, RemoteError, SingleSpec};
///
/// mgr.register_single_with(12, SingleSpec::new().name("kv.get").subroute("kv/1"), |r: Request| async move {
///     Ok::<_, RemoteError>(Bytes::from(format!("value of {:?}", r.bytes())))
/// })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct SingleSpec {
    subroute: Option<String>,
    name: Option<String>,
}

impl SingleSpec {
    /// No name, no subroute.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the handler. The name appears in caller-side errors (a caller that finds the
    /// handler missing on a peer names it from its own registration), in the call observer's
    /// [`CallRecord::name`] and so in audit records. It never travels on the wire. Without
    /// one, texts show the handler ID.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Registers under a subroute (PROTOCOL.md §3.6a).
    pub fn subroute(mut self, s: impl Into<String>) -> Self {
        self.subroute = Some(s.into());
        self
    }
}

/// Registration options of a streaming handler, for [`Manager::register_stream`].
///
/// ```no_run
/// # fn f(mgr: &nodegrid::Manager) -> Result<(), nodegrid::ConfigError> {
/// use nodegrid::{RemoteError, StreamContext, StreamInput, StreamOutput, StreamSpec};
///
/// let spec = StreamSpec::new().name("kv.watch").in_capacity(0).out_capacity(16);
/// mgr.register_stream(13, spec, |_ctx: StreamContext, _in: StreamInput, out: StreamOutput| async move {
///     out.send("changed".into()).await.map_err(|e| RemoteError::new(e.to_string()))
/// })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StreamSpec {
    in_capacity: usize,
    out_capacity: usize,
    subroute: Option<String>,
    name: Option<String>,
    with_payload: bool,
    max_concurrent: usize,
}

impl Default for StreamSpec {
    fn default() -> Self {
        StreamSpec {
            in_capacity: 1,
            out_capacity: 1,
            subroute: None,
            name: None,
            with_payload: true,
            max_concurrent: usize::MAX,
        }
    }
}

impl StreamSpec {
    /// In 1, out 1, with payload, no subroute, no name (the reference's typed defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the handler, as [`SingleSpec::name`] does: for caller-side errors, the call
    /// observer and audit records; never on the wire.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Input items buffered on the callee (0 = the handler takes no input).
    pub fn in_capacity(mut self, n: usize) -> Self {
        self.in_capacity = n;
        self
    }

    /// Output items in flight to the caller (at least 1).
    pub fn out_capacity(mut self, n: usize) -> Self {
        self.out_capacity = n.max(1);
        self
    }

    /// Registers under a subroute.
    pub fn subroute(mut self, s: impl Into<String>) -> Self {
        self.subroute = Some(s.into());
        self
    }

    /// Most streams of this handler running at once, over all peers (default: no limit besides
    /// [`GridConfig::max_incoming_streams`] per connection). Beyond it, new streams are
    /// refused with a remote error.
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n;
        self
    }

    /// Whether the handler receives the initial payload (default true).
    pub fn with_payload(mut self, yes: bool) -> Self {
        self.with_payload = yes;
        self
    }
}

/// Builds a [`Manager`].
pub struct ManagerBuilder {
    local: String,
    hosts: Vec<String>,
    route: String,
    auth: Option<Auth>,
    tls: Option<TlsConfig>,
    cfg: GridConfig,
    dialer: Option<Arc<dyn Dialer>>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("local", &self.local)
            .field("hosts", &self.hosts)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl ManagerBuilder {
    /// The route path (default [`DEFAULT_ROUTE`]).
    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.route = route.into();
        self
    }

    /// The authentication provider (required).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// TLS for `https://` hosts and for [`Manager::serve`].
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Limits and timers.
    pub fn config(mut self, cfg: GridConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// A custom dialer (in-memory or simulated networks in tests).
    pub fn dialer(mut self, d: impl Dialer) -> Self {
        self.dialer = Some(Arc::new(d));
        self
    }

    /// Calls `f` for every completed incoming call (single or stream), e.g. to write an audit
    /// log. `f` runs on the grid's tasks: keep it quick and non-blocking.
    pub fn observe_calls(mut self, f: impl Fn(&CallRecord<'_>) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Validates the configuration, creates the connections and starts dialing the peers this
    /// node is responsible for. Must be called inside a tokio runtime.
    pub fn build(self) -> Result<Manager, ConfigError> {
        self.cfg.validate()?;
        if !self.route.starts_with('/') {
            return Err(ConfigError::InvalidRoute(self.route));
        }
        let auth = self.auth.ok_or(ConfigError::Limit {
            name: "auth",
            reason: "an authentication provider is required",
        })?;
        if let Some(p) = auth.credential_problem() {
            return Err(ConfigError::Credentials(p));
        }
        let mut targets = HashMap::new();
        // Each address (host:port, default ports filled in) and the first string naming it.
        let mut addresses: HashMap<String, &str> = HashMap::new();
        for h in &self.hosts {
            let t = Target::try_parse(h)?;
            if t.tls && self.tls.is_none() && self.dialer.is_none() {
                return Err(ConfigError::TlsRequired(h.clone()));
            }
            if let Some(first) = addresses.insert(t.address(), h) {
                return Err(if first == h {
                    ConfigError::DuplicateHost(h.clone())
                } else {
                    ConfigError::SameAddress {
                        first: first.to_string(),
                        second: h.clone(),
                        address: t.address(),
                    }
                });
            }
            targets.insert(h.clone(), t);
        }
        let count = self.hosts.iter().filter(|h| **h == self.local).count();
        if count != 1 {
            // Say why the local host is not found, if its string alone tells.
            let local = Target::try_parse(&self.local)?;
            if let Some(listed) = addresses.get(&local.address()) {
                return Err(ConfigError::LocalHostSpelling {
                    local: self.local,
                    listed: listed.to_string(),
                });
            }
            return Err(ConfigError::LocalHost {
                local: self.local,
                count,
            });
        }
        let local_tls = targets.get(&self.local).is_some_and(|t| t.tls);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::Limit {
                name: "runtime",
                reason: "Manager::build must be called inside a tokio runtime",
            });
        }
        let dialer = self
            .dialer
            .unwrap_or_else(|| Arc::new(TcpDialer::new(self.tls.clone())));
        let common = Arc::new(Common::new(
            Arc::from(self.local.as_str()),
            self.hosts.clone(),
            self.route,
            auth,
            self.cfg,
            dialer,
            local_tls,
            self.observer,
        ));
        let mut conns = HashMap::new();
        for h in &self.hosts {
            if *h == self.local {
                continue;
            }
            let dials = should_dial(&self.local, h);
            let t = targets
                .remove(h)
                .ok_or_else(|| ConfigError::InvalidHost(h.clone()))?;
            conns.insert(
                h.clone(),
                Arc::new(ConnShared::new(common.clone(), h, t, dials)),
            );
        }
        for c in conns.values() {
            if c.dials {
                tokio::spawn(dial_loop(c.clone()));
            } else {
                tokio::spawn(await_dialer(c.clone()));
            }
        }
        let conns = Arc::new(conns);
        let endpoint = Arc::new(Endpoint {
            route: common.route.clone(),
            local: common.local.clone(),
            auth: common.auth.clone(),
            handshake_timeout: common.cfg.handshake_timeout,
            connect_timeout: common.cfg.connect_timeout,
            permits: common.handshake_permits.clone(),
            per_source: Arc::new(SourceLimit::new(
                common.cfg.max_pending_handshakes_per_source,
            )),
            handler: Arc::new(Acceptor::new(common.clone(), conns.clone())),
        });
        Ok(Manager {
            shared: Arc::new(ManagerShared {
                common,
                conns,
                tls: self.tls,
                endpoint,
                front_door: Arc::default(),
            }),
        })
    }
}

/// The grid of one node. Cheap to clone; [`Manager::shutdown`] stops it.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use nodegrid::{auth::Auth, handler::Request, Manager, RemoteError};
///
/// let hosts = ["http://127.0.0.1:9001", "http://127.0.0.1:9002"];
/// let mgr = Manager::builder("http://127.0.0.1:9001", hosts)
///     .auth(Auth::minio_jwt("access", "secret-key"))
///     .build()?;
/// mgr.register_single(78, |req: Request| async move { Ok::<_, RemoteError>(req.bytes()) })?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// tokio::spawn({ let mgr = mgr.clone(); async move { mgr.serve(listener).await } });
/// let peer = mgr.connection("http://127.0.0.1:9002")?;
/// let reply: Bytes = peer.request(78, "ping").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    pub(crate) shared: Arc<ManagerShared>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("local", &self.shared.common.local)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Starts building a manager for `local` in a cluster of `hosts` (which must contain
    /// `local` exactly once). Host strings are `http://host:port` or `https://host:port` and
    /// must be byte-identical on every node.
    pub fn builder<I, S>(local: impl Into<String>, hosts: I) -> ManagerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ManagerBuilder {
            local: local.into(),
            hosts: hosts.into_iter().map(Into::into).collect(),
            route: DEFAULT_ROUTE.to_string(),
            auth: None,
            tls: None,
            cfg: GridConfig::default(),
            dialer: None,
            observer: None,
        }
    }

    /// The local host string.
    pub fn local(&self) -> &str {
        &self.shared.common.local
    }

    /// This process's instance ID (a UUID, new on every start).
    pub fn instance_id(&self) -> [u8; 16] {
        self.shared.common.instance_id
    }

    /// The configuration in force.
    pub fn config(&self) -> &GridConfig {
        &self.shared.common.cfg
    }

    /// The connection to `host`.
    pub fn connection(&self, host: &str) -> Result<Connection, Error> {
        self.shared
            .conns
            .get(host)
            .map(|c| Connection { inner: c.clone() })
            .ok_or_else(|| Error::UnknownHost(host.to_string()))
    }

    /// Every connection, in host-list order.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared
            .common
            .hosts
            .iter()
            .filter_map(|h| self.shared.conns.get(h))
            .map(|c| Connection { inner: c.clone() })
            .collect()
    }

    /// Waits until every connection is live, at most `timeout` in total.
    pub async fn wait_all_connected(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        for c in self.connections() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            c.wait_connected(left).await?;
        }
        Ok(())
    }

    /// Registers a single-request handler (no name, no subroute; see
    /// [`Manager::register_single_with`]).
    pub fn register_single(&self, id: HandlerId, h: impl SingleHandler) -> Result<(), ConfigError> {
        self.register_single_with(id, SingleSpec::new(), h)
    }

    /// Registers a single-request handler under a subroute.
    pub fn register_single_subroute(
        &self,
        id: HandlerId,
        subroute: &str,
        h: impl SingleHandler,
    ) -> Result<(), ConfigError> {
        self.register_single_with(id, SingleSpec::new().subroute(subroute), h)
    }

    /// Registers a single-request handler with a name and/or subroute.
    ///
    /// ```no_run
    /// # fn f(mgr: &nodegrid::Manager) -> Result<(), nodegrid::ConfigError> {
    /// use nodegrid::{handler::Request, RemoteError, SingleSpec};
    /// mgr.register_single_with(12, SingleSpec::new().name("kv.get"), |r: Request| async move {
    ///     Ok::<_, RemoteError>(r.bytes())
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// Fails for handler 0, for a name that is empty or has control characters, and for a
    /// second registration of the same ID (and subroute).
    pub fn register_single_with(
        &self,
        id: HandlerId,
        spec: SingleSpec,
        h: impl SingleHandler,
    ) -> Result<(), ConfigError> {
        self.shared.common.registry.add_single(
            id,
            spec.subroute.as_deref(),
            spec.name.as_deref(),
            Arc::new(h),
        )
    }

    /// Registers a streaming handler; the spec gives its capacities, subroute and name.
    /// Fails as [`Manager::register_single_with`] does.
    pub fn register_stream(
        &self,
        id: HandlerId,
        spec: StreamSpec,
        h: impl StreamHandler,
    ) -> Result<(), ConfigError> {
        let entry = StreamEntry {
            handler: Arc::new(h),
            subroute: spec.subroute.as_deref().map(Arc::from),
            name: spec.name.as_deref().map(Arc::from),
            in_capacity: spec.in_capacity,
            out_capacity: spec.out_capacity,
            with_payload: spec.with_payload,
            running: Arc::default(),
            max_running: spec.max_concurrent,
        };
        self.shared
            .common
            .registry
            .add_stream(id, spec.subroute.as_deref(), entry)
    }

    /// The upgrade endpoint as a hyper/tower service, to mount at the route path.
    pub fn service(&self) -> GridService {
        GridService::new(self.shared.endpoint.clone())
    }

    /// An axum router serving the upgrade endpoint at the route path; merge it into yours.
    pub fn router(&self) -> axum::Router {
        axum::Router::new().route_service(&self.shared.common.route, self.service())
    }

    /// A front door for this node's port: the grid's route, this manager's TLS (reloadable),
    /// the handshake limits of its [`GridConfig`] (`handshake_timeout`,
    /// `max_pending_handshakes` as the cap on unauthenticated connections) and the other
    /// [`FrontDoorConfig`] defaults, stopping at [`Manager::shutdown`]. Merge other routes
    /// into it (the REST routes, your own) to serve them on the same port with the same
    /// protections; its counters appear in [`Manager::stats`].
    pub fn front_door(&self) -> FrontDoor {
        let shared = &self.shared;
        let cfg = &shared.common.cfg;
        let limits = FrontDoorConfig {
            handshake_timeout: cfg.handshake_timeout,
            max_unauthenticated: cfg.max_pending_handshakes,
            ..FrontDoorConfig::default()
        };
        let mut door = FrontDoor::new(self.router())
            .config(limits)
            .shutdown_on(shared.common.shutdown.clone())
            .with_counters(shared.front_door.clone());
        if let Some(tls) = &shared.tls {
            door = door.tls(tls.clone());
        }
        door
    }

    /// Accepts connections on `listener` (TLS if configured) until shutdown, through
    /// [`Manager::front_door`].
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        self.front_door().serve(listener).await
    }

    /// A statistics snapshot of every connection.
    pub fn stats(&self) -> ManagerStats {
        let connections: Vec<_> = self.connections().iter().map(|c| c.stats()).collect();
        let connected = connections.iter().filter(|c| c.connected).count();
        ManagerStats {
            local: self.local().to_string(),
            front_door: self.shared.front_door.snapshot(),
            connected,
            disconnected: connections.len() - connected,
            connections,
        }
    }

    /// Stops dialing and accepting, and ends every session: calls in flight fail with
    /// [`Error::Disconnected`], new calls with [`Error::Shutdown`].
    pub fn shutdown(&self) {
        self.shared
            .common
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.common.shutdown.cancel();
        for c in self.shared.conns.values() {
            if let Some(s) = c.session.load_full() {
                s.end("manager shut down");
            }
            c.state.send_replace(ConnState::Shutdown);
        }
    }
}

impl From<&Manager> for GridService {
    fn from(m: &Manager) -> GridService {
        m.service()
    }
}
