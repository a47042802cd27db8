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
    // Parses the certificate and checks that it belongs to the key: a rotation caught half
    // way (new certificate, old key) or a damaged file fails here, not at every handshake.
    CertifiedKey::from_der(chain, key_der, &provider)
        .map(Arc::new)
        .map_err(|e| {
            format!(
                "client_cert {} / client_key {}: {e}",
                cert.display(),
                key.display()
            )
        })
}

/// Modification stamp of a file, to notice changes.
pub(crate) fn file_stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["client".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("cert");
        std::fs::write(&k, key.serialize_pem()).expect("key");
        (c, k)
    }

    #[test]
    fn a_pair_loads_and_a_damaged_or_mismatched_one_names_its_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c1, k1) = write_pair(dir.path(), "one");
        let (c2, _k2) = write_pair(dir.path(), "two");
        assert!(load_key_pair(&c1, &k1).is_ok());
        let e = load_key_pair(&c2, &k1).expect_err("certificate of another key");
        assert!(e.contains(&c2.display().to_string()), "{e}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let e = load_key_pair(&broken, &k1).expect_err("not a certificate");
        assert!(e.contains(&broken.display().to_string()), "{e}");
        let e = load_key_pair(&dir.path().join("missing.pem"), &k1).expect_err("missing");
        assert!(e.contains("missing.pem"), "{e}");
    }
}
