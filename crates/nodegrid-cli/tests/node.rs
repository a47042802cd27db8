//! `nodegrid node` as a process: signals (SIGHUP reloads certificates and the node goes on;
//! SIGTERM stops it and flushes queued log entries) and the console flags `--quiet` and
//! `--anonymous`.

mod common;
use common::free_port;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for any expected event.
const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "node-test-s3cret-token";

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: sending a signal to our own child process, whose pid we hold.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({sig}) failed");
}

/// A running node whose stderr is collected line by line.
struct Node {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    seen: mpsc::Receiver<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nodegrid"));
        c.env_remove("RUST_LOG")
            .arg("node")
            .args(args)
            .args(["--auth-token", TOKEN])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn node");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, seen) = mpsc::channel();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                l2.lock().unwrap().push(line);
                let _ = tx.send(());
            }
        });
        Node { child, lines, seen }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits (bounded) until `n` lines of stderr contain `what`.
    fn wait_for(&mut self, what: &str, n: usize) {
        let end = Instant::now() + WAIT;
        loop {
            let count = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(what))
                .count();
            if count >= n {
                return;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let status = self.child.try_wait();
                panic!(
                    "timed out waiting for {n} x {what:?} (node: {status:?}); stderr:\n{}",
                    self.text()
                );
            }
            let _ = self.seen.recv_timeout(left.min(Duration::from_millis(200)));
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(Instant::now() < end, "node did not exit:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A webhook receiver on 127.0.0.1 keeping every NDJSON line it gets.
fn start_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let lines = l2.clone();
            std::thread::spawn(move || serve_http(s, &lines));
        }
    });
    (format!("http://{addr}/log"), lines)
}

fn serve_http(s: TcpStream, lines: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        lines
            .lock()
            .unwrap()
            .extend(String::from_utf8_lossy(&body).lines().map(str::to_string));
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    }
}

struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    /// Writes a fresh leaf for 127.0.0.1 to `cert` / `key`; returns its DER.
    fn write_leaf(&self, cert: &Path, key: &Path) -> Vec<u8> {
        let k = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let c = p.signed_by(&k, &self.ca, &self.ca_key).unwrap();
        std::fs::write(cert, c.pem()).unwrap();
        std::fs::write(key, k.serialize_pem()).unwrap();
        c.der().to_vec()
    }

    /// The certificate a new TLS connection to 127.0.0.1:`port` is shown.
    fn served(&self, port: u16) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).expect("TLS handshake");
        }
        conn.peer_certificates().expect("a certificate")[0].to_vec()
    }
}

/// SIGHUP reloads the node's certificate: the process stays up, new connections see the new
/// certificate, the reload is logged; a broken file is reported with its name and the
/// certificate in use stays. SIGTERM then stops the node cleanly and flushes the log
/// webhook's queue. Before: SIGHUP killed the node (exit by signal, no "shutting down", no
/// flush).
#[test]
fn sighup_reloads_certificates_and_sigterm_flushes() {
    let dir = std::env::temp_dir().join(format!("nodegrid-node-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("node.pem"), dir.join("node.key"));
    let (client_cert, client_key) = (dir.join("client.pem"), dir.join("client.key"));
    let pki = Pki::new();
    let first = pki.write_leaf(&cert, &key);
    pki.write_leaf(&client_cert, &client_key);
    let client_cert_s = client_cert.display().to_string();
    let client_key_s = client_key.display().to_string();
    let (endpoint, received) = start_receiver();
    let port = free_port();
    let host = format!("https://127.0.0.1:{port}");
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let mut node = Node::start(
        &[
            "--local",
            &host,
            "--hosts",
            &host,
            "--tls-cert",
            &cert_s,
            "--tls-key",
            &key_s,
        ],
        &[
            ("NODEGRID_LOGGER_WEBHOOK_ENABLE", "on"),
            ("NODEGRID_LOGGER_WEBHOOK_ENDPOINT", &endpoint),
            ("NODEGRID_LOGGER_WEBHOOK_BATCH_SIZE", "1000"),
            // Entries can only arrive through the shutdown flush.
            ("NODEGRID_LOGGER_WEBHOOK_FLUSH_INTERVAL", "1h"),
            // An audit webhook with a client certificate (mTLS), reloaded on SIGHUP too.
            ("NODEGRID_AUDIT_WEBHOOK_ENABLE", "on"),
            ("NODEGRID_AUDIT_WEBHOOK_ENDPOINT", &endpoint),
            ("NODEGRID_AUDIT_WEBHOOK_CLIENT_CERT", &client_cert_s),
            ("NODEGRID_AUDIT_WEBHOOK_CLIENT_KEY", &client_key_s),
        ],
    );
    node.wait_for("node started", 1);
    assert_eq!(pki.served(port), first);

    let second = pki.write_leaf(&cert, &key);
    signal(&node.child, libc::SIGHUP);
    node.wait_for("SIGHUP: reloaded the TLS certificate", 1);
    node.wait_for(
        "SIGHUP: reloaded the webhook client certificate webhook=audit-_",
        1,
    );
    assert!(
        node.alive(),
        "SIGHUP must not stop the node:\n{}",
        node.text()
    );
    assert_eq!(
        pki.served(port),
        second,
        "a new connection sees the new certificate"
    );

    let broken = "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n";
    std::fs::write(&cert, broken).unwrap();
    std::fs::write(&client_cert, broken).unwrap();
    signal(&node.child, libc::SIGHUP);
    node.wait_for("cannot reload the TLS certificate", 1);
    node.wait_for("cannot reload a webhook client certificate", 1);
    let text = node.text();
    let warn_block = text
        .split("\n\n")
        .find(|b| b.contains("cannot reload the TLS certificate"))
        .unwrap_or_default();
    assert!(warn_block.contains("(WARNING)"), "{warn_block}");
    assert!(warn_block.contains(&cert_s), "names the file: {warn_block}");
    let warn_block = text
        .split("\n\n")
        .find(|b| b.contains("cannot reload a webhook client certificate"))
        .unwrap_or_default();
    assert!(warn_block.contains("(WARNING)"), "{warn_block}");
    assert!(
        warn_block.contains("audit-_"),
        "names the target: {warn_block}"
    );
    assert!(
        warn_block.contains(&client_cert_s),
        "names the file: {warn_block}"
    );
    assert!(node.alive());
    assert_eq!(pki.served(port), second, "the old certificate stays in use");
    assert!(received.lock().unwrap().is_empty(), "nothing flushed yet");

    signal(&node.child, libc::SIGTERM);
    let status = node.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "clean exit on SIGTERM:\n{}",
        node.text()
    );
    // The reader thread may still be draining the pipe.
    node.wait_for("shutting down", 1);
    let got = received.lock().unwrap().clone();
    let messages: Vec<String> = got
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v["message"]
                .as_str()
                .or(v["error"]["message"].as_str())
                .map(str::to_string)
        })
        .collect();
    let has = |m: &str| messages.iter().any(|x| x.starts_with(m));
    assert!(
        has("SIGHUP: reloaded the TLS certificate"),
        "the queued entries were flushed: {messages:?}"
    );
    assert!(has("shutting down"), "{messages:?}");
    assert!(!node.text().contains(TOKEN), "the auth token never shows");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--quiet` hides INFO lines on the console but not warnings; `--anonymous` hides the peer
/// address in them. Before: neither flag existed.
#[test]
fn quiet_and_anonymous_flags() {
    let (port, peer) = (free_port(), free_port());
    let me = format!("http://127.0.0.1:{port}");
    let other = format!("http://127.0.0.1:{peer}");
    let hosts = format!("{me},{other}");
    for (flags, expect_info, expect_peer) in [
        (vec![], true, true),
        (vec!["--quiet"], false, true),
        (vec!["--quiet", "--anonymous"], false, false),
    ] {
        let mut args = vec!["--local", me.as_str(), "--hosts", hosts.as_str()];
        args.extend(flags.iter().copied());
        let mut node = Node::start(&args, &[]);
        // The unreachable peer gives a WARN "peer state" with its address.
        node.wait_for("(WARNING)", 1);
        signal(&node.child, libc::SIGTERM);
        assert_eq!(node.wait_exit().code(), Some(0));
        node.wait_for("(WARNING)", 1);
        let text = node.text();
        assert_eq!(
            text.contains("INFO: node started"),
            expect_info,
            "{flags:?}:\n{text}"
        );
        assert_eq!(
            text.contains(&format!("127.0.0.1:{peer}")),
            expect_peer,
            "{flags:?}:\n{text}"
        );
    }
}
