//! End-to-end tests of the `nodegrid` binary: bench JSON for every mode, a multi-process
//! cluster that loses and regains a node mid-run, and a node's audit trail flushed on SIGTERM.

mod common;
use common::free_port;

use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nodegrid"));
    c.env_remove("RUST_LOG");
    c
}

const KEYS: &[&str] = &[
    "mode",
    "nodes",
    "payload_bytes",
    "concurrency",
    "duration_s",
    "ops",
    "errors",
    "ops_per_sec",
    "mib_per_sec",
    "latency_us",
    "peak_rss_bytes",
    "ratio_vs_baseline",
    "timeline",
];

/// Runs `nodegrid bench ARGS --warmup 0.2 --json`, asserts it succeeded (showing its stderr
/// otherwise) and returns its JSON lines.
fn bench_json(args: &[&str]) -> Vec<Value> {
    let out = bin()
        .arg("bench")
        .args(args)
        .args(["--warmup", "0.2", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_lines(&out.stdout)
}

fn parse_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

fn check_result(v: &Value, mode: &str, baseline: bool) {
    let o = v.as_object().expect("object");
    for k in KEYS {
        assert!(o.contains_key(*k), "{mode}: missing key {k}: {v}");
    }
    assert_eq!(
        o.contains_key("baseline"),
        baseline,
        "{mode}: baseline key only with --baseline"
    );
    let extra: Vec<_> = o
        .keys()
        .filter(|k| !KEYS.contains(&k.as_str()) && *k != "baseline")
        .collect();
    assert!(extra.is_empty(), "{mode}: unexpected keys {extra:?}");
    assert_eq!(v["mode"], mode);
    assert!(v["ops"].as_u64().unwrap() > 0, "{mode}: no ops: {v}");
    assert_eq!(v["errors"].as_u64(), Some(0), "{mode}: errors: {v}");
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            v["latency_us"][p].as_f64().unwrap() > 0.0,
            "{mode}: latency {p}: {v}"
        );
    }
    let tl = v["timeline"].as_array().unwrap();
    let secs = v["duration_s"].as_f64().unwrap().ceil() as usize;
    assert_eq!(
        tl.len(),
        secs,
        "one timeline entry per measured second: {v}"
    );
    let sum: u64 = tl.iter().map(|e| e["ops"].as_u64().unwrap()).sum();
    assert_eq!(Some(sum), v["ops"].as_u64(), "the timeline adds up: {v}");
    assert!(
        tl.iter().all(|e| e["ops"].as_u64().unwrap() > 0),
        "every second counted calls: {v}"
    );
    if baseline {
        assert!(v["baseline"]["ops_per_sec"].as_f64().unwrap() > 0.0);
        assert!(v["ratio_vs_baseline"].as_f64().unwrap() > 0.0);
    } else {
        assert!(v["ratio_vs_baseline"].is_null());
    }
}

#[test]
fn bench_json_for_every_grid_mode() {
    let lines = bench_json(&["--mode", "all", "--duration", "1", "--concurrency", "8"]);
    let modes: Vec<&str> = lines.iter().map(|v| v["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["single", "stream-out", "stream-in", "stream-bidi"]);
    for (v, m) in lines.iter().zip(modes) {
        check_result(v, m, false);
    }
}

#[test]
fn bench_json_rest_modes_and_baseline() {
    for mode in ["rest-upload", "rest-download"] {
        let lines = bench_json(&[
            "--mode",
            mode,
            "--duration",
            "1",
            "--payload",
            "268435456",
            "--concurrency",
            "1",
        ]);
        assert_eq!(lines.len(), 1);
        check_result(&lines[0], mode, false);
        // 256 MiB per call, streamed: the process stays far below the payload size.
        let rss = lines[0]["peak_rss_bytes"].as_u64().unwrap();
        assert!(
            rss > 0 && rss < 64 << 20,
            "{mode}: peak RSS {rss} must stay far below 256 MiB"
        );
    }
    // With --baseline the grid and the baseline take turns in slices of a second; over two
    // seconds each slice fills its own second of the timeline. Each stream baseline (`mux`, the
    // default, and `wire`), the echo baseline of stream-bidi and the echo baseline over one
    // connection per pair of 3 nodes are measured.
    for (mode, secs, stream_baseline, nodes) in [
        ("single", "1", "mux", "2"),
        ("single", "1", "mux", "3"),
        ("stream-out", "2", "mux", "2"),
        ("stream-in", "1", "wire", "2"),
        ("stream-bidi", "1", "mux", "2"),
    ] {
        let lines = bench_json(&[
            "--mode",
            mode,
            "--duration",
            secs,
            "--baseline",
            "--stream-baseline",
            stream_baseline,
            "--nodes",
            nodes,
            "--concurrency",
            "4",
        ]);
        check_result(&lines[0], mode, true);
    }
}

#[test]
fn bench_over_tls() {
    let lines = bench_json(&[
        "--tls",
        "--mode",
        "all",
        "--duration",
        "1",
        "--concurrency",
        "4",
    ]);
    assert_eq!(lines.len(), 4);
    for v in &lines {
        let mode = v["mode"].as_str().unwrap().to_string();
        check_result(v, &mode, false);
    }
}

#[test]
fn bench_rejects_bad_options() {
    let out = bin()
        .args(["bench", "--nodes", "1", "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes must be at least 2"));
    let out = bin().args(["bench", "--duration", "-1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(local: &str, hosts: &str, extra_env: &[(&str, &str)]) -> Node {
    let mut c = bin();
    c.args([
        "node",
        "--local",
        local,
        "--hosts",
        hosts,
        "--auth-token",
        "multi-process-test",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in extra_env {
        c.env(k, v);
    }
    Node(c.spawn().unwrap())
}

fn term(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: sending a signal to our own child process, whose pid we hold.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill(SIGTERM) failed");
}

#[test]
fn multi_process_cluster_survives_a_node_restart() {
    let ports = [free_port(), free_port(), free_port()];
    let hosts: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let all = hosts.join(",");
    let _n0 = start_node(&hosts[0], &all, &[]);
    let n1 = start_node(&hosts[1], &all, &[]);
    let bench = bin()
        .args([
            "bench",
            "--local",
            &hosts[2],
            "--hosts",
            &all,
            "--auth-token",
            "multi-process-test",
            "--duration",
            "12",
            "--warmup",
            "1",
            "--json",
            "--concurrency",
            "8",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill node 1 three seconds into the measurement, restart it two seconds later.
    std::thread::sleep(Duration::from_secs(4));
    drop(n1);
    std::thread::sleep(Duration::from_secs(2));
    let _n1 = start_node(&hosts[1], &all, &[]);
    let out = bench.wait_with_output().unwrap();
    let lines = parse_lines(&out.stdout);
    assert_eq!(
        lines.len(),
        1,
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = &lines[0];
    assert!(
        !out.status.success(),
        "errors during the outage give a non-zero exit"
    );
    assert!(
        v["errors"].as_u64().unwrap() > 0,
        "the outage must show as errors: {v}"
    );
    let tl = v["timeline"].as_array().unwrap();
    assert_eq!(tl.len(), 12);
    // The last seconds: the node is back, calls succeed without errors.
    let tail = &tl[tl.len() - 2..];
    for s in tail {
        assert!(
            s["ops"].as_u64().unwrap() > 0,
            "calls succeed again: {tl:?}"
        );
        assert_eq!(
            s["errors"].as_u64(),
            Some(0),
            "no errors after the reconnect: {tl:?}"
        );
    }
    let errors_at: Vec<usize> = tl
        .iter()
        .enumerate()
        .filter(|(_, s)| s["errors"].as_u64() > Some(0))
        .map(|(i, _)| i)
        .collect();
    assert!(
        errors_at.iter().all(|i| (1..10).contains(i)),
        "errors only around the outage: {tl:?}"
    );
}

/// A webhook receiver on 127.0.0.1 counting the audit entries (NDJSON lines) it receives.
fn start_receiver() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let c = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let c = c.clone();
            std::thread::spawn(move || serve_http(s, &c));
        }
    });
    (format!("http://{addr}/audit"), count)
}

/// Minimal HTTP/1.1 server: reads requests with Content-Length, counts JSON lines, answers 200.
fn serve_http(s: std::net::TcpStream, count: &AtomicUsize) {
    use std::io::{Read, Write};
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        let mut chunked = false;
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(len, 0);
            r.read_exact(&mut body).unwrap();
        }
        let n = String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.contains("\"grid.single.78\""))
            .count();
        count.fetch_add(n, Ordering::SeqCst);
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    }
}

#[test]
fn node_audit_entries_are_flushed_on_sigterm() {
    let (endpoint, count) = start_receiver();
    let ports = [free_port(), free_port()];
    let hosts: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let all = hosts.join(",");
    let env = [
        ("NODEGRID_AUDIT_WEBHOOK_ENABLE", "on"),
        ("NODEGRID_AUDIT_WEBHOOK_ENDPOINT", endpoint.as_str()),
        ("NODEGRID_AUDIT_WEBHOOK_BATCH_SIZE", "1000"),
        // A long flush interval: entries can only arrive through the shutdown flush.
        ("NODEGRID_AUDIT_WEBHOOK_FLUSH_INTERVAL", "1h"),
    ];
    let node = start_node(&hosts[0], &all, &env);
    // Drive exactly N single calls to node 0's echo handler from a bench acting as node 1.
    let n = 37;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let m = nodegrid::Manager::builder(hosts[1].clone(), hosts.clone())
            .auth(nodegrid::auth::Auth::shared_token("multi-process-test"))
            .build()
            .unwrap();
        let l = tokio::net::TcpListener::bind(("127.0.0.1", ports[1]))
            .await
            .unwrap();
        let m2 = m.clone();
        tokio::spawn(async move { m2.serve(l).await });
        let c = m.connection(&hosts[0]).unwrap();
        c.wait_connected(Duration::from_secs(20)).await.unwrap();
        for i in 0..n {
            assert_eq!(
                c.request(78, format!("call {i}")).await.unwrap(),
                format!("call {i}")
            );
        }
        m.shutdown();
    });
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "nothing flushed before the shutdown"
    );
    term(&node.0);
    let mut node = node;
    let t0 = Instant::now();
    loop {
        if let Some(status) = node.0.try_wait().unwrap() {
            assert!(status.success(), "clean exit on SIGTERM: {status:?}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "node did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        n,
        "exactly one audit entry per call"
    );
}
