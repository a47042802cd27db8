//! Test certificates: a CA and certificates it signs, written as PEM files.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use std::path::{Path, PathBuf};

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

/// A new self-signed CA.
pub fn ca() -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// Writes a node certificate (for localhost and 127.0.0.1) signed by `ca` and returns (cert, key) paths.
pub fn node_cert(dir: &Path, name: &str, ca: &Ca, expired: bool) -> (PathBuf, PathBuf) {
    cert_with_names(dir, name, ca, expired, &["localhost"], true)
}

/// A certificate signed by `ca` with the DNS names `dns` (and 127.0.0.1 if `loopback_ip`).
pub fn cert_with_names(
    dir: &Path,
    name: &str,
    ca: &Ca,
    expired: bool,
    dns: &[&str],
    loopback_ip: bool,
) -> (PathBuf, PathBuf) {
    let mut p =
        CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if loopback_ip {
        p.subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    }
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}
