//! Starting nodes: the in-process cluster of `nodegrid bench`, and the single node of
//! `nodegrid node` / `bench --local`, with credentials and TLS from the command line.

use crate::builtin;
use anyhow::{bail, Context, Result};
use nodegrid::auth::Auth;
use nodegrid::transport::TlsConfig;
use nodegrid::{GridConfig, Manager};
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;

/// Credentials and TLS options shared by `node` and `bench --local`. `Debug` shows whether a
/// secret is set, never its value.
#[derive(Clone, Default, clap::Args)]
pub struct Credentials {
    /// Access key of the MinIO-compatible JWT provider.
    #[arg(long, env = "NODEGRID_ACCESS_KEY")]
    pub access_key: Option<String>,
    /// Secret key of the MinIO-compatible JWT provider.
    #[arg(long, env = "NODEGRID_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// A static shared bearer token (instead of access/secret keys).
    #[arg(long, env = "NODEGRID_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// PEM certificate chain of this node (TLS).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of this node (TLS).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle to verify peers; also requires client certificates (mTLS).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Route path of the grid endpoint.
    #[arg(long, default_value = nodegrid::DEFAULT_ROUTE)]
    pub route: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &secret(&self.secret_key))
            .field("auth_token", &secret(&self.auth_token))
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_ca", &self.tls_ca)
            .field("route", &self.route)
            .finish()
    }
}

impl Credentials {
    pub fn auth(&self) -> Result<Auth> {
        match (&self.auth_token, &self.access_key, &self.secret_key) {
            (Some(t), None, None) => Ok(Auth::shared_token(t.clone())),
            (None, Some(a), Some(s)) => Ok(Auth::minio_jwt(a.clone(), s.clone())),
            (Some(_), _, _) => bail!("give either --auth-token or --access-key/--secret-key, not both"),
            _ => bail!(
                "credentials required: --access-key and --secret-key (or NODEGRID_ACCESS_KEY / NODEGRID_SECRET_KEY), or --auth-token (NODEGRID_AUTH_TOKEN)"
            ),
        }
    }

    pub fn tls(&self) -> Result<Option<TlsConfig>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Ok(Some(
                TlsConfig::from_pem_files(c, k, self.tls_ca.as_deref(), self.tls_ca.is_some())
                    .context("loading TLS certificate")?,
            )),
            (None, None) => Ok(None),
            _ => bail!("--tls-cert and --tls-key go together"),
        }
    }
}

/// Listen backlog of a node's port: connections the kernel completes before the node accepts
/// them. Above the default (1024) so a burst of connections (a cluster restarting, or a flood)
/// does not leave sockets stranded in the kernel where no time limit of the node applies yet.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a node's listener on `addr` (`host:port`) with [`LISTEN_BACKLOG`].
pub async fn bind(addr: &str) -> Result<TcpListener> {
    let sa = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let sock = if sa.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    sock.set_reuseaddr(true)?;
    sock.bind(sa).with_context(|| format!("binding {addr}"))?;
    Ok(sock.listen(LISTEN_BACKLOG)?)
}

/// The socket address of a host string (`http://host:port` → `host:port`).
pub fn listen_addr(host: &str) -> Result<String> {
    nodegrid::transport::Target::parse(host)
        .map(|t| t.authority)
        .with_context(|| format!("invalid host string {host:?}"))
}

/// A self-signed certificate for 127.0.0.1 / localhost, as client and server TLS settings.
pub fn self_signed_tls() -> Result<TlsConfig> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ])));
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let cert_der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow::anyhow!("key: {e}"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der.clone())?;
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)?;
    Ok(TlsConfig::from_configs(client, server))
}

/// Serves a node on `listener` through the manager's front door: the grid's upgrade endpoint
/// and the REST methods (with the built-in `sink` and `source`) on the same port, plain or TLS
/// (the manager's, reloadable), with one set of limits for unauthenticated connections.
pub fn serve_node(
    m: &Manager,
    auth: &Auth,
    listener: TcpListener,
) -> Result<nodegrid_rest::ServerHandle> {
    let rest = nodegrid_rest::RestServer::builder(auth.clone())
        .with_builtins()
        .build()
        .context("REST server configuration")?;
    let door = m.front_door().merge(rest.router()).spawn(listener)?;
    Ok(nodegrid_rest::ServerHandle::from_front_door(door))
}

/// A REST client for every peer of `m`, keyed by host string.
pub fn rest_clients(
    m: &Manager,
    auth: &Auth,
    tls: Option<&TlsConfig>,
) -> Result<Vec<(String, nodegrid_rest::RestClient)>> {
    let mut v = Vec::new();
    for c in m.connections() {
        let mut b = nodegrid_rest::RestClient::builder(c.remote(), auth.clone());
        if let Some(t) = tls {
            b = b.tls(nodegrid_rest::ClientTls::from_config(
                (*t.client_config()).clone(),
            ));
        }
        v.push((c.remote().to_string(), b.build().context("REST client")?));
    }
    Ok(v)
}

/// A running in-process cluster: the managers, their servers, and REST clients between them.
pub struct Cluster {
    pub nodes: Vec<Manager>,
    pub rest: Vec<Vec<(String, nodegrid_rest::RestClient)>>,
    _servers: Vec<nodegrid_rest::ServerHandle>,
}

impl Cluster {
    pub fn shutdown(&self) {
        for n in &self.nodes {
            n.shutdown();
        }
    }
}

/// Starts `n` nodes in this process on 127.0.0.1 and waits until all pairs are connected.
pub async fn start_in_process(n: usize, tls: bool, capacity: usize) -> Result<Cluster> {
    let scheme = if tls { "https" } else { "http" };
    let mut listeners = Vec::new();
    let mut hosts = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        hosts.push(format!("{scheme}://{}", l.local_addr()?));
        listeners.push(l);
    }
    let tls_cfg = if tls { Some(self_signed_tls()?) } else { None };
    let auth = Auth::shared_token(format!("bench-{}", rand::random::<u64>()));
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    let mut rest = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let mut b = Manager::builder(hosts[i].clone(), hosts.clone())
            .auth(auth.clone())
            .config(GridConfig::default());
        if let Some(t) = &tls_cfg {
            b = b.tls(t.clone());
        }
        let m = b.build()?;
        builtin::register(&m, capacity)?;
        servers.push(serve_node(&m, &auth, l)?);
        rest.push(rest_clients(&m, &auth, tls_cfg.as_ref())?);
        nodes.push(m);
    }
    let wait = Duration::from_secs(30 + n as u64);
    for m in &nodes {
        m.wait_all_connected(wait).await.with_context(|| {
            format!("in-process node {} did not connect to all peers", m.local())
        })?;
    }
    Ok(Cluster {
        nodes,
        rest,
        _servers: servers,
    })
}

/// Starts this process as one node of a running cluster (for `bench --local`).
pub async fn join(
    local: &str,
    hosts: &[String],
    creds: &Credentials,
    capacity: usize,
) -> Result<Cluster> {
    let auth = creds.auth()?;
    let tls = creds.tls()?;
    let mut b = Manager::builder(local, hosts.iter().cloned())
        .auth(auth.clone())
        .route(creds.route.clone());
    if let Some(t) = &tls {
        b = b.tls(t.clone());
    }
    let m = b.build()?;
    builtin::register(&m, capacity)?;
    let l = bind(&listen_addr(local)?).await?;
    let server = serve_node(&m, &auth, l)?;
    let rest = rest_clients(&m, &auth, tls.as_ref())?;
    if let Err(e) = m.wait_all_connected(Duration::from_secs(30)).await {
        eprintln!("warning: not all peers connected within 30 s ({e}); measuring anyway");
    }
    Ok(Cluster {
        nodes: vec![m],
        rest: vec![rest],
        _servers: vec![server],
    })
}
