//! TLS configuration for both ends, with rustls and its `ring` provider only.
//!
//! The client side is a [`ClientTls`] given to the client builder; the server side is a plain
//! `rustls::ServerConfig` (built here with [`server_tls_config`] or by the caller) handed to
//! [`serve`](crate::serve). With a set of client roots the server requires and verifies a client
//! certificate (mutual TLS).

use crate::RestError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

/// ALPN protocol: the REST path speaks HTTP/1.1 only.
const ALPN_HTTP11: &[u8] = b"http/1.1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(
    certs: impl IntoIterator<Item = CertificateDer<'static>>,
) -> Result<RootCertStore, RestError> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store
            .add(c)
            .map_err(|e| RestError::Config(format!("bad root certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(RestError::Config("no root certificate given".into()));
    }
    Ok(store)
}

/// TLS settings for a [`RestClient`](crate::RestClient): the roots that verify the peer's
/// certificate, and optionally a client certificate for mutual TLS.
///
/// ```
/// # fn demo(ca: rustls::pki_types::CertificateDer<'static>) -> Result<(), nodegrid_rest::RestError> {
/// let tls = nodegrid_rest::ClientTls::new([ca])?;
/// # let _ = tls; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub(crate) config: Arc<ClientConfig>,
}

impl ClientTls {
    /// Verifies the peer against `roots`; presents no client certificate.
    pub fn new(
        roots_certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<ClientTls, RestError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| RestError::Config(e.to_string()))?
            .with_root_certificates(roots(roots_certs)?)
            .with_no_client_auth();
        Ok(ClientTls::from_config(config))
    }

    /// Verifies the peer against `roots` and presents `chain` (leaf first) with its `key`.
    pub fn with_client_cert(
        roots_certs: impl IntoIterator<Item = CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ClientTls, RestError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| RestError::Config(e.to_string()))?
            .with_root_certificates(roots(roots_certs)?)
            .with_client_auth_cert(chain, key)
            .map_err(|e| RestError::Config(format!("bad client certificate: {e}")))?;
        Ok(ClientTls::from_config(config))
    }

    /// Uses a caller-built rustls configuration as is, except that ALPN is set to HTTP/1.1.
    pub fn from_config(mut config: ClientConfig) -> ClientTls {
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        ClientTls {
            config: Arc::new(config),
        }
    }
}

/// A server configuration presenting `chain` (leaf first) and `key`. With `client_roots`, every
/// client must present a certificate that chains to one of them (mutual TLS); without, no
/// client certificate is asked for.
pub fn server_tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<Vec<CertificateDer<'static>>>,
) -> Result<Arc<ServerConfig>, RestError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| RestError::Config(e.to_string()))?;
    let builder = match client_roots {
        Some(r) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(r)?),
                provider(),
            )
            .build()
            .map_err(|e| RestError::Config(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| RestError::Config(format!("bad server certificate: {e}")))?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}
