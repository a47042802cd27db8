//! TLS with rustls (PROTOCOL.md §2.5): `https://` hosts are dialed as `wss://`; the acceptor
//! side terminates TLS in [`crate::Manager::serve`]. Certificates come from PEM files and can
//! be reloaded without a restart; with a CA and `require_client_cert`, peers must present a
//! certificate signed by that CA (mTLS).

use crate::error::ConfigError;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;

#[derive(Clone, Debug)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
    require_client_cert: bool,
}

/// Client and server TLS settings of a node.
#[derive(Clone)]
pub struct TlsConfig {
    client: Arc<ArcSwap<rustls::ClientConfig>>,
    server: Arc<ArcSwap<rustls::ServerConfig>>,
    files: Option<Files>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("files", &self.files)
            .finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Tls(format!("{what}: {e}"))
}

fn load(files: &Files) -> Result<(rustls::ClientConfig, rustls::ServerConfig), ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_err(&format!("reading {}", files.cert.display()), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(&format!("parsing {}", files.cert.display()), e))?;
    if certs.is_empty() {
        return Err(ConfigError::Tls(format!(
            "{}: no certificate found",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls_err(&format!("reading key {}", files.key.display()), e))?;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &files.ca {
        for c in CertificateDer::pem_file_iter(ca)
            .map_err(|e| tls_err(&format!("reading CA {}", ca.display()), e))?
        {
            let c = c.map_err(|e| tls_err(&format!("parsing CA {}", ca.display()), e))?;
            roots
                .add(c)
                .map_err(|e| tls_err("adding CA certificate", e))?;
        }
    } else {
        // Without a CA bundle, trust the node's own certificate chain (a cluster sharing one
        // self-signed certificate).
        for c in &certs {
            let _ = roots.add(c.clone());
        }
    }
    let roots = Arc::new(roots);
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("client protocol versions", e))?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(certs.clone(), key.clone_key())
        .map_err(|e| tls_err("client certificate", e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("server protocol versions", e))?;
    let server = if files.require_client_cert {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| tls_err("client certificate verifier", e))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    }
    .with_single_cert(certs, key)
    .map_err(|e| tls_err("server certificate", e))?;
    Ok((client, server))
}

impl TlsConfig {
    /// Loads a node certificate chain and key (PEM), and optionally a CA bundle used to verify
    /// peers; `require_client_cert` turns on mutual TLS for incoming connections. The same
    /// certificate is presented as client certificate when dialing.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        ca: Option<&Path>,
        require_client_cert: bool,
    ) -> Result<TlsConfig, ConfigError> {
        let files = Files {
            cert: cert.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
            ca: ca.map(Path::to_path_buf),
            require_client_cert,
        };
        if require_client_cert && files.ca.is_none() {
            return Err(ConfigError::Tls(
                "require_client_cert needs a CA bundle".into(),
            ));
        }
        let (c, s) = load(&files)?;
        Ok(TlsConfig {
            client: Arc::new(ArcSwap::from_pointee(c)),
            server: Arc::new(ArcSwap::from_pointee(s)),
            files: Some(files),
        })
    }

    /// Uses ready-made rustls configurations.
    pub fn from_configs(client: rustls::ClientConfig, server: rustls::ServerConfig) -> TlsConfig {
        TlsConfig {
            client: Arc::new(ArcSwap::from_pointee(client)),
            server: Arc::new(ArcSwap::from_pointee(server)),
            files: None,
        }
    }

    /// Re-reads the PEM files; new connections use the new certificates, live ones are kept.
    /// On error nothing changes.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let Some(files) = &self.files else {
            return Err(ConfigError::Tls(
                "configuration was not loaded from files".into(),
            ));
        };
        let (c, s) = load(files)?;
        self.client.store(Arc::new(c));
        self.server.store(Arc::new(s));
        Ok(())
    }

    /// The client configuration in force (for other clients of the node, e.g. its REST
    /// client, to present the same certificate and trust the same CA).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client.load_full()
    }

    /// The server configuration in force (for serving other routes on the same port).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server.load_full()
    }

    pub(crate) async fn connect(
        &self,
        hostname: &str,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(hostname.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let connector = tokio_rustls::TlsConnector::from(self.client.load_full());
        connector.connect(name, tcp).await
    }
}
