//! One HTTP/1.1 connection per worker, plain or TLS, presenting the client certificate that
//! is current when it dials (mTLS hot reload, LOGGING.md §2.3, §8.5).
//!
//! hyper's low-level `client::conn` API is used directly: the worker owns its connection,
//! re-dials when it closes, and bounds every attempt with `http_timeout` (dial + TLS +
//! request + body drain).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::certs::CertResolver;
use super::proxy::Proxy;

/// TCP connect deadline (Ref: 5 s dial timeout).
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttemptError {
    /// DNS, connect, reset, TLS, closed connection, timeout: marks the target offline.
    Network(String),
    /// A non-2xx answer. 503 counts as network-class (offline).
    Status(u16, String),
}

impl AttemptError {
    pub(crate) fn is_network(&self) -> bool {
        match self {
            AttemptError::Network(_) => true,
            AttemptError::Status(code, _) => *code == 503,
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Network(e) => write!(f, "{e}"),
            AttemptError::Status(403, s) => {
                write!(f, "{s} (403 Forbidden: check the auth_token)")
            }
            AttemptError::Status(code, s) => {
                write!(f, "{s} ({code}: check the endpoint configuration)")
            }
        }
    }
}

fn system_roots() -> &'static Vec<CertificateDer<'static>> {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// Builds the TLS client configuration: system roots plus an optional extra CA, and the
/// reloadable client certificate resolver.
pub(crate) fn tls_config(
    ca_cert: Option<&PathBuf>,
    resolver: Arc<CertResolver>,
    mtls: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(ca) = ca_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("ca_cert {}: {e}", ca.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ca_cert {}: {e}", ca.display()))?;
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("ca_cert {}: {e}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(resolver);
    if mtls {
        // A resumed session keeps the identity of the first handshake, so a rotated client
        // certificate would never be presented. Workers keep their connection alive, so a
        // full handshake only happens on reconnect.
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(cfg))
}

/// The endpoint split into what a request needs.
#[derive(Clone)]
pub(crate) struct Endpoint {
    host: String,
    port: u16,
    authority: HeaderValue,
    path: http::Uri,
    /// The request target through an HTTP proxy (absolute form).
    absolute: http::Uri,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    proxy: Option<Proxy>,
}

impl Endpoint {
    pub(crate) fn new(
        uri: &http::Uri,
        tls: Option<Arc<rustls::ClientConfig>>,
        proxy: Option<Proxy>,
    ) -> Result<Self, String> {
        let host = uri.host().ok_or("endpoint has no host")?;
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = HeaderValue::from_str(uri.authority().map(|a| a.as_str()).unwrap_or(host))
            .map_err(|e| format!("endpoint authority: {e}"))?;
        let path: http::Uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|e| format!("endpoint path: {e}"))?;
        let absolute: http::Uri = format!(
            "{}://{}{}",
            if https { "https" } else { "http" },
            authority.to_str().unwrap_or_default(),
            path
        )
        .parse()
        .map_err(|e| format!("endpoint: {e}"))?;
        let host_plain = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = if https {
            let cfg = tls.ok_or("https endpoint without TLS configuration")?;
            let name = ServerName::try_from(host_plain.clone())
                .map_err(|e| format!("endpoint host `{host_plain}`: {e}"))?;
            Some((TlsConnector::from(cfg), name))
        } else {
            None
        };
        Ok(Endpoint {
            host: host_plain,
            port,
            authority,
            path,
            absolute,
            tls,
            proxy,
        })
    }
}

/// A worker's connection to the endpoint.
pub(crate) struct Conn {
    endpoint: Endpoint,
    sender: Option<SendRequest<Full<Bytes>>>,
    generation: u64,
    resolver: Option<Arc<CertResolver>>,
}

impl Conn {
    pub(crate) fn new(endpoint: Endpoint, resolver: Option<Arc<CertResolver>>) -> Self {
        Conn {
            endpoint,
            sender: None,
            generation: 0,
            resolver,
        }
    }

    async fn dial(&mut self) -> Result<SendRequest<Full<Bytes>>, AttemptError> {
        let net = |e: String| AttemptError::Network(e);
        let ep = &self.endpoint;
        let tcp = match &ep.proxy {
            None => tokio::time::timeout(
                DIAL_TIMEOUT,
                TcpStream::connect((ep.host.as_str(), ep.port)),
            )
            .await
            .map_err(|_| net("dial timeout".into()))?
            .map_err(|e| net(format!("connect: {e}")))?,
            Some(p) => {
                let dial = async {
                    let mut tcp = p
                        .connect()
                        .await
                        .map_err(|e| format!("connect to proxy: {e}"))?;
                    if ep.tls.is_some() {
                        p.tunnel(&mut tcp, &ep.host, ep.port).await?;
                    }
                    Ok::<_, String>(tcp)
                };
                tokio::time::timeout(DIAL_TIMEOUT, dial)
                    .await
                    .map_err(|_| net("proxy dial timeout".into()))?
                    .map_err(net)?
            }
        };
        let _ = tcp.set_nodelay(true);
        match &self.endpoint.tls {
            None => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| net(format!("http handshake: {e}")))?;
                tokio::spawn(crate::internal::internal(async move {
                    let _ = conn.await;
                }));
                Ok(sender)
            }
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| net(format!("tls: {e}")))?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| net(format!("http handshake: {e}")))?;
                tokio::spawn(crate::internal::internal(async move {
                    let _ = conn.await;
                }));
                Ok(sender)
            }
        }
    }

    /// One POST of `body`; the caller bounds it with the http timeout.
    pub(crate) async fn post(
        &mut self,
        body: Bytes,
        headers: &HeaderMap,
    ) -> Result<(), AttemptError> {
        if let Some(r) = &self.resolver {
            let g = r.generation();
            if g != self.generation {
                // A new client certificate: new handshakes must use it.
                self.sender = None;
                self.generation = g;
            }
        }
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.dial().await?,
        };
        if sender.ready().await.is_err() {
            sender = self.dial().await?;
        }
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        let proxy_auth = match (&self.endpoint.proxy, &self.endpoint.tls) {
            // Plain HTTP through a proxy: the request goes to the proxy in absolute form.
            (Some(p), None) => {
                *req.uri_mut() = self.endpoint.absolute.clone();
                p.auth()
            }
            _ => {
                *req.uri_mut() = self.endpoint.path.clone();
                None
            }
        };
        let h = req.headers_mut();
        h.insert(http::header::HOST, self.endpoint.authority.clone());
        if let Some(a) = proxy_auth {
            h.insert(http::header::PROXY_AUTHORIZATION, a.clone());
        }
        for (k, v) in headers {
            h.insert(k.clone(), v.clone());
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| AttemptError::Network(format!("request: {e}")))?;
        let status = resp.status();
        // Drain and discard the body so the connection can be reused.
        let drained = resp.into_body().collect().await;
        if drained.is_ok() {
            self.sender = Some(sender);
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(AttemptError::Status(
                status.as_u16(),
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ),
            ))
        }
    }

    /// Drops the pooled connection (after a failed or timed-out attempt).
    pub(crate) fn reset(&mut self) {
        self.sender = None;
    }
}

/// Header names sent with each request (LOGGING.md §2.3.1). The spec's `x-minio-*` names are
/// kept so receivers written for the reference keep working.
pub(crate) mod headers {
    use http::header::HeaderName;
    /// Entries in this request.
    pub(crate) const PAYLOAD_COUNT: HeaderName =
        HeaderName::from_static("x-minio-webhook-payload-count");
    /// Server version.
    pub(crate) const VERSION: HeaderName = HeaderName::from_static("x-minio-version");
    /// Deployment id.
    pub(crate) const DEPLOYMENT_ID: HeaderName = HeaderName::from_static("x-minio-deployment-id");
}
