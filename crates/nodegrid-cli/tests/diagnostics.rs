//! Every misconfiguration names itself (issue 15), between `nodegrid node` processes: each
//! probe runs two nodes with `--log-json --stats-interval 1` and reads what an operator reads:
//! the WARN lines on stderr (exact texts) and `last_error` in the statistics on stdout. State
//! changes are INFO, never WARNING.

mod common;
use common::free_port;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `nodegrid node` and what it printed so far.
struct Node {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(line);
        }
    });
    lines
}

fn start(local: &str, hosts: &[&str], args: &[&str]) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args(["node", "--local", local, "--hosts", &hosts.join(",")])
        .args(["--log-json", "--stats-interval", "1"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    let stdout = collect(child.stdout.take().unwrap());
    Node {
        child,
        stderr,
        stdout,
    }
}

impl Node {
    /// The messages of the WARNING lines logged so far, source ports masked.
    fn warnings(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["level"] == "WARNING")
            .filter_map(|v| v["error"]["message"].as_str().map(mask_source_port))
            .collect()
    }

    /// The messages of every log line, with their level.
    fn logged(&self) -> Vec<(String, String)> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                let msg = v["message"]
                    .as_str()
                    .or(v["error"]["message"].as_str())
                    .unwrap_or("")
                    .to_string();
                (v["level"].as_str().unwrap_or("").to_string(), msg)
            })
            .collect()
    }

    /// `last_error` of the connection to `peer` in the latest statistics line.
    fn last_error(&self, peer: &str) -> Option<String> {
        let out = self.stdout.lock().unwrap();
        let v: Value = serde_json::from_str(out.last()?).ok()?;
        v["grid"]["connections"]
            .as_array()?
            .iter()
            .find(|c| c["remote"] == peer)?["last_error"]
            .as_str()
            .map(mask_source_port)
    }
}

/// `127.0.0.1:<port>` after "from " or "with " (an incoming connection's source port, which
/// the test cannot know) becomes `127.0.0.1:PORT`.
fn mask_source_port(s: &str) -> String {
    let mut out = s.to_string();
    for prefix in ["from 127.0.0.1:", "with 127.0.0.1:"] {
        if let Some((head, tail)) = out.split_once(prefix) {
            let rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
            out = format!("{head}{prefix}PORT{rest}");
        }
    }
    out
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{what}: not within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that `node` logged `text` at WARNING exactly once, that it is the connection's
/// `last_error` towards `peer` in the statistics, and that no state change was a WARNING.
fn assert_names_itself(node: &Node, peer: &str, text: &str) {
    wait_until(&format!("{text:?} logged and in the statistics"), || {
        node.warnings().iter().any(|w| w == text) && node.last_error(peer).as_deref() == Some(text)
    });
    assert_eq!(
        node.warnings().iter().filter(|w| *w == text).count(),
        1,
        "{:#?}",
        node.warnings()
    );
    for (level, msg) in node.logged() {
        if msg.starts_with("peer state") {
            assert_eq!(level, "INFO", "{msg}");
        }
    }
}

/// Node B spells node A `localhost`, A calls itself `127.0.0.1`; ports are picked so that B
/// dials A, so the two connect: both say how their host lists differ, and keep the session.
#[test]
fn host_lists_spelled_differently() {
    let (a, b, a2) = loop {
        let (pa, pb) = (free_port(), free_port());
        let a = format!("http://127.0.0.1:{pa}");
        let a2 = format!("http://localhost:{pa}");
        let b = format!("http://127.0.0.1:{pb}");
        if pa != pb && !nodegrid::wire::should_dial(&a, &b) && nodegrid::wire::should_dial(&b, &a2)
        {
            break (a, b, a2);
        }
    };
    let na = start(&a, &[&a, &b], &["--auth-token", "t"]);
    let nb = start(&b, &[&a2, &b], &["--auth-token", "t"]);
    assert_names_itself(
        &na,
        &b,
        &format!(
            "host lists differ between this node and {b}: {b} lists 2 hosts, this node 2; it \
             does not know {a} (this node); 1 of its hosts is not in our list; make the host \
             lists identical on every node (connected anyway)"
        ),
    );
    assert_names_itself(
        &nb,
        &a2,
        &format!(
            "host lists differ between this node and {a2}: {a2} lists 2 hosts, this node 2; it \
             does not know {a2} (itself); 1 of its hosts is not in our list; make the host lists \
             identical on every node (connected anyway)"
        ),
    );
}

/// The dialer's token is not the acceptor's.
#[test]
fn token_mismatch() {
    let (pa, pb) = (free_port(), free_port());
    let hosts = [
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    ];
    let d = usize::from(!nodegrid::wire::should_dial(&hosts[0], &hosts[1]));
    let (dh, ah) = (&hosts[d], &hosts[1 - d]);
    let list = [hosts[0].as_str(), hosts[1].as_str()];
    let dialer = start(dh, &list, &["--auth-token", "wrong-token"]);
    let acceptor = start(ah, &list, &["--auth-token", "right-token"]);
    assert_names_itself(
        &dialer,
        ah,
        &format!(
            "{ah} refused our credentials (HTTP 403: invalid token; its clock is within 2s of \
             ours): check the token or keys and the clocks"
        ),
    );
    assert_names_itself(
        &acceptor,
        dh,
        &format!(
            "refused a grid connection from 127.0.0.1:PORT (claims to be {dh}) at the HTTP \
             upgrade: invalid token (a plain token); check that every node has the same token"
        ),
    );
}

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca() -> Ca {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

fn node_cert(dir: &Path, name: &str, ca: &Ca) -> (PathBuf, PathBuf) {
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ])));
    let key = rcgen::KeyPair::generate().unwrap();
    let c = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (cp, kp) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&cp, c.pem()).unwrap();
    std::fs::write(&kp, key.serialize_pem()).unwrap();
    (cp, kp)
}

/// Mutual TLS, and the accepting node's certificate is signed by a CA the dialer does not
/// trust: the dialer names its certificate's problem, the acceptor that the dialer does not
/// trust it.
#[test]
fn tls_certificate_from_an_unknown_ca() {
    let dir = std::env::temp_dir().join(format!("nodegrid-cli-diag-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (good, other) = (ca(), ca());
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, good.cert.pem()).unwrap();
    let (pa, pb) = (free_port(), free_port());
    let hosts = [
        format!("https://127.0.0.1:{pa}"),
        format!("https://127.0.0.1:{pb}"),
    ];
    let d = usize::from(!nodegrid::wire::should_dial(&hosts[0], &hosts[1]));
    let (dh, ah) = (&hosts[d], &hosts[1 - d]);
    let list = [hosts[0].as_str(), hosts[1].as_str()];
    let (dc, dk) = node_cert(&dir, "dialer", &good);
    let (ac, ak) = node_cert(&dir, "acceptor", &other);
    let tls = |c: &Path, k: &Path| {
        vec![
            "--auth-token".to_string(),
            "t".into(),
            "--tls-cert".into(),
            c.display().to_string(),
            "--tls-key".into(),
            k.display().to_string(),
            "--tls-ca".into(),
            ca_path.display().to_string(),
        ]
    };
    let dargs = tls(&dc, &dk);
    let aargs = tls(&ac, &ak);
    let dargs: Vec<&str> = dargs.iter().map(String::as_str).collect();
    let aargs: Vec<&str> = aargs.iter().map(String::as_str).collect();
    let dialer = start(dh, &list, &dargs);
    let acceptor = start(ah, &list, &aargs);
    assert_names_itself(
        &dialer,
        ah,
        &format!(
            "TLS handshake with {ah} failed: its certificate is signed by an unknown authority; \
             check that our CA bundle (--tls-ca) contains the CA that signed its certificate"
        ),
    );
    // The acceptor cannot know which peer it was: it names the source address.
    let want = "TLS handshake with 127.0.0.1:PORT failed: it does not trust our certificate \
                (unknown authority); check that its CA bundle (--tls-ca) contains the CA that \
                signed our certificate";
    wait_until("the acceptor's TLS warning", || {
        acceptor.warnings().iter().any(|w| w == want)
    });
    assert_eq!(acceptor.warnings().iter().filter(|w| *w == want).count(), 1);
    drop((dialer, acceptor));
    let _ = std::fs::remove_dir_all(dir);
}
