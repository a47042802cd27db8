//! The client certificate of an mTLS webhook (LOGGING.md §2.3, §8.5): a resolver that
//! handshakes read without locks and that a reload swaps atomically, and the PEM loading.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Client certificate holder; handshakes read the current key pair without locks.
#[derive(Debug, Default)]
pub(crate) struct CertResolver {
    key: ArcSwapOption<CertifiedKey>,
    /// Bumped on each successful reload so workers re-dial with the new certificate.
    generation: AtomicU64,
}

impl CertResolver {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, key: Option<Arc<CertifiedKey>>) {
        self.key.store(key);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.key.load_full()
    }

    fn has_certs(&self) -> bool {
        self.key.load().is_some()
    }
}

/// Loads a PEM certificate chain and private key into a rustls key pair.
pub(crate) fn load_key_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("client_cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "client_cert {}: no certificate found",
            cert.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("client_key {}: {e}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("client_key {}: {e}", key.display()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Modification stamp of a file, to notice changes.
pub(crate) fn file_stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}
