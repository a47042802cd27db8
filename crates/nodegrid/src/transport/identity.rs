//! Binding a peer's identity to its certificate (PROTOCOL.md §2.5): with mutual TLS, the host a
//! dialer claims in its Connect message must be one of the names of the client certificate it
//! presented, or any certificate the cluster's CA signed could claim any node's identity.

use super::dial::Target;
use rustls::pki_types::{CertificateDer, ServerName};

/// Checks that a client certificate names the host its peer claims to be (a DNS name or IP
/// address among its subject alternative names), as mutual TLS must bind identity to the
/// certificate. The error is the rejection reason sent to the peer.
pub(crate) fn check_peer_identity(
    cert: &CertificateDer<'_>,
    claimed: &Target,
) -> Result<(), String> {
    let bad = |why: String| {
        Err(format!(
            "client certificate does not match the claimed host {}: {why}",
            claimed.host_string
        ))
    };
    let name = match ServerName::try_from(claimed.hostname.as_str()) {
        Ok(n) => n,
        Err(e) => {
            return bad(format!(
                "{:?} is not a DNS name or IP address: {e}",
                claimed.hostname
            ))
        }
    };
    let ee = match webpki::EndEntityCert::try_from(cert) {
        Ok(c) => c,
        Err(e) => return bad(format!("the certificate cannot be parsed: {e:?}")),
    };
    if ee.verify_is_valid_for_subject_name(&name).is_ok() {
        return Ok(());
    }
    let dns: Vec<&str> = ee.valid_dns_names().collect();
    bad(format!(
        "{:?} is not among its subject alternative names (DNS names: {}); give each node a \
         certificate that names its own host",
        claimed.hostname,
        if dns.is_empty() {
            "none".to_string()
        } else {
            dns.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str], ips: &[[u8; 4]]) -> CertificateDer<'static> {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        for ip in ips {
            p.subject_alt_names
                .push(rcgen::SanType::IpAddress(std::net::IpAddr::from(*ip)));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        CertificateDer::from(p.self_signed(&key).unwrap().der().to_vec())
    }

    fn target(h: &str) -> Target {
        Target::parse(h).unwrap()
    }

    #[test]
    fn a_certificate_must_name_the_claimed_host() {
        let c = cert(&["node1.example"], &[[127, 0, 0, 2]]);
        check_peer_identity(&c, &target("https://node1.example:9000")).unwrap();
        check_peer_identity(&c, &target("https://127.0.0.2:9000")).unwrap();
        assert_eq!(
            check_peer_identity(&c, &target("https://node2.example:9000")).unwrap_err(),
            "client certificate does not match the claimed host https://node2.example:9000: \
             \"node2.example\" is not among its subject alternative names (DNS names: \
             node1.example); give each node a certificate that names its own host"
        );
        assert!(check_peer_identity(&c, &target("https://127.0.0.3:1"))
            .unwrap_err()
            .contains("\"127.0.0.3\" is not among its subject alternative names"));
        let none = cert(&[], &[[10, 0, 0, 1]]);
        assert!(check_peer_identity(&none, &target("https://a.example:1"))
            .unwrap_err()
            .contains("(DNS names: none)"));
        assert!(
            check_peer_identity(&CertificateDer::from(vec![1, 2, 3]), &target("https://a:1"))
                .unwrap_err()
                .contains("the certificate cannot be parsed")
        );
    }
}
