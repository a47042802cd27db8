//! The server side: named REST handlers behind `POST <prefix>/<version>/<method>`, checked with
//! the same [`Auth`] as the grid, exposed as an axum [`Router`] the node merges into its own
//! HTTP server (next to the grid endpoint and anything else).
//!
//! A handler gets the query parameters and the request body as a stream, and answers with a
//! status and a streamed body; neither side is buffered whole. Authentication runs before the
//! handler (403 with the reason on failure), so handlers never see unauthenticated requests.

use crate::error::BoxError;
use crate::{RestError, DEFAULT_PREFIX, DEFAULT_VERSION, HEALTH_METHOD};
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::Body as _;
use nodegrid::auth::{Auth, TIME_HEADER};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A REST method implementation. Implemented for every
/// `Fn(RestRequest) -> impl Future<Output = Result<RestReply, HandlerError>>` that is
/// `Send + Sync + 'static`.
pub trait Handler: Send + Sync + 'static {
    /// Serves one request.
    fn call(&self, req: RestRequest) -> BoxFuture<Result<RestReply, HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(RestRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<RestReply, HandlerError>> + Send + 'static,
{
    fn call(&self, req: RestRequest) -> BoxFuture<Result<RestReply, HandlerError>> {
        Box::pin(self(req))
    }
}

/// An authenticated request to a REST method.
#[derive(Debug)]
pub struct RestRequest {
    method: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: RequestStream,
}

impl RestRequest {
    /// The method name (the last path segment).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The first value of query parameter `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All query parameters, decoded, in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request body, to read chunk by chunk.
    pub fn body_mut(&mut self) -> &mut RequestStream {
        &mut self.body
    }

    /// Takes the request body.
    pub fn into_body(self) -> RequestStream {
        self.body
    }
}

/// An error reading a request body (the client went away, or the body was malformed).
#[derive(Debug, thiserror::Error)]
#[error("request body: {0}")]
pub struct BodyError(#[source] pub BoxError);

/// A streamed request body on the server side.
pub struct RequestStream {
    body: Body,
}

impl std::fmt::Debug for RequestStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestStream { .. }")
    }
}

impl RequestStream {
    /// The next chunk, `None` at the end of the body.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        self.next().await
    }
}

impl Stream for RequestStream {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(BodyError(Box::new(e))))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(data)));
                        }
                    }
                    // Trailers and empty chunks carry nothing for the handler.
                }
            }
        }
    }
}

/// A handler's answer: a status (200 by default), headers, and a body that may be streamed.
pub struct RestReply {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

impl std::fmt::Debug for RestReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestReply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl RestReply {
    /// 200 with an empty body.
    pub fn empty() -> RestReply {
        RestReply::bytes(Bytes::new())
    }

    /// 200 with `body` (sent with a `Content-Length`).
    pub fn bytes(body: impl Into<Bytes>) -> RestReply {
        RestReply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Body::from(body.into()),
        }
    }

    /// 200 with a body streamed from `stream` (chunked). An error from the stream aborts the
    /// connection, which the client sees as a network error.
    pub fn stream<S, E>(stream: S) -> RestReply
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        RestReply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Body::from_stream(stream),
        }
    }

    /// Sets the status.
    pub fn with_status(mut self, status: StatusCode) -> RestReply {
        self.status = status;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> RestReply {
        self.headers.append(name, value);
        self
    }
}

impl IntoResponse for RestReply {
    fn into_response(self) -> Response {
        let mut resp = Response::new(self.body);
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// A handler's refusal: a status and a message the client receives in
/// [`RestError::Remote`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct HandlerError {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// The text sent as the body.
    pub message: String,
}

impl HandlerError {
    /// A refusal with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> HandlerError {
        HandlerError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request's parameters or body are invalid.
    pub fn bad_request(message: impl Into<String>) -> HandlerError {
        HandlerError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 500: the handler failed.
    pub fn internal(message: impl Into<String>) -> HandlerError {
        HandlerError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for HandlerError {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

/// Checks a method name: ASCII letters, digits, `-`, `_`, `.`.
pub(crate) fn check_method_name(name: &str) -> Result<(), String> {
    if valid_segment(name) {
        Ok(())
    } else {
        Err(format!(
            "method name {name:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Normalises a path prefix to `/a/b` form and checks its segments.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let segs: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(bad) = segs.iter().find(|s| !valid_segment(s)) {
        return Err(format!(
            "prefix segment {bad:?} is not a valid path segment"
        ));
    }
    Ok(segs.iter().map(|s| format!("/{s}")).collect())
}

/// Builds a [`RestServer`].
pub struct RestServerBuilder {
    auth: Auth,
    prefix: String,
    version: String,
    handlers: BTreeMap<String, Arc<dyn Handler>>,
    errors: Vec<String>,
}

impl RestServerBuilder {
    /// The path prefix (default [`DEFAULT_PREFIX`](crate::DEFAULT_PREFIX)).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The API version segment (default [`DEFAULT_VERSION`](crate::DEFAULT_VERSION)).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Registers `handler` as method `name`. Invalid or duplicate names, and the reserved
    /// name [`HEALTH_METHOD`](crate::HEALTH_METHOD), are reported by [`build`](Self::build).
    pub fn handler(mut self, name: impl Into<String>, handler: impl Handler) -> Self {
        let name = name.into();
        if let Err(e) = check_method_name(&name) {
            self.errors.push(e);
        } else if name == HEALTH_METHOD {
            self.errors
                .push(format!("method name {HEALTH_METHOD:?} is reserved"));
        } else if self
            .handlers
            .insert(name.clone(), Arc::new(handler))
            .is_some()
        {
            self.errors
                .push(format!("method {name:?} registered twice"));
        }
        self
    }

    /// Registers the built-in methods [`SINK_METHOD`](crate::builtin::SINK_METHOD) and
    /// [`SOURCE_METHOD`](crate::builtin::SOURCE_METHOD).
    pub fn with_builtins(self) -> Self {
        self.handler(crate::builtin::SINK_METHOD, crate::builtin::sink)
            .handler(crate::builtin::SOURCE_METHOD, crate::builtin::source)
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<RestServer, RestError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(RestError::Config(e));
        }
        let prefix = normalize_prefix(&self.prefix).map_err(RestError::Config)?;
        if !valid_segment(&self.version) {
            return Err(RestError::Config(format!(
                "version {:?} is not a valid path segment",
                self.version
            )));
        }
        Ok(RestServer {
            auth: self.auth,
            base: format!("{prefix}/{}", self.version),
            handlers: Arc::new(self.handlers),
        })
    }
}

/// A set of REST handlers, ready to be mounted with [`router`](RestServer::router).
///
/// ```
/// use nodegrid::auth::Auth;
/// use nodegrid_rest::{HandlerError, RestReply, RestRequest, RestServer};
///
/// async fn echo_len(mut req: RestRequest) -> Result<RestReply, HandlerError> {
///     let mut n = 0u64;
///     while let Some(chunk) = req.body_mut().chunk().await {
///         n += chunk.map_err(|e| HandlerError::bad_request(e.to_string()))?.len() as u64;
///     }
///     Ok(RestReply::bytes(n.to_string()))
/// }
///
/// let server = RestServer::builder(Auth::shared_token("secret"))
///     .with_builtins()
///     .handler("echo-len", echo_len)
///     .build()
///     .expect("valid configuration");
/// // Mount next to the node's other routes (the grid endpoint, an API, ...).
/// let app: axum::Router = axum::Router::new()
///     .route("/other", axum::routing::get(|| async { "hello" }))
///     .merge(server.router());
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct RestServer {
    auth: Auth,
    base: String,
    handlers: Arc<BTreeMap<String, Arc<dyn Handler>>>,
}

impl std::fmt::Debug for RestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestServer")
            .field("base", &self.base)
            .field("methods", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RestServer {
    /// Starts a configuration authenticated with `auth`.
    pub fn builder(auth: Auth) -> RestServerBuilder {
        RestServerBuilder {
            auth,
            prefix: DEFAULT_PREFIX.to_string(),
            version: DEFAULT_VERSION.to_string(),
            handlers: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    /// The path under which methods are served, e.g. `/nodegrid/rest/v1`.
    pub fn base_path(&self) -> &str {
        &self.base
    }

    /// The routes: `POST <base>/<method>` for each handler, `POST <base>/{unknown}` answering
    /// 404 with a message, and `GET <base>/health` for the client's health check. All of them
    /// check authentication first. Merge the result into the node's router.
    pub fn router(&self) -> Router {
        let methods = {
            let this = self.clone();
            move |req: Request| {
                let this = this.clone();
                async move { this.dispatch(req).await }
            }
        };
        let health = {
            let auth = self.auth.clone();
            move |req: Request| {
                let auth = auth.clone();
                async move {
                    match check_auth(&auth, req.headers()) {
                        Ok(()) => (StatusCode::OK, "ok").into_response(),
                        Err(refusal) => refusal.into_response(),
                    }
                }
            }
        };
        Router::new()
            .route(&format!("{}/{{method}}", self.base), post(methods))
            .route(&format!("{}/{HEALTH_METHOD}", self.base), get(health))
    }

    async fn dispatch(&self, req: Request) -> Response {
        if let Err(refusal) = check_auth(&self.auth, req.headers()) {
            return refusal.into_response();
        }
        let (parts, body) = req.into_parts();
        let method = parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let Some(handler) = self.handlers.get(&method).cloned() else {
            return HandlerError::new(
                StatusCode::NOT_FOUND,
                format!("unknown REST method {method:?}"),
            )
            .into_response();
        };
        let query = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let mut headers = parts.headers;
        // The bearer token is a credential: `Debug` of the request must not show it.
        if let Some(v) = headers.get_mut(http::header::AUTHORIZATION) {
            v.set_sensitive(true);
        }
        let request = RestRequest {
            method,
            query,
            headers,
            body: RequestStream { body },
        };
        match handler.call(request).await {
            Ok(reply) => reply.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// HTTP-level authentication (PROTOCOL.md §2.4, check A); the error response is 403 with the
/// reason as text.
fn check_auth(auth: &Auth, headers: &HeaderMap) -> Result<(), HandlerError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    auth.check_http(
        get(http::header::AUTHORIZATION.as_str()),
        get(TIME_HEADER),
        SystemTime::now(),
    )
    .map_err(|e| HandlerError::new(StatusCode::FORBIDDEN, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prefixes() {
        assert!(check_method_name("sink").is_ok());
        assert!(check_method_name("a.b-c_1").is_ok());
        assert!(check_method_name("").is_err());
        assert!(check_method_name("a/b").is_err());
        assert!(check_method_name("..").is_err());
        assert!(check_method_name("é").is_err());
        assert_eq!(
            normalize_prefix("/minio/peer/").as_deref(),
            Ok("/minio/peer")
        );
        assert_eq!(normalize_prefix("x//y").as_deref(), Ok("/x/y"));
        assert_eq!(normalize_prefix("").as_deref(), Ok(""));
        assert!(normalize_prefix("/a/../b").is_err());
    }

    #[test]
    fn builder_rejects_bad_configuration() {
        let auth = Auth::shared_token("t");
        let ok = |_r: RestRequest| async { Ok(RestReply::empty()) };
        assert!(RestServer::builder(auth.clone())
            .handler("x", ok)
            .build()
            .is_ok());
        assert!(RestServer::builder(auth.clone())
            .handler("x", ok)
            .handler("x", ok)
            .build()
            .is_err());
        assert!(RestServer::builder(auth.clone())
            .handler(HEALTH_METHOD, ok)
            .build()
            .is_err());
        assert!(RestServer::builder(auth.clone())
            .handler("a b", ok)
            .build()
            .is_err());
        assert!(RestServer::builder(auth.clone())
            .version("v/1")
            .build()
            .is_err());
        let s = RestServer::builder(auth)
            .prefix("minio/rest/")
            .version("v2")
            .build();
        assert_eq!(
            s.map(|s| s.base_path().to_string()).ok().as_deref(),
            Some("/minio/rest/v2")
        );
    }
}
