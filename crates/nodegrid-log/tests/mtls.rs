//! mTLS against an HTTPS receiver on 127.0.0.1 that requires a client certificate.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use nodegrid_log::test_support::{Target, WebhookTarget};
use nodegrid_log::{
    AuditEntry, ConsoleMode, ConsoleTarget, Identity, Record, Registry, Stream, WebhookConfig,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).expect("ca cert");
    Ca { cert, key }
}

fn leaf(
    ca: &Ca,
    cn: &str,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(sans).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).expect("leaf");
    (cert, key)
}

fn server_config(ca: &Ca) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let (cert, key) = leaf(
        ca,
        "receiver",
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server cert");
    Arc::new(cfg)
}

/// Writes a client cert/key pair; returns the cert DER.
fn write_client(ca: &Ca, cn: &str, cert_path: &Path, key_path: &Path) -> Vec<u8> {
    let (cert, key) = leaf(ca, cn, vec![], ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(cert_path, cert.pem()).expect("write cert");
    std::fs::write(key_path, key.serialize_pem()).expect("write key");
    cert.der().to_vec()
}

struct Setup {
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca: Ca,
    receiver: Receiver,
}

async fn setup() -> Setup {
    quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("test ca");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).expect("ca file");
    let receiver = Receiver::start_tls(server_config(&ca)).await;
    Setup {
        cert: dir.path().join("client.pem"),
        key: dir.path().join("client.key"),
        _dir: dir,
        ca_file,
        ca,
        receiver,
    }
}

fn rec() -> Record {
    Record::Audit(Arc::new(AuditEntry::new()))
}

fn https(r: &Receiver) -> String {
    format!("https://{}/audit", r.addr)
}

#[tokio::test]
async fn delivers_with_the_right_client_certificate_and_picks_up_rotation() {
    let s = setup().await;
    let der_a = write_client(&s.ca, "client-a", &s.cert, &s.key);
    let (t, _cap) = audit_target(
        WebhookConfig::builder("_", https(&s.receiver))
            .ca_cert(&s.ca_file)
            .client_cert(&s.cert, &s.key)
            .cert_reload_interval(Duration::from_millis(50))
            .build()
            .expect("cfg"),
    );
    t.send(rec()).expect("accepted");
    bounded(s.receiver.wait_lines(1)).await;
    assert_eq!(
        s.receiver.requests()[0].client_cert.as_deref(),
        Some(&der_a[..])
    );

    // Rotate the files: explicit reload (what SIGHUP does).
    let der_b = write_client(&s.ca, "client-b", &s.cert, &s.key);
    t.reload_client_cert().expect("reload");
    t.send(rec()).expect("accepted");
    bounded(s.receiver.wait_lines(2)).await;
    assert_eq!(
        s.receiver.requests()[1].client_cert.as_deref(),
        Some(&der_b[..])
    );

    // Rotate again and let the file poller notice; bounded number of probes.
    let der_c = write_client(&s.ca, "client-c", &s.cert, &s.key);
    let mut seen_c = false;
    for i in 0..100 {
        t.send(rec()).expect("accepted");
        bounded(s.receiver.wait_lines(3 + i)).await;
        if s.receiver
            .requests()
            .last()
            .and_then(|r| r.client_cert.clone())
            == Some(der_c.clone())
        {
            seen_c = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen_c, "the poller reloaded the rotated certificate");
    t.cancel().await;
}

async fn expect_rejected(s: &Setup, t: WebhookTarget, cap: nodegrid_log::Capture) {
    t.send(rec()).expect("accepted");
    eventually("given up", || t.stats().failed == 1).await;
    let st = t.stats();
    assert_eq!((st.sent, st.failed, st.send_errors), (0, 1, 2), "{st:?}");
    assert!(s.receiver.lines().is_empty());
    let c = cap.contents();
    // Reported to the console, de-duplicated: at most one line per distinct error text (the
    // TLS stack may word the first and the second rejection differently).
    let reports = c
        .lines()
        .filter(|l| l.contains("could not send audit entries"))
        .count();
    assert!((1..=2).contains(&reports), "{reports} reports: {c}");
    t.cancel().await;
}

#[tokio::test]
async fn fails_without_a_client_certificate() {
    let s = setup().await;
    let (t, cap) = audit_target(
        WebhookConfig::builder("_", https(&s.receiver))
            .ca_cert(&s.ca_file)
            .max_retry(1)
            .retry_interval(Duration::from_millis(20))
            .build()
            .expect("cfg"),
    );
    expect_rejected(&s, t, cap).await;
}

#[tokio::test]
async fn fails_with_a_certificate_from_another_ca() {
    let s = setup().await;
    let other = ca("other ca");
    write_client(&other, "intruder", &s.cert, &s.key);
    let (t, cap) = audit_target(
        WebhookConfig::builder("_", https(&s.receiver))
            .ca_cert(&s.ca_file)
            .client_cert(&s.cert, &s.key)
            .max_retry(1)
            .retry_interval(Duration::from_millis(20))
            .build()
            .expect("cfg"),
    );
    expect_rejected(&s, t, cap).await;
}

/// The registry's reload (what SIGHUP calls) covers both lists: webhooks with a client
/// certificate are reloaded, or give an error naming the target, and webhooks without one are
/// left out.
#[tokio::test]
async fn registry_reloads_the_client_certificates_of_both_lists() {
    let s = setup().await;
    write_client(&s.ca, "client-a", &s.cert, &s.key);
    let bad_cert = s._dir.path().join("bad.pem");
    let bad_key = s._dir.path().join("bad.key");
    write_client(&s.ca, "client-b", &bad_cert, &bad_key);
    let (console, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    let cfg = |key: &str, pair: Option<(&Path, &Path)>| {
        let b = WebhookConfig::builder(key, https(&s.receiver)).ca_cert(&s.ca_file);
        match pair {
            Some((c, k)) => b.client_cert(c, k),
            None => b,
        }
        .build()
        .expect("cfg")
    };
    reg.update_webhooks(
        Stream::Logger,
        vec![cfg("l", Some((&s.cert, &s.key))), cfg("n", None)],
    )
    .expect("logger");
    reg.update_webhooks(Stream::Audit, vec![cfg("a", Some((&bad_cert, &bad_key)))])
        .expect("audit");
    std::fs::write(&bad_key, b"not a key").expect("spoil the key");
    let out = reg.reload_client_certs();
    assert_eq!(out.reloaded, vec!["logger-l".to_string()]);
    assert_eq!(out.failed.len(), 1, "{:?}", out.failed);
    let e = out.failed[0].to_string();
    assert!(
        e.starts_with("target audit-a: client certificate: ") && e.contains("bad.key"),
        "{e}"
    );
    let _ = reg.shutdown(Duration::from_millis(100)).await;
}
