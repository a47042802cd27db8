//! The per-peer client: calls, offline detection with a background health check, and stats.
//!
//! State is small on purpose: one `watch` channel holds "online", a network error flips it to
//! offline (only the call that flips it starts the health checker), and the health checker is
//! the only thing that flips it back. While offline, calls are refused before any I/O, so a
//! dead peer costs callers nothing but a branch.

use crate::body::{BodyOwner, OutBody, RequestBody, ResponseBody};
use crate::connect::Connector;
use crate::error::BoxError;
use crate::route::{
    check_method_name, normalize_prefix, DEFAULT_PREFIX, DEFAULT_VERSION, HEALTH_METHOD,
};
use crate::stats::{ErrorKind, RestStats, StatsCell};
use crate::tls::ClientTls;
use crate::RestError;
use http::{HeaderMap, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use nodegrid::auth::{time_header_value, Auth, TIME_HEADER};
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How much of an error answer's body the client keeps as the error message: 4 KiB.
pub const MAX_ERROR_MESSAGE: usize = 4096;
/// Default deadline of a call, for the whole exchange (request sent and response read): 15
/// minutes, because the REST path carries multi-GiB bodies. Set a shorter one per call for
/// small requests.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default limit for TCP connect plus TLS handshake: 2 s, as for the grid's dial.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default limit for one health check: 1 s.
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Default first wait before a health check after the peer went offline: 200 ms; each
/// following wait doubles.
pub const DEFAULT_HEALTH_BACKOFF_START: Duration = Duration::from_millis(200);
/// Default cap of the health check backoff: 5 s, so a peer that comes back is seen within
/// about 6 s (cap plus check timeout).
pub const DEFAULT_HEALTH_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Default time an idle pooled connection is kept: 60 s, below the server's header read
/// timeout so the client closes idle connections first.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of idle connections kept per peer.
pub const DEFAULT_POOL_MAX_IDLE: usize = 16;

/// The wait before health check number `attempt` (0-based): `start · 2^attempt`, capped at `max`.
pub fn health_backoff(start: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    start.checked_mul(factor).unwrap_or(max).min(max)
}

#[derive(Debug, Clone)]
struct Timing {
    call_timeout: Duration,
    health_timeout: Duration,
    backoff_start: Duration,
    backoff_max: Duration,
}

/// Builds a [`RestClient`]; every setting has a default.
#[derive(Debug, Clone)]
pub struct RestClientBuilder {
    endpoint: String,
    auth: Auth,
    prefix: String,
    version: String,
    tls: Option<ClientTls>,
    call_timeout: Duration,
    dial_timeout: Duration,
    health_timeout: Duration,
    backoff_start: Duration,
    backoff_max: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle: usize,
}

impl RestClientBuilder {
    /// The path prefix of the peer's REST server (default [`DEFAULT_PREFIX`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The API version segment (default [`DEFAULT_VERSION`]).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// TLS settings; required for `https://` endpoints.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Deadline of calls made with [`RestClient::call`] (default [`DEFAULT_CALL_TIMEOUT`]).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Limit for connecting (TCP plus TLS) (default [`DEFAULT_DIAL_TIMEOUT`]).
    pub fn dial_timeout(mut self, d: Duration) -> Self {
        self.dial_timeout = d;
        self
    }

    /// Limit for one health check (default [`DEFAULT_HEALTH_CHECK_TIMEOUT`]).
    pub fn health_check_timeout(mut self, d: Duration) -> Self {
        self.health_timeout = d;
        self
    }

    /// First wait and cap of the health check backoff (defaults
    /// [`DEFAULT_HEALTH_BACKOFF_START`], [`DEFAULT_HEALTH_BACKOFF_MAX`]).
    pub fn health_check_backoff(mut self, start: Duration, max: Duration) -> Self {
        self.backoff_start = start;
        self.backoff_max = max;
        self
    }

    /// How long idle keep-alive connections are kept (default [`DEFAULT_POOL_IDLE_TIMEOUT`]).
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.pool_idle_timeout = d;
        self
    }

    /// How many idle keep-alive connections are kept (default [`DEFAULT_POOL_MAX_IDLE`]).
    pub fn pool_max_idle(mut self, n: usize) -> Self {
        self.pool_max_idle = n;
        self
    }

    /// Checks the configuration and creates the client. The peer starts online. Must be
    /// called within a Tokio runtime's context for the client to be used.
    pub fn build(self) -> Result<RestClient, RestError> {
        if let Some(p) = self.auth.credential_problem() {
            return Err(RestError::Config(p.to_string()));
        }
        let bad = |m: String| RestError::Config(format!("endpoint {:?}: {m}", self.endpoint));
        let uri: Uri = self.endpoint.parse().map_err(|e| bad(format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("scheme must be http or https".into())),
        };
        let host = uri.host().ok_or_else(|| bad("no host".into()))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("must not have a path or query".into()));
        }
        if self.backoff_start.is_zero() || self.backoff_max < self.backoff_start {
            return Err(RestError::Config(
                "health check backoff: start must be > 0 and max >= start".into(),
            ));
        }
        let prefix = normalize_prefix(&self.prefix).map_err(RestError::Config)?;
        if check_method_name(&self.version).is_err() {
            return Err(RestError::Config(format!(
                "version {:?} is not a valid path segment",
                self.version
            )));
        }
        let tls = match (https, self.tls) {
            (true, Some(tls)) => {
                let name = ServerName::try_from(
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                )
                .map_err(|e| bad(format!("host is not a valid TLS server name: {e}")))?;
                Some((tokio_rustls::TlsConnector::from(tls.config), name))
            }
            (true, None) => {
                return Err(bad(
                    "https needs TLS settings (RestClientBuilder::tls)".into()
                ))
            }
            (false, Some(_)) => return Err(bad("TLS settings given for an http endpoint".into())),
            (false, None) => None,
        };
        let peer = self.endpoint.trim_end_matches('/').to_string();
        let stats = Arc::new(StatsCell::default());
        let connector = Connector {
            tls,
            dial_timeout: self.dial_timeout,
            stats: Some(stats.clone()),
        };
        let health_connector = Connector {
            stats: None,
            ..connector.clone()
        };
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle)
            .build(connector);
        // Health checks use their own connections and keep none, so their dials never show
        // in the caller's stats and never linger.
        let health_http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(health_connector);
        let (online, _) = watch::channel(true);
        Ok(RestClient {
            inner: Arc::new(Inner {
                base: format!("{peer}{prefix}/{}", self.version),
                peer,
                auth: self.auth,
                http,
                health_http,
                timing: Timing {
                    call_timeout: self.call_timeout,
                    health_timeout: self.health_timeout,
                    backoff_start: self.backoff_start,
                    backoff_max: self.backoff_max,
                },
                stats,
                online,
                health_task: Mutex::new(None),
            }),
        })
    }
}

pub(crate) struct Inner {
    pub(crate) peer: String,
    /// `<endpoint><prefix>/<version>`, the URL methods are appended to.
    base: String,
    auth: Auth,
    http: Client<Connector, OutBody>,
    health_http: Client<Connector, OutBody>,
    timing: Timing,
    pub(crate) stats: Arc<StatsCell>,
    online: watch::Sender<bool>,
    health_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.health_task.get_mut().ok().and_then(Option::take) {
            t.abort();
        }
    }
}

impl Inner {
    fn fail(&self, kind: ErrorKind, err: RestError) -> RestError {
        self.stats.error(kind);
        err
    }

    /// Records a broken connection and marks the peer offline.
    pub(crate) fn network_failure(self: &Arc<Self>, source: BoxError) -> RestError {
        self.stats.error(ErrorKind::Network);
        self.mark_offline();
        RestError::Network {
            peer: self.peer.clone(),
            source,
        }
    }

    fn mark_offline(self: &Arc<Self>) {
        let stats = &self.stats;
        let changed = self.online.send_if_modified(|online| {
            let was = std::mem::replace(online, false);
            if was {
                stats.went_offline();
            }
            was
        });
        if changed {
            tracing::warn!(peer = %self.peer, "REST peer marked offline");
            let task = tokio::spawn(health_loop(Arc::downgrade(self)));
            if let Ok(mut slot) = self.health_task.lock() {
                *slot = Some(task);
            }
        }
    }

    fn mark_online(&self) {
        let stats = &self.stats;
        let changed = self.online.send_if_modified(|online| {
            let was = std::mem::replace(online, true);
            if !was {
                stats.went_online();
            }
            !was
        });
        if changed {
            tracing::info!(peer = %self.peer, "REST peer back online");
        }
    }

    fn auth_headers(&self, req: http::request::Builder) -> http::request::Builder {
        let value = format!("Bearer {}", self.auth.token());
        let req = match http::HeaderValue::try_from(value.as_str()) {
            Ok(mut v) => {
                // Never shown by `Debug` of the request or its headers.
                v.set_sensitive(true);
                req.header(http::header::AUTHORIZATION, v)
            }
            // Not a valid header value: the request fails to build, as before.
            Err(_) => req.header(http::header::AUTHORIZATION, value),
        };
        req.header(TIME_HEADER, time_header_value(SystemTime::now()))
    }

    /// One health check: `true` if the peer answered anything at all over HTTP within the
    /// timeout (the network path works; what the peer thinks of us is the calls' business).
    async fn health_check_once(&self) -> bool {
        let req = self
            .auth_headers(Request::get(format!("{}/{HEALTH_METHOD}", self.base)))
            .body(OutBody::new(RequestBody::empty(), None, Arc::default()));
        let Ok(req) = req else { return false };
        matches!(
            tokio::time::timeout(self.timing.health_timeout, self.health_http.request(req)).await,
            Ok(Ok(_))
        )
    }
}

impl BodyOwner for Inner {
    fn peer(&self) -> &str {
        &self.peer
    }

    fn stats(&self) -> &StatsCell {
        &self.stats
    }

    fn connection_broken(self: Arc<Self>, source: BoxError) -> RestError {
        self.network_failure(source)
    }
}

/// Waits with backoff and checks the peer until it answers, then marks it online. Holds only
/// a weak reference, so dropping the client ends it.
async fn health_loop(client: Weak<Inner>) {
    let mut attempt: u32 = 0;
    loop {
        let delay = match client.upgrade() {
            Some(c) => health_backoff(c.timing.backoff_start, c.timing.backoff_max, attempt),
            None => return,
        };
        tokio::time::sleep(delay).await;
        let Some(c) = client.upgrade() else { return };
        if c.health_check_once().await {
            c.mark_online();
            return;
        }
        attempt = attempt.saturating_add(1);
    }
}

/// A successful answer (2xx): status, headers and the body as a stream.
#[derive(Debug)]
pub struct RestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: ResponseBody,
}

impl RestResponse {
    /// The status (always a success status).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body, to read chunk by chunk.
    pub fn body_mut(&mut self) -> &mut ResponseBody {
        &mut self.body
    }

    /// Takes the body.
    pub fn into_body(self) -> ResponseBody {
        self.body
    }

    /// Reads the whole body (at most `limit` bytes); see [`ResponseBody::bytes`].
    pub async fn bytes(self, limit: usize) -> Result<bytes::Bytes, RestError> {
        self.body.bytes(limit).await
    }
}

/// A client for one peer's REST server. Cheap to clone (clones share the connection pool,
/// online state and stats).
///
/// ```no_run
/// # async fn demo() -> Result<(), nodegrid_rest::RestError> {
/// use nodegrid::auth::Auth;
/// use nodegrid_rest::{RequestBody, RestClient};
/// use std::time::Duration;
///
/// let client = RestClient::builder("http://10.0.0.2:9000", Auth::shared_token("secret"))
///     .call_timeout(Duration::from_secs(60))
///     .build()?;
/// let mut resp = client.call("source", &[("size", "1048576")], RequestBody::empty()).await?;
/// let mut n = 0;
/// while let Some(chunk) = resp.body_mut().chunk().await {
///     n += chunk?.len();
/// }
/// assert_eq!(n, 1 << 20);
/// let stats = client.stats(); // serializable, for the node's stats snapshot
/// println!("{} calls, online: {}", stats.calls, client.is_online());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RestClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("peer", &self.inner.peer)
            .field("online", &self.is_online())
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// Starts configuring a client for the peer at `endpoint` (`http://host:port` or
    /// `https://host:port`), authenticating with `auth`.
    pub fn builder(endpoint: impl Into<String>, auth: Auth) -> RestClientBuilder {
        RestClientBuilder {
            endpoint: endpoint.into(),
            auth,
            prefix: DEFAULT_PREFIX.to_string(),
            version: DEFAULT_VERSION.to_string(),
            tls: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            health_timeout: DEFAULT_HEALTH_CHECK_TIMEOUT,
            backoff_start: DEFAULT_HEALTH_BACKOFF_START,
            backoff_max: DEFAULT_HEALTH_BACKOFF_MAX,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle: DEFAULT_POOL_MAX_IDLE,
        }
    }

    /// The peer's endpoint.
    pub fn peer(&self) -> &str {
        &self.inner.peer
    }

    /// Whether the peer is considered online.
    pub fn is_online(&self) -> bool {
        *self.inner.online.borrow()
    }

    /// A receiver that sees every online (`true`) / offline (`false`) transition.
    pub fn watch_online(&self) -> watch::Receiver<bool> {
        self.inner.online.subscribe()
    }

    /// A snapshot of this peer's statistics.
    pub fn stats(&self) -> RestStats {
        self.inner
            .stats
            .snapshot(&self.inner.peer, self.is_online())
    }

    /// Calls `method` with the client's default deadline; see
    /// [`call_with_deadline`](Self::call_with_deadline).
    pub async fn call(
        &self,
        method: &str,
        query: &[(&str, &str)],
        body: impl Into<RequestBody>,
    ) -> Result<RestResponse, RestError> {
        self.call_with_deadline(method, query, body, self.inner.timing.call_timeout)
            .await
    }

    /// Calls `method` with `query` parameters and `body`. Returns once the peer has answered
    /// with a success status; the body is then read from the [`RestResponse`]. `deadline`
    /// bounds the whole exchange, including reading the response body.
    ///
    /// Fails at once with [`RestError::PeerOffline`] while the peer is offline. A non-success
    /// answer is [`RestError::Auth`] (403) or [`RestError::Remote`] with the peer's message.
    pub async fn call_with_deadline(
        &self,
        method: &str,
        query: &[(&str, &str)],
        body: impl Into<RequestBody>,
        deadline: Duration,
    ) -> Result<RestResponse, RestError> {
        let inner = &self.inner;
        let peer = || inner.peer.clone();
        inner.stats.calls.fetch_add(1, Ordering::Relaxed);
        if !self.is_online() {
            return Err(inner.fail(ErrorKind::Offline, RestError::PeerOffline { peer: peer() }));
        }
        let invalid = |reason: String| {
            inner.fail(
                ErrorKind::Other,
                RestError::InvalidRequest {
                    peer: peer(),
                    reason,
                },
            )
        };
        check_method_name(method).map_err(invalid)?;
        let mut url = format!("{}/{method}", inner.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query)
                    .finish(),
            );
        }
        let failed = Arc::new(AtomicBool::new(false));
        let req = inner
            .auth_headers(Request::post(url))
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(OutBody::new(
                body.into(),
                Some(inner.stats.clone()),
                failed.clone(),
            ))
            .map_err(|e| invalid(e.to_string()))?;

        let start = Instant::now();
        let deadline_at = start.checked_add(deadline);
        let fut = inner.http.request(req);
        let result = match deadline_at {
            Some(at) => match tokio::time::timeout_at(at, fut).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(inner.fail(
                        ErrorKind::Deadline,
                        RestError::Deadline {
                            peer: peer(),
                            deadline,
                        },
                    ));
                }
            },
            None => fut.await,
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) if failed.load(Ordering::Relaxed) => {
                return Err(inner.fail(
                    ErrorKind::Other,
                    RestError::RequestBody {
                        peer: peer(),
                        source: Box::new(e),
                    },
                ));
            }
            Err(e) if e.is_connect() => {
                let err = inner.fail(
                    ErrorKind::Dial,
                    RestError::Dial {
                        peer: peer(),
                        source: Box::new(e),
                    },
                );
                inner.mark_offline();
                return Err(err);
            }
            Err(e) => return Err(inner.network_failure(Box::new(e))),
        };
        inner.stats.ttfb(start.elapsed());
        let (parts, incoming) = resp.into_parts();
        let sleep = deadline_at.map(|at| Box::pin(tokio::time::sleep_until(at)));
        let body = ResponseBody::new(incoming, sleep, deadline, inner.clone());
        if parts.status.is_success() {
            return Ok(RestResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            });
        }
        let message = body.message(MAX_ERROR_MESSAGE).await;
        Err(if parts.status == StatusCode::FORBIDDEN {
            inner.fail(
                ErrorKind::Auth,
                RestError::Auth {
                    peer: peer(),
                    message,
                },
            )
        } else {
            inner.fail(
                ErrorKind::Remote,
                RestError::Remote {
                    peer: peer(),
                    status: parts.status.as_u16(),
                    message,
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_start_and_is_capped() {
        let s = Duration::from_millis(200);
        let m = Duration::from_secs(5);
        let seq: Vec<u128> = (0..8)
            .map(|a| health_backoff(s, m, a).as_millis())
            .collect();
        assert_eq!(seq, vec![200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(health_backoff(s, m, u32::MAX), m);
    }

    #[test]
    fn builder_checks_endpoint() {
        let auth = Auth::shared_token("t");
        let b = |e: &str| {
            RestClient::builder(e, auth.clone())
                .build()
                .map(|c| c.inner.base.clone())
        };
        assert_eq!(
            b("http://127.0.0.1:9000").ok().as_deref(),
            Some("http://127.0.0.1:9000/nodegrid/rest/v1")
        );
        assert_eq!(
            b("http://[::1]:9000/").ok().as_deref(),
            Some("http://[::1]:9000/nodegrid/rest/v1")
        );
        assert!(b("ftp://x:1").is_err());
        assert!(b("http://x:1/path").is_err());
        assert!(b("https://x:1").is_err(), "https without TLS settings");
        assert!(b("not a url").is_err());
        assert!(RestClient::builder("http://x:1", auth.clone())
            .health_check_backoff(Duration::ZERO, Duration::ZERO)
            .build()
            .is_err());
        assert_eq!(
            RestClient::builder("http://x:1", Auth::minio_jwt("", "secret"))
                .build()
                .err()
                .map(|e| e.to_string()),
            Some(
                "invalid configuration: the access key is empty (Auth::minio_jwt(\"\", \
                 secret_key)): give every node the cluster's access key"
                    .into()
            )
        );
    }
}
