//! Webhook targets behind an HTTP proxy (LOGGING.md §2.3 `proxy`, §2.3.6): an in-test proxy on
//! 127.0.0.1 records what it is asked and forwards to the receiver. The endpoints use the
//! reserved name `receiver.invalid`, which no resolver knows: only the proxy (which sends every
//! name to 127.0.0.1) can reach them, so a delivered entry proves the proxy was used.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nodegrid_log::test_support::Target;
use nodegrid_log::{AuditEntry, Record, WebhookConfig};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "receiver.invalid";
const PROXY_VAR: &str = "NODEGRID_LOG_TEST_PROXY_URL";
const EXPECT_VAR: &str = "NODEGRID_LOG_TEST_PROXY_EXPECT";

/// What the proxy was asked: the first request line of each connection, and its
/// `Proxy-Authorization` value.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, String)>>>);

impl Log {
    fn lines(&self) -> Vec<(String, String)> {
        self.0.lock().expect("lock").clone()
    }
}

async fn start_proxy() -> (SocketAddr, Log) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let log = Log::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            tokio::spawn(proxy_conn(sock, log2.clone()));
        }
    });
    (addr, log)
}

async fn proxy_conn(mut client: TcpStream, log: Log) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match client.read_u8().await {
            Ok(b) => head.push(b),
            Err(_) => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or_default().to_string();
    let auth = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("proxy-authorization:")
                .then(|| l["proxy-authorization:".len()..].trim().to_string())
        })
        .unwrap_or_default();
    log.0.lock().expect("lock").push((line.clone(), auth));
    let target = line.split_whitespace().nth(1).unwrap_or_default();
    let authority = target
        .strip_prefix("http://")
        .map(|r| r.split('/').next().unwrap_or_default())
        .unwrap_or(target);
    let Some(port) = authority
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
    else {
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    if line.starts_with("CONNECT ") {
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    } else if upstream.write_all(&head).await.is_err() {
        // Absolute form is forwarded as it is: HTTP/1.1 servers accept it.
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

fn rec(i: u64) -> Record {
    let mut e = AuditEntry::new();
    e.tags.insert("id".into(), i.into());
    Record::Audit(Arc::new(e))
}

fn ids(r: &Receiver) -> Vec<u64> {
    r.lines()
        .iter()
        .map(|l| l["tags"]["id"].as_u64().expect("id"))
        .collect()
}

/// `proxy` key, http endpoint: requests go to the proxy in absolute form, with the proxy's
/// credentials. Before: the `proxy` key was refused ("not supported yet").
#[tokio::test]
async fn http_endpoint_through_the_proxy_key() {
    quiet();
    let r = Receiver::start().await;
    let (paddr, log) = start_proxy().await;
    let url = format!("http://{HOST}:{}/audit", r.addr.port());
    let cfg = WebhookConfig::builder("_", &url)
        .proxy(format!("http://user:pa55@{paddr}"))
        .build()
        .expect("cfg");
    assert!(!format!("{cfg:?}").contains("pa55"), "{cfg:?}");
    let (t, _cap) = audit_target(cfg);
    for i in 0..3 {
        t.send(rec(i)).expect("accepted");
    }
    bounded(r.wait_lines(3)).await;
    assert_eq!(ids(&r), vec![0, 1, 2]);
    let seen = log.lines();
    assert!(!seen.is_empty());
    for (line, auth) in &seen {
        assert_eq!(line, &format!("POST {url} HTTP/1.1"));
        // base64("user:pa55")
        assert_eq!(auth, "Basic dXNlcjpwYTU1");
    }
    t.cancel().await;
}

/// `proxy` key, https endpoint: a CONNECT tunnel, TLS to the endpoint inside it (the
/// certificate is checked against the endpoint's name, not the proxy's).
#[tokio::test]
async fn https_endpoint_through_a_connect_tunnel() {
    quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).expect("ca");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec![HOST.to_string()])
        .expect("params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("ca file");
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .expect("server cert");
    let r = Receiver::start_tls(Arc::new(server)).await;
    let (paddr, log) = start_proxy().await;
    let (t, _cap) = audit_target(
        WebhookConfig::builder("_", format!("https://{HOST}:{}/", r.addr.port()))
            .ca_cert(&ca_file)
            .proxy(format!("http://u:s3cret@{paddr}"))
            .build()
            .expect("cfg"),
    );
    for i in 0..2 {
        t.send(rec(i)).expect("accepted");
    }
    bounded(r.wait_lines(2)).await;
    assert_eq!(ids(&r), vec![0, 1]);
    let seen = log.lines();
    assert_eq!(seen.len(), 1, "one tunnel, kept alive: {seen:?}");
    assert_eq!(
        seen[0],
        (
            format!("CONNECT {HOST}:{} HTTP/1.1", r.addr.port()),
            // base64("u:s3cret")
            "Basic dTpzM2NyZXQ=".to_string()
        )
    );
    t.cancel().await;
}

/// The child: sends two entries to `receiver.invalid` with the proxy environment the parent
/// gave it, and checks the outcome the parent expects.
#[tokio::test]
#[ignore = "run by proxy_environment_variables in a child process"]
async fn child_sends_with_the_proxy_environment() {
    let (Ok(url), Ok(expect)) = (std::env::var(PROXY_VAR), std::env::var(EXPECT_VAR)) else {
        return;
    };
    let (t, cap) = audit_target(
        WebhookConfig::builder("_", url)
            .retry_interval(Duration::from_millis(20))
            .build()
            .expect("cfg"),
    );
    for i in 0..2 {
        t.send(rec(i)).expect("accepted");
    }
    let deadline = if expect == "proxied" { 10_000 } else { 300 };
    let report = t
        .shutdown(std::time::Instant::now() + Duration::from_millis(deadline))
        .await;
    if expect == "proxied" {
        assert_eq!(
            (report.delivered, report.dropped),
            (2, 0),
            "{}",
            cap.contents()
        );
    } else {
        assert_eq!((report.delivered, report.dropped), (0, 2));
        assert!(
            cap.contents().contains("could not send"),
            "{}",
            cap.contents()
        );
    }
}

/// `HTTP_PROXY` is used; `NO_PROXY` naming the host bypasses it. Run in child processes so the
/// environment of this process stays untouched. Before: the environment was ignored.
#[tokio::test]
async fn proxy_environment_variables() {
    quiet();
    let r = Receiver::start().await;
    let (paddr, log) = start_proxy().await;
    let url = format!("http://{HOST}:{}/", r.addr.port());
    let exe = std::env::current_exe().expect("test binary");
    for (no_proxy, expect) in [("example.org,.example.net", "proxied"), (HOST, "direct")] {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_sends_with_the_proxy_environment",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env_remove("http_proxy")
                .env_remove("no_proxy")
                .env("HTTP_PROXY", format!("http://{paddr}"))
                .env("NO_PROXY", no_proxy)
                .env(PROXY_VAR, &url)
                .env(EXPECT_VAR, expect)
                .output(),
        )
        .await
        .expect("child finished in time")
        .expect("child ran");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child ({expect}) failed: {text}");
        assert!(text.contains("1 passed"), "child ran its test: {text}");
    }
    assert_eq!(ids(&r), vec![0, 1], "only the proxied run arrived");
    let seen = log.lines();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0], (format!("POST {url} HTTP/1.1"), String::new()));
}
