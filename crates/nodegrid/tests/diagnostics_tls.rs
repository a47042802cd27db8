//! Every misconfiguration names itself (issue 15), TLS part: a certificate that the other side
//! refuses is named, in plain words, on the side that saw it: the dialer (on its connection,
//! as the last error and one WARN) and the acceptor's front door (one WARN per source address,
//! since it cannot know which peer it was). Certificates are made by rcgen; loopback only.

mod common;
#[path = "common/log_lines.rs"]
mod log_lines;

use common::certs::{ca, cert_with_names, Ca};
use common::{capture_logs, wait_for};
use log_lines::{conn_warn, warns};
use nodegrid::auth::Auth;
use nodegrid::transport::TlsConfig;
use nodegrid::Manager;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::Level;

/// A certificate for `dns` (and 127.0.0.1 unless `dns` is given alone) signed by `ca`, written
/// to `dir`; returns (cert, key) paths.
fn cert(dir: &Path, name: &str, ca: &Ca, expired: bool, dns: Option<&str>) -> (PathBuf, PathBuf) {
    cert_with_names(
        dir,
        name,
        ca,
        expired,
        &[dns.unwrap_or("localhost")],
        dns.is_none(),
    )
}

#[derive(Clone, Copy, Debug)]
enum Case {
    /// The acceptor's certificate is signed by a CA the dialer does not trust.
    AcceptorUnknownCa,
    /// The dialer's certificate is signed by a CA the acceptor does not trust.
    DialerUnknownCa,
    /// The dialer presents no client certificate.
    NoClientCert,
    /// The acceptor's certificate has expired.
    AcceptorExpired,
    /// The acceptor's certificate does not name 127.0.0.1.
    NameMismatch,
}

/// What each side says in `case`: the dialer's text (after "TLS handshake with <peer>
/// failed: ") and the acceptor's (after "TLS handshake with <source> failed: ").
fn expected(case: Case) -> (&'static str, &'static str) {
    match case {
        Case::AcceptorUnknownCa => (
            "its certificate is signed by an unknown authority; check that our CA bundle \
             (--tls-ca) contains the CA that signed its certificate",
            "it does not trust our certificate (unknown authority); check that its CA bundle \
             (--tls-ca) contains the CA that signed our certificate",
        ),
        Case::DialerUnknownCa => (
            "it does not trust our certificate (unknown authority); check that its CA bundle \
             (--tls-ca) contains the CA that signed our certificate",
            "its client certificate is signed by an unknown authority; check that our CA bundle \
             (--tls-ca) contains the CA that signed its client certificate",
        ),
        Case::NoClientCert => (
            "it requires a client certificate and we sent none; give this node a certificate \
             signed by a CA it trusts (--tls-cert, --tls-key)",
            "it presented no client certificate, and mutual TLS requires one; give it a \
             certificate signed by a CA in our CA bundle (--tls-cert, --tls-key)",
        ),
        Case::AcceptorExpired => (
            "its certificate has expired (on Fri, 01 Jan 2021 00:00:00 GMT); renew its \
             certificate",
            "it says our certificate has expired or is not valid yet; renew our certificate, \
             and check the clocks of both nodes",
        ),
        Case::NameMismatch => (
            "its certificate is not valid for the name 127.0.0.1 (it names other.example); give \
             it a certificate whose subject alternative names include 127.0.0.1",
            "it refused our certificate (bad certificate; usually a name mismatch); check that \
             our certificate's subject alternative names include the host name it dials us by",
        ),
    }
}

async fn run(case: Case) {
    let (_g, logs) = capture_logs(Level::WARN);
    let dir = std::env::temp_dir().join(format!(
        "nodegrid-diag-tls-{case:?}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (good, other) = (ca(), ca());
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, good.cert.pem()).unwrap();
    let (ls, hosts) = common::listeners(2, "https").await;
    let d = usize::from(!nodegrid::wire::should_dial(&hosts[0], &hosts[1]));
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let dialer = i == d;
        let (c, k) = match (case, dialer) {
            (Case::AcceptorUnknownCa, false) | (Case::DialerUnknownCa, true) => {
                cert(&dir, "n", &other, false, None)
            }
            (Case::AcceptorExpired, false) => cert(&dir, "n", &good, true, None),
            (Case::NameMismatch, false) => cert(&dir, "n", &good, false, Some("other.example")),
            _ => cert(&dir, &format!("n{i}"), &good, false, None),
        };
        let mut tls = TlsConfig::from_pem_files(&c, &k, Some(&ca_path), true).unwrap();
        if dialer && matches!(case, Case::NoClientCert) {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls::pki_types::CertificateDer::from(
                    good.cert.der().to_vec(),
                ))
                .unwrap();
            let client = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            let server = (*tls.server_config()).clone();
            tls = TlsConfig::from_configs(client, server);
        }
        let m = Manager::builder(hosts[i].clone(), hosts.clone())
            .auth(Auth::shared_token("tls"))
            .tls(tls)
            .build()
            .unwrap();
        let m2 = m.clone();
        tokio::spawn(async move { m2.serve(l).await });
        nodes.push(m);
    }
    let (dialer_text, acceptor_text) = expected(case);
    let peer = &hosts[1 - d];
    let dialer_text = format!("TLS handshake with {peer} failed: {dialer_text}");
    let acceptor_line = format!(
        " WARN nodegrid::transport::accept: TLS handshake with 127.0.0.1:PORT failed: \
         {acceptor_text} peer=127.0.0.1:PORT suppressed=0"
    );
    let c = nodes[d].connection(peer).unwrap();
    // The cases run one after the other (see below), so the acceptor's line, which names no
    // host string, is this case's.
    let seen = || {
        (
            warns(
                &logs,
                &[
                    "TLS handshake with https://",
                    &format!("local={}", hosts[d]),
                ],
            ),
            warns(&logs, &["TLS handshake with 127.0.0.1"]),
        )
    };
    wait_for(
        &format!("{case:?}: both sides"),
        Duration::from_secs(10),
        || {
            let (a, b) = seen();
            !a.is_empty() && !b.is_empty()
        },
    )
    .await;
    assert_eq!(
        seen(),
        (
            vec![conn_warn(&dialer_text, &hosts[d], peer)],
            vec![acceptor_line]
        ),
        "{case:?}"
    );
    assert_eq!(c.last_error(), Some(dialer_text), "{case:?}");
    for n in &nodes {
        n.shutdown();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// One test for every case, run in turn: the log capture is the process's, and the acceptor's
/// line can only be told apart by when it comes.
#[tokio::test]
async fn probe_tls_certificate_problems() {
    for case in [
        Case::AcceptorUnknownCa,
        Case::DialerUnknownCa,
        Case::NoClientCert,
        Case::AcceptorExpired,
        Case::NameMismatch,
    ] {
        run(case).await;
    }
}
