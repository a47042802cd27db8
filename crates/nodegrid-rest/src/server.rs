//! The server side: named REST handlers behind `POST <prefix>/<version>/<method>`, checked with
//! the same [`Auth`] as the grid, exposed as an axum [`Router`] the node merges into its own
//! HTTP server (next to the grid endpoint and anything else).
//!
//! A handler gets the query parameters and the request body as a stream, and answers with a
//! status and a streamed body; neither side is buffered whole. Authentication runs before the
//! handler (403 with the reason on failure), so handlers never see unauthenticated requests.

use crate::builtin;
use crate::handler::{Handler, HandlerError, RestRequest};
use crate::route::{
    check_method_name, normalize_prefix, valid_segment, DEFAULT_PREFIX, DEFAULT_VERSION,
    HEALTH_METHOD,
};
use crate::RestError;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use nodegrid::auth::{Auth, TIME_HEADER};
use nodegrid::transport::Admission;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

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
        self.handler(builtin::SINK_METHOD, builtin::sink)
            .handler(builtin::SOURCE_METHOD, builtin::source)
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<RestServer, RestError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(RestError::Config(e));
        }
        if let Some(p) = self.auth.credential_problem() {
            return Err(RestError::Config(p.to_string()));
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
                    match check_auth(&auth, &req) {
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
        if let Err(refusal) = check_auth(&self.auth, &req) {
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
        let request = RestRequest::new(method, query, headers, body);
        match handler.call(request).await {
            Ok(reply) => reply.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// HTTP-level authentication (PROTOCOL.md §2.4, check A); the error response is 403 with the
/// reason as text. A request that passes marks its connection authenticated at the front door
/// (it then no longer counts as a connection that has yet to authenticate).
fn check_auth(auth: &Auth, req: &Request) -> Result<(), HandlerError> {
    let headers = req.headers();
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    auth.check_http(
        get(http::header::AUTHORIZATION.as_str()),
        get(TIME_HEADER),
        SystemTime::now(),
    )
    .map_err(|e| HandlerError::new(StatusCode::FORBIDDEN, e.to_string()))?;
    if let Some(a) = Admission::of(req) {
        a.authenticated();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::RestReply;

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
        assert_eq!(
            RestServer::builder(Auth::shared_token(""))
                .build()
                .err()
                .map(|e| e.to_string()),
            Some(
                "invalid configuration: the shared token is empty (Auth::shared_token(\"\")): \
                 give every node the same non-empty token"
                    .into()
            )
        );
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
