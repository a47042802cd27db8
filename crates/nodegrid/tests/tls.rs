//! TLS and mutual TLS between nodes, with certificates made by rcgen: a working cluster (CRC
//! off on TLS), and rejections for a wrong CA, an expired certificate and a missing client
//! certificate.

mod common;

use common::certs::{ca, cert_with_names, node_cert};
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::transport::TlsConfig;
use nodegrid::{ConnState, Manager, RemoteError};
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "nodegrid-tls-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(42);
    h.finish()
}

/// Two TLS nodes; node `i` uses `tls[i]`. Returns the managers and host strings.
async fn two_nodes(tls: [TlsConfig; 2]) -> (Vec<Manager>, Vec<String>) {
    let (ls, hosts) = two_listeners().await;
    start_nodes(ls, &hosts, tls)
}

/// Two listeners on 127.0.0.1 and their https:// host strings.
async fn two_listeners() -> (Vec<TcpListener>, Vec<String>) {
    common::init_tracing();
    let (ls, hosts) = common::listeners(2, "https").await;
    (ls, hosts)
}

/// Starts a node on each listener; node `i` uses `tls[i]`.
fn start_nodes(
    ls: Vec<TcpListener>,
    hosts: &[String],
    tls: [TlsConfig; 2],
) -> (Vec<Manager>, Vec<String>) {
    let mut nodes = Vec::new();
    for ((l, t), h) in ls.into_iter().zip(tls).zip(hosts) {
        let m = Manager::builder(h.clone(), hosts.to_vec())
            .auth(Auth::shared_token("tls"))
            .tls(t)
            .build()
            .unwrap();
        m.register_single(
            78,
            |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
        )
        .unwrap();
        let m2 = m.clone();
        tokio::spawn(async move { m2.serve(l).await });
        nodes.push(m);
    }
    (nodes, hosts.to_vec())
}

/// The dialer of the pair and its connection to the other node.
fn dialer_conn(nodes: &[Manager], hosts: &[String]) -> nodegrid::Connection {
    let i = usize::from(!nodegrid::wire::should_dial(&hosts[0], &hosts[1]));
    nodes[i].connection(&hosts[1 - i]).unwrap()
}

async fn wait_error(c: &nodegrid::Connection) -> String {
    let mut rx = c.watch_state();
    let s = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|s| matches!(s, ConnState::Disconnected(_))),
    )
    .await
    .expect("dial fails")
    .unwrap()
    .clone();
    s.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_cluster_works_without_crc() {
    let dir = tempdir("ok");
    let ca = ca();
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    let tls: [TlsConfig; 2] = std::array::from_fn(|i| {
        let (c, k) = node_cert(&dir, &format!("n{i}"), &ca, false);
        TlsConfig::from_pem_files(c, k, Some(&dir.join("ca.pem")), true).unwrap()
    });
    let (nodes, hosts) = two_nodes(tls).await;
    for n in &nodes {
        n.wait_all_connected(Duration::from_secs(10)).await.unwrap();
    }
    let c = nodes[0].connection(&hosts[1]).unwrap();
    assert_eq!(&c.request(78, "over tls").await.unwrap()[..], b"over tls");
    assert_eq!(
        c.crc_enabled(),
        Some(false),
        "no CRC when both hosts are https (§3.5)"
    );
    for n in &nodes {
        n.shutdown();
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_and_expired_certificates_are_rejected() {
    for case in ["wrong-ca", "expired"] {
        let dir = tempdir(case);
        let good_ca = ca();
        let other_ca = ca();
        std::fs::write(dir.join("ca.pem"), good_ca.cert.pem()).unwrap();
        let ca_path = dir.join("ca.pem");
        let tls: [TlsConfig; 2] = std::array::from_fn(|i| {
            // Node 1's certificate is the bad one.
            let (c, k) = match (i, case) {
                (1, "wrong-ca") => node_cert(&dir, "n1", &other_ca, false),
                (1, _) => node_cert(&dir, "n1", &good_ca, true),
                _ => node_cert(&dir, "n0", &good_ca, false),
            };
            TlsConfig::from_pem_files(c, k, Some(&ca_path), true).unwrap()
        });
        let (nodes, hosts) = two_nodes(tls).await;
        let c = dialer_conn(&nodes, &hosts);
        let why = wait_error(&c).await;
        // The dialer sees either its own verdict on the server's certificate or the server's
        // alert about its client certificate, depending on which node holds the bad one.
        let expect: &[&str] = if case == "expired" {
            &["xpired", "alert"]
        } else {
            &["UnknownIssuer", "BadSignature", "alert"]
        };
        assert!(expect.iter().any(|e| why.contains(e)), "{case}: {why}");
        assert!(!c.state().is_connected());
        for n in &nodes {
            n.shutdown();
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_certificate_is_rejected() {
    let dir = tempdir("nocert");
    let ca = ca();
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    let tls: [TlsConfig; 2] = std::array::from_fn(|i| {
        let (c, k) = node_cert(&dir, &format!("n{i}"), &ca, false);
        TlsConfig::from_pem_files(c, k, Some(&dir.join("ca.pem")), true).unwrap()
    });
    let (nodes, hosts) = two_nodes(tls).await;
    // A client that trusts the CA but presents no certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            ca.cert.der().to_vec(),
        ))
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = hosts[0].trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let result = async {
        let mut s = connector.connect(name, tcp).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /minio/grid/v1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await?;
        Ok::<usize, std::io::Error>(n)
    }
    .await;
    match result {
        Err(e) => assert!(
            e.to_string().contains("CertificateRequired") || e.to_string().contains("certificate"),
            "{e}"
        ),
        Ok(n) => panic!("server answered {n} bytes to a client without certificate"),
    }
    // The nodes themselves still connect with their certificates.
    for n in &nodes {
        n.wait_all_connected(Duration::from_secs(10)).await.unwrap();
    }
    for n in &nodes {
        n.shutdown();
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_replaces_certificates_without_restart() {
    let dir = tempdir("reload");
    let ca = ca();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    // Node 1 starts with an expired certificate: nobody can connect to or from it.
    let (c0, k0) = node_cert(&dir, "n0", &ca, false);
    let (c1, k1) = node_cert(&dir, "n1", &ca, true);
    let t0 = TlsConfig::from_pem_files(&c0, &k0, Some(&ca_path), true).unwrap();
    let t1 = TlsConfig::from_pem_files(&c1, &k1, Some(&ca_path), true).unwrap();
    let (nodes, hosts) = two_nodes([t0, t1.clone()]).await;
    let c = dialer_conn(&nodes, &hosts);
    let why = wait_error(&c).await;
    assert!(
        why.contains("xpired") || why.contains("alert"),
        "expired certificate must be refused: {why}"
    );

    // A broken file makes reload fail and changes nothing.
    std::fs::write(&c1, "not a certificate").unwrap();
    let err = t1.reload().expect_err("garbage PEM must not load");
    assert!(err.to_string().contains("n1.pem"), "{err}");
    assert!(!c.state().is_connected());

    // A fresh certificate in the same files plus reload: the dialer's next attempt succeeds,
    // with no restart of either node.
    let fresh = node_cert(&dir, "n1", &ca, false);
    assert_eq!(fresh, (c1.clone(), k1.clone()));
    t1.reload().unwrap();
    for n in &nodes {
        n.wait_all_connected(Duration::from_secs(10)).await.unwrap();
    }
    assert_eq!(&c.request(78, "reloaded").await.unwrap()[..], b"reloaded");
    for n in &nodes {
        n.shutdown();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// With mTLS the acceptor binds the host a dialer claims in its Connect message to the names of
/// its client certificate: a certificate signed by the cluster's CA but made for
/// `evil.example` no longer passes for another node's host (issue 14, finding 5). The matching
/// case is `mtls_cluster_works_without_crc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_certificate_must_name_the_claimed_host() {
    let dir = tempdir("identity");
    let ca = ca();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    let (ls, hosts) = two_listeners().await;
    let dialer = usize::from(!nodegrid::wire::should_dial(&hosts[0], &hosts[1]));
    // The dialer's certificate is CA-signed but names only evil.example; as a client it still
    // trusts the acceptor's certificate for 127.0.0.1.
    let tls: [TlsConfig; 2] = std::array::from_fn(|i| {
        let (c, k) = if i == dialer {
            cert_with_names(&dir, "evil", &ca, false, &["evil.example"], false)
        } else {
            node_cert(&dir, "good", &ca, false)
        };
        TlsConfig::from_pem_files(c, k, Some(&ca_path), true).unwrap()
    });
    let (nodes, hosts) = start_nodes(ls, &hosts, tls);
    let c = nodes[dialer].connection(&hosts[1 - dialer]).unwrap();
    let why = wait_error(&c).await;
    assert_eq!(
        why,
        format!(
            "disconnected (connection rejected: client certificate does not match the claimed \
             host {}: \"127.0.0.1\" is not among its subject alternative names (DNS names: \
             evil.example); give each node a certificate that names its own host)",
            hosts[dialer]
        )
    );
    // The acceptor records why, on the connection of the claimed host.
    let acc = nodes[1 - dialer].connection(&hosts[dialer]).unwrap();
    common::wait_for("the acceptor's last error", Duration::from_secs(10), || {
        acc.last_error()
            .is_some_and(|e| e.contains("is not among its subject alternative names"))
    })
    .await;
    assert!(!c.state().is_connected());
    for n in &nodes {
        n.shutdown();
    }
    let _ = std::fs::remove_dir_all(dir);
}
