//! Real-network fault tests: `nodegrid` processes in two Linux network namespaces joined by a
//! veth pair, with the link cut and restored under load, and a slow link (`tc tbf`) carrying
//! large streams.
//!
//! Needs root (namespaces, veth, qdiscs) and iproute2 (`ip`, `tc`, `ss`). Without root, or
//! without the tools or the right to create namespaces, each test prints `skipping: <reason>`
//! and passes, unless `NODEGRID_REQUIRE_NETNS` is set (CI sets it), which turns a skip into a
//! failure. On a root machine where `tbf` cannot be installed the slow-link test fails.
//!
//! Everything lives inside the two namespaces (private 10.213.x.0/30 addresses); the host's
//! interfaces and addresses are never touched. A drop guard kills the processes and deletes
//! the namespaces (and with them the veth pair and its qdiscs), also when a test panics.
//!
//! Bounds come from PROTOCOL.md: connection ping every 10 s, dead after > 20 s without a
//! pong, checked at each ping tick (§4.3, so a silent peer is noticed 20–30 s after the last
//! pong); redial pacing [1 s, 2 s) after a failed attempt and 2 s per dial attempt (§4.6, §10).

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "netns-test";

/// Connection ping interval (§4.3).
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// A session without a connection-level pong for longer than this is dead (§4.3).
const PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// Worst case to notice a silent peer: the pong timeout is only checked at each ping tick.
const DETECT_BOUND: Duration =
    Duration::from_secs(PONG_TIMEOUT.as_secs() + PING_INTERVAL.as_secs());
/// Upper bound of the redial pacing after a failed attempt (§4.6).
const REDIAL_MAX: Duration = Duration::from_secs(2);
/// Dial + upgrade timeout of one attempt (§10).
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack for process scheduling on a busy 2-core machine and the observation granularity.
const MARGIN: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// Preconditions and skipping

/// Why namespace tests cannot run on this machine, if they cannot.
fn precondition() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!(
            "not root (euid {euid}): network namespaces, veth and tc need root"
        ));
    }
    for tool in ["ip", "tc", "ss"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Some(format!("`{tool}` (iproute2) is not available"));
        }
    }
    None
}

/// Prints the skip reason where the test harness does not capture it, or fails the test when
/// `NODEGRID_REQUIRE_NETNS` is set.
fn skip(test: &str, reason: &str) {
    if std::env::var_os("NODEGRID_REQUIRE_NETNS").is_some() {
        panic!("{test}: cannot run ({reason}) but NODEGRID_REQUIRE_NETNS is set");
    }
    let _ = writeln!(std::io::stderr(), "{test}: skipping: {reason}");
}

// ---------------------------------------------------------------------------------------------
// Commands

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs a command to completion; its stdout, or a description of the failure.
fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{cmd}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(cmd: &str, args: &[&str]) -> String {
    run(cmd, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Collects everything a child writes to a pipe.
fn collect(mut r: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The namespace pair

/// Namespaces are named `nodegrid-<pid>-<tag><side>`.
const NS_PREFIX: &str = "nodegrid-";

/// Deletes namespaces left behind by an earlier run of these tests that was killed before its
/// guard ran (its processes died with it, see `Net::spawn`): ours by name, owner pid gone.
fn remove_stale_namespaces() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|r| r.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

/// A process started in one of the namespaces.
struct Proc {
    name: String,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// Two namespaces joined by a veth pair; side 0 has 10.213.`subnet`.1/30, side 1 has .2/30.
/// Dropping it kills the processes and deletes the namespaces.
struct Net {
    ns: Vec<String>,
    dev: [String; 2],
    addr: [String; 2],
    procs: Vec<Proc>,
}

impl Net {
    /// Sets up the pair, or returns the reason namespaces cannot be used here. Failures after
    /// the first namespace exists are test failures (the guard cleans up).
    fn create(tag: char, subnet: u8) -> Result<Net, String> {
        remove_stale_namespaces();
        let pid = std::process::id();
        let mut net = Net {
            ns: Vec::new(),
            dev: [format!("ng{pid}{tag}a"), format!("ng{pid}{tag}b")],
            addr: [format!("10.213.{subnet}.1"), format!("10.213.{subnet}.2")],
            procs: Vec::new(),
        };
        let first = format!("{NS_PREFIX}{pid}-{tag}0");
        run("ip", &["netns", "add", &first])
            .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        net.ns.push(first);
        let second = format!("{NS_PREFIX}{pid}-{tag}1");
        must("ip", &["netns", "add", &second]);
        net.ns.push(second);
        // Both ends are created directly inside their namespaces, never in the host's.
        must(
            "ip",
            &[
                "link",
                "add",
                &net.dev[0],
                "netns",
                &net.ns[0],
                "type",
                "veth",
                "peer",
                "name",
                &net.dev[1],
                "netns",
                &net.ns[1],
            ],
        );
        for side in 0..2 {
            let (ns, dev) = (&net.ns[side], &net.dev[side]);
            let cidr = format!("{}/30", net.addr[side]);
            must("ip", &["-n", ns, "addr", "add", &cidr, "dev", dev]);
            must("ip", &["-n", ns, "link", "set", "dev", "lo", "up"]);
            must("ip", &["-n", ns, "link", "set", "dev", dev, "up"]);
        }
        Ok(net)
    }

    fn set_link(&self, side: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        must(
            "ip",
            &[
                "-n",
                &self.ns[side],
                "link",
                "set",
                "dev",
                &self.dev[side],
                state,
            ],
        );
    }

    /// Shapes the egress of both veth ends with a token bucket. Fails loudly when `tbf` is not
    /// available, after trying to load it.
    fn shape(&self, rate: &str) {
        for side in 0..2 {
            let args = [
                "-n",
                &self.ns[side],
                "qdisc",
                "add",
                "dev",
                &self.dev[side],
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "32kb",
                "latency",
                "100ms",
            ];
            if let Err(first) = run("tc", &args) {
                let modprobe = run("modprobe", &["sch_tbf"]);
                if let Err(e) = run("tc", &args) {
                    panic!(
                        "tbf is not available on this root machine, the slow-link test cannot \
                         run: {first}; modprobe sch_tbf: {modprobe:?}; retry: {e}"
                    );
                }
            }
        }
    }

    /// Starts `nodegrid ARGS` in namespace `side`, logging at `log` (RUST_LOG) if given.
    fn spawn(&mut self, side: usize, name: &str, args: &[&str], log: Option<&str>) -> usize {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns[side],
            env!("CARGO_BIN_EXE_nodegrid"),
        ])
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(l) = log {
            c.env("RUST_LOG", l);
        }
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child if
        // this test thread dies without running the guard (e.g. on SIGKILL of the harness).
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = c.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stderr.take().expect("piped"), stderr.clone());
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            stderr,
        });
        self.procs.len() - 1
    }

    /// Starts `nodegrid node` printing its statistics every second.
    fn node(&mut self, side: usize, local: &str, hosts: &str) -> Feed {
        let i = self.spawn(
            side,
            &format!("node {local}"),
            &[
                "node",
                "--local",
                local,
                "--hosts",
                hosts,
                "--auth-token",
                TOKEN,
                "--stats-interval",
                "1",
            ],
            None,
        );
        let out = self.procs[i].child.stdout.take().expect("piped");
        Feed::start(format!("node {local}"), i, out)
    }

    /// Starts `nodegrid bench --json` joining the cluster as `local`; returns a handle.
    fn bench(&mut self, side: usize, local: &str, hosts: &str, extra: &[&str]) -> Bench {
        let mut args = vec![
            "bench",
            "--local",
            local,
            "--hosts",
            hosts,
            "--auth-token",
            TOKEN,
            "--json",
        ];
        args.extend_from_slice(extra);
        // Warnings include the reason of every session end.
        let i = self.spawn(side, &format!("bench {local}"), &args, Some("warn"));
        let out = Arc::new(Mutex::new(Vec::new()));
        collect(
            self.procs[i].child.stdout.take().expect("piped"),
            out.clone(),
        );
        Bench { proc: i, out }
    }

    /// Waits for a process to exit, failing the test at `deadline`.
    fn wait(&mut self, i: usize, deadline: Instant) -> ExitStatus {
        loop {
            let p = &mut self.procs[i];
            if let Some(s) = p.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "{} did not exit in time", p.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The lines a process wrote to stderr so far that contain `pat`.
    fn log_lines(&self, i: usize, pat: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.procs[i].stderr.lock().unwrap())
            .lines()
            .filter(|l| l.contains(pat))
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// Established TCP connections in namespace `side` with `port` at either end.
    fn established(&self, side: usize, port: u16) -> usize {
        let out = must(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns[side],
                "ss",
                "-Htn",
                "state",
                "established",
            ],
        );
        let suffix = format!(":{port}");
        out.lines()
            .filter(|l| l.split_whitespace().any(|f| f.ends_with(&suffix)))
            .count()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if std::thread::panicking() {
            for p in &self.procs {
                let err = String::from_utf8_lossy(&p.stderr.lock().unwrap()).into_owned();
                let tail: Vec<&str> = err.lines().rev().take(20).collect();
                eprintln!("--- stderr of {} (last lines) ---", p.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        for ns in &self.ns {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Node statistics and bench results

/// One statistics line of a node: its only connection, and when the line arrived.
#[derive(Clone)]
struct Snap {
    at: Instant,
    conn: Value,
}

impl Snap {
    fn u(&self, key: &str) -> u64 {
        self.conn[key]
            .as_u64()
            .unwrap_or_else(|| panic!("stats field {key} missing: {}", self.conn))
    }

    fn connected(&self) -> bool {
        self.conn["connected"].as_bool() == Some(true)
    }
}

/// The statistics lines of a running node, as they arrive.
struct Feed {
    name: String,
    proc: usize,
    rx: Receiver<Snap>,
    all: Vec<Snap>,
}

impl Feed {
    fn start(name: String, proc: usize, out: impl Read + Send + 'static) -> Feed {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let conn = v["grid"]["connections"][0].clone();
                if tx
                    .send(Snap {
                        at: Instant::now(),
                        conn,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        Feed {
            name,
            proc,
            rx,
            all: Vec::new(),
        }
    }

    /// The first line from now on that satisfies `pred`; fails the test at `deadline`.
    fn wait_for(&mut self, what: &str, deadline: Instant, pred: impl Fn(&Snap) -> bool) -> Snap {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(s) => {
                    let hit = pred(&s);
                    self.all.push(s.clone());
                    if hit {
                        return s;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: timed out waiting for {what}; last stats: {}",
                    self.name,
                    self.all
                        .last()
                        .map(|s| s.conn.to_string())
                        .unwrap_or_default()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited while waiting for {what}", self.name)
                }
            }
        }
    }

    /// Takes the lines that arrived so far without waiting.
    fn drain(&mut self) {
        while let Ok(s) = self.rx.try_recv() {
            self.all.push(s);
        }
    }
}

struct Bench {
    proc: usize,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Bench {
    /// Waits for the bench to exit and returns its status and JSON result.
    fn finish(&self, net: &mut Net, deadline: Instant) -> (ExitStatus, Value) {
        let status = net.wait(self.proc, deadline);
        // The pipe reader ends with the process; give it a moment to take the last bytes.
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned();
            if let Some(l) = text.lines().find(|l| l.starts_with('{')) {
                if text.ends_with('\n') {
                    let v =
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("bench JSON: {e}: {l}"));
                    return (status, v);
                }
            }
            assert!(
                Instant::now() < until,
                "{} printed no result ({status}): {text}",
                net.procs[self.proc].name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The bench timeline as (ops, errors) per measured second.
fn timeline(v: &Value) -> Vec<(u64, u64)> {
    v["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline: {v}"))
        .iter()
        .map(|s| {
            (
                s["ops"].as_u64().unwrap_or(0),
                s["errors"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Scenario 1: link down under load, then up again

/// Measured seconds of the outage benches: ≈ 11 s of load before the cut (the first pong), up
/// to 33 s until the sessions are declared dead, the reconnect (≤ 5 s), and at least 4 s of
/// successful calls after it.
const OUTAGE_RUN_SECS: u64 = 56;

/// What a bench timeline says about the outage.
struct Outage {
    /// Last second with completed calls before the failures (the link went down in it).
    last_busy: usize,
    /// First second with failed calls (the bench declared the session dead in it).
    first_error: usize,
    /// First second after the failures with completed calls again.
    resumed: usize,
    ops_before: u64,
    errors: u64,
    ops_after: u64,
}

fn check_outage(name: &str, v: &Value) -> Outage {
    let tl = timeline(v);
    assert_eq!(tl.len() as u64, OUTAGE_RUN_SECS, "{name}: timeline {tl:?}");
    let first_error = tl
        .iter()
        .position(|&(_, e)| e > 0)
        .unwrap_or_else(|| panic!("{name}: in-flight calls must fail during the outage: {tl:?}"));
    let last_busy = (0..first_error)
        .rev()
        .find(|&i| tl[i].0 > 0)
        .unwrap_or_else(|| panic!("{name}: no calls completed before the outage: {tl:?}"));
    assert!(
        last_busy >= 2 && tl[..last_busy].iter().all(|&(o, _)| o > 0),
        "{name}: calls must succeed every second before the outage: {tl:?}"
    );
    // The link went down during second `last_busy`, the failures came in `first_error`.
    let bound = (DETECT_BOUND + MARGIN).as_secs() as usize;
    assert!(
        first_error - last_busy <= bound,
        "{name}: in-flight calls failed {} s after the last completed call (bound {bound} s): \
         {tl:?}",
        first_error - last_busy
    );
    let resumed = (first_error + 1..tl.len())
        .find(|&i| tl[i].0 > 0)
        .unwrap_or_else(|| panic!("{name}: calls never succeeded again: {tl:?}"));
    assert!(
        tl.len() - resumed >= 4,
        "{name}: at least 3 s of successful calls after the reconnect: {tl:?}"
    );
    for (i, &(ops, errors)) in tl.iter().enumerate().skip(resumed + 1) {
        assert!(
            ops > 0 && errors == 0,
            "{name}: second {i} after the reconnect has {ops} ops, {errors} errors: {tl:?}"
        );
    }
    let sum =
        |r: std::ops::Range<usize>, f: fn(&(u64, u64)) -> u64| tl[r].iter().map(f).sum::<u64>();
    let o = Outage {
        last_busy,
        first_error,
        resumed,
        ops_before: sum(0..last_busy + 1, |s| s.0),
        errors: sum(0..tl.len(), |s| s.1),
        ops_after: sum(resumed..tl.len(), |s| s.0),
    };
    assert_eq!(
        v["errors"].as_u64(),
        Some(o.errors),
        "{name}: errors only in the timeline"
    );
    o
}

/// The reason of the first session end a process logged (the node rate-limits its session-end
/// warnings, but its peer-state lines carry the reason too).
fn first_end(net: &Net, proc: usize) -> String {
    let text = String::from_utf8_lossy(&net.procs[proc].stderr.lock().unwrap()).into_owned();
    let start = match (text.find("session ended: "), text.find("no pong from peer")) {
        (Some(a), Some(b)) if b < a => b,
        (Some(a), _) => a + "session ended: ".len(),
        (None, Some(b)) => b,
        (None, None) => return String::new(),
    };
    let r = &text[start..];
    let end = [")", " (WARNING)", " local=", "\n"]
        .iter()
        .filter_map(|p| r.find(p))
        .min()
        .unwrap_or(r.len());
    r[..end].to_string()
}

#[test]
fn link_down_fails_calls_within_liveness_bound_and_link_up_reconnects() {
    const TEST: &str = "link_down_up";
    if let Some(reason) = precondition() {
        return skip(TEST, &reason);
    }
    let mut net = match Net::create('l', 1) {
        Ok(n) => n,
        Err(reason) => return skip(TEST, &reason),
    };
    // Two independent 2-node clusters over the same link: node A (side 0) with a bench of
    // single requests, node A' (side 0) with a bench of two-way streams; the benches are the
    // second node of each cluster (side 1).
    let ports = [9000u16, 9001];
    let modes: [(&str, &str); 2] = [("single", "8"), ("stream-bidi", "2")];
    let hosts: Vec<[String; 2]> = ports
        .iter()
        .map(|p| [0, 1].map(|s| format!("http://{}:{p}", net.addr[s])))
        .collect();
    let mut feeds = Vec::new();
    for h in &hosts {
        feeds.push(net.node(0, &h[0], &h.join(",")));
    }
    let started = Instant::now();
    let run_secs = OUTAGE_RUN_SECS.to_string();
    let benches: Vec<Bench> = hosts
        .iter()
        .zip(modes)
        .map(|(h, (mode, conc))| {
            net.bench(
                1,
                &h[1],
                &h.join(","),
                &[
                    "--mode",
                    mode,
                    "--payload",
                    "512",
                    "--concurrency",
                    conc,
                    "--duration",
                    &run_secs,
                    "--warmup",
                    "1",
                ],
            )
        })
        .collect();

    // Load is running on both clusters for a few seconds.
    let count = ["requests_in", "streams_in"];
    let progress = ["requests_in", "messages_in"];
    for (f, key) in feeds.iter_mut().zip(count) {
        f.wait_for(
            "the bench's calls",
            started + Duration::from_secs(40),
            |s| s.connected() && s.u(key) > 0,
        );
    }
    for (f, key) in feeds.iter_mut().zip(progress) {
        let s0 = f.all.last().cloned().expect("a line");
        let s1 = f.wait_for("3 s of load", s0.at + Duration::from_secs(10), |s| {
            s.at >= s0.at + Duration::from_secs(3)
        });
        assert!(
            s1.connected() && s1.u(key) > s0.u(key) + 10,
            "{}: load must be flowing: {} then {}",
            f.name,
            s0.conn,
            s1.conn
        );
    }
    // Cut in the steady state, once pings are being answered (the first ping goes out 10 s
    // into the session), so detection is measured from a real last pong.
    let mut session_start_ms = Vec::new();
    for f in &mut feeds {
        let s = f.wait_for("the first pong", started + Duration::from_secs(60), |s| {
            s.connected() && s.u("last_pong_unix_ms") > 0
        });
        session_start_ms.push(s.u("last_connect_unix_ms"));
    }
    for side in 0..2 {
        for p in ports {
            assert_eq!(net.established(side, p), 1, "one session per cluster");
        }
    }

    // Cut the link (node A's end). Both ends of both sessions must give up within the
    // liveness bound; ss shows when each process closed its socket.
    net.set_link(0, false);
    let (down_at, down_ms) = (Instant::now(), unix_ms());
    let mut ended: [[Option<Duration>; 2]; 2] = [[None; 2]; 2];
    let deadline = down_at + DETECT_BOUND + MARGIN;
    while ended.iter().flatten().any(Option::is_none) {
        for (side, row) in ended.iter_mut().enumerate() {
            for (c, e) in row.iter_mut().enumerate() {
                if e.is_none() && net.established(side, ports[c]) == 0 {
                    *e = Some(down_at.elapsed());
                }
            }
        }
        assert!(
            Instant::now() < deadline || ended.iter().flatten().all(Option::is_some),
            "sessions still established {:?} after the link went down (bound {:?}); closed \
             after [node, bench] × [single, stream]: {ended:?}",
            down_at.elapsed(),
            DETECT_BOUND + MARGIN
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut first_down: Vec<Snap> = Vec::new();
    for f in &mut feeds {
        first_down.push(
            f.wait_for("the session to end", Instant::now() + MARGIN, |s| {
                !s.connected()
            }),
        );
    }

    // Restore the link: the dialer's next attempt succeeds.
    net.set_link(0, true);
    let (up_at, up_ms) = (Instant::now(), unix_ms());
    let mut reconnect_ms = Vec::new();
    let mut dialer = Vec::new();
    for (f, key) in feeds.iter_mut().zip(progress) {
        let s = f.wait_for(
            "the reconnect",
            up_at + REDIAL_MAX + DIAL_TIMEOUT + MARGIN,
            |s| s.connected() && s.u("reconnects") >= 1,
        );
        let took = s.u("last_connect_unix_ms") as i64 - up_ms as i64;
        assert!(
            (0..=(REDIAL_MAX + DIAL_TIMEOUT + Duration::from_secs(1)).as_millis() as i64)
                .contains(&took),
            "{}: reconnected {took} ms after the link came up: {}",
            f.name,
            s.conn
        );
        reconnect_ms.push(took);
        dialer.push(s.conn["dialer"].as_bool() == Some(true));
        // Long-lived streams reopen at once; their messages show that they work again.
        let n = s.u(key);
        f.wait_for(
            "calls to succeed again",
            up_at + Duration::from_secs(15),
            |s| s.connected() && s.u(key) > n + 10,
        );
    }

    let end = started + Duration::from_secs(OUTAGE_RUN_SECS + 40);
    let mut outages = Vec::new();
    for (b, (mode, _)) in benches.iter().zip(modes) {
        let (status, v) = b.finish(&mut net, end);
        assert_eq!(
            status.code(),
            Some(1),
            "{mode}: errors during the outage give exit code 1: {v}"
        );
        outages.push(check_outage(mode, &v));
    }
    for f in &mut feeds {
        f.drain();
        let last = f
            .all
            .iter()
            .rev()
            .find(|s| s.connected())
            .expect("connected line");
        assert_eq!(
            last.u("reconnects"),
            1,
            "{}: exactly one reconnect: {}",
            f.name,
            last.conn
        );
    }
    for (c, (mode, _)) in modes.iter().enumerate() {
        let o = &outages[c];
        let [node, bench] = [0, 1].map(|side| ended[side][c].unwrap_or_default());
        // The last pong the node had seen, from its last line before the session ended.
        let last_pong = feeds[c]
            .all
            .iter()
            .filter(|s| s.connected() && s.at < first_down[c].at)
            .map(|s| s.u("last_pong_unix_ms"))
            .max()
            .unwrap_or(0);
        let pong_age = (down_ms + node.as_millis() as u64) as i64 - last_pong as i64;
        eprintln!(
            "{mode}: link down {:.1} s into the session → sessions closed after {:.1} s (node: {:?}) / {:.1} s (bench: \
             {:?}), the node's last pong {:.1} s old then; link up → reconnected after {} ms \
             (node dialer={}); bench: {} ops until second {}, first errors in second {} ({} \
             errors in all), calls again from second {} ({} ops after)",
            (down_ms - session_start_ms[c]) as f64 / 1000.0,
            node.as_secs_f64(),
            first_end(&net, feeds[c].proc),
            bench.as_secs_f64(),
            first_end(&net, benches[c].proc),
            pong_age as f64 / 1000.0,
            reconnect_ms[c],
            dialer[c],
            o.ops_before,
            o.last_busy,
            o.first_error,
            o.errors,
            o.resumed,
            o.ops_after
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario 2: a slow link with large streams in flight

/// Measured seconds of the slow-link bench: longer than the pong timeout plus a ping interval.
const SLOW_RUN_SECS: u64 = 40;

/// Node A (side 0) streams `payload`-byte messages to a bench (side 1) on `concurrency`
/// streams over a link shaped to `rate_bps` in both directions, for 40 s. The connection must
/// stay up (no failed call, no reconnect, pongs throughout) while the streams make progress
/// at about the link rate.
fn slow_link(test: &str, tag: char, subnet: u8, rate_bps: u64, payload: u64, concurrency: u32) {
    if let Some(reason) = precondition() {
        return skip(test, &reason);
    }
    let mut net = match Net::create(tag, subnet) {
        Ok(n) => n,
        Err(reason) => return skip(test, &reason),
    };
    net.shape(&format!("{rate_bps}bit"));
    let h = [0, 1].map(|s| format!("http://{}:9000", net.addr[s]));
    let all = h.join(",");
    let mut feed = net.node(0, &h[0], &all);
    let started = Instant::now();
    let bench = net.bench(
        1,
        &h[1],
        &all,
        &[
            "--mode",
            "stream-out",
            "--payload",
            &payload.to_string(),
            "--concurrency",
            &concurrency.to_string(),
            "--duration",
            &SLOW_RUN_SECS.to_string(),
            "--warmup",
            "0",
        ],
    );
    let first = feed.wait_for("the connection", started + Duration::from_secs(40), |s| {
        s.connected()
    });
    let (status, v) = bench.finish(&mut net, started + Duration::from_secs(SLOW_RUN_SECS + 60));
    feed.drain();
    // The node's view while the bench measured: the bench starts measuring once connected
    // (no warm-up), so until about `first` + 40 s; its last lines show the bench leaving.
    let run_end = first.at + Duration::from_secs(SLOW_RUN_SECS - 2);
    let during: Vec<&Snap> = feed
        .all
        .iter()
        .filter(|s| s.at >= first.at && s.at <= run_end)
        .collect();
    let last = *during.last().expect("node stats during the run");
    let tl = timeline(&v);
    let pongs: std::collections::BTreeSet<u64> = during
        .iter()
        .map(|s| s.u("last_pong_unix_ms"))
        .filter(|&t| t > 0)
        .collect();
    let rtts: Vec<u64> = during.iter().map(|s| s.u("last_rtt_us") / 1000).collect();
    let ops: u64 = tl.iter().map(|s| s.0).sum();
    let rate = (ops * payload) as f64 / SLOW_RUN_SECS as f64 / (rate_bps / 8) as f64;
    let figures = format!(
        "{test}: {concurrency} stream(s) of {payload}-byte messages at {rate_bps} bit/s: \
         {status}, {ops} messages ({:.0}% of the link rate), errors {}, node up for {:?} \
         with {} reconnects, {} distinct pongs, ping RTT ms over time {rtts:?} \
         (max {} ms); session ends in the node's log {:?} (the bench leaving included), in \
         the bench's log {:?}; timeline {tl:?}",
        rate * 100.0,
        v["errors"],
        last.at - first.at,
        last.u("reconnects"),
        pongs.len(),
        last.u("max_rtt_us") / 1000,
        net.log_lines(feed.proc, "session ended"),
        net.log_lines(bench.proc, "session ended"),
    );
    eprintln!("{figures}");
    // The connection stayed up for longer than the pong timeout plus a ping interval.
    assert!(
        during.iter().all(|s| s.connected()),
        "connection lost during the run: {figures}"
    );
    assert!(
        last.at - first.at >= DETECT_BOUND + Duration::from_secs(5),
        "the run must outlast the liveness bound: {figures}"
    );
    assert_eq!(last.u("reconnects"), 0, "no reconnect: {figures}");
    assert_eq!(last.u("connects"), 1, "one session: {figures}");
    assert!(status.success(), "no failed call on the bench: {figures}");
    assert_eq!(v["errors"].as_u64(), Some(0), "no stream error: {figures}");
    // Pings got through all along, behind stream data: pongs kept arriving and their
    // round trip shows the queueing on the slow link.
    assert!(pongs.len() >= 3, "pongs throughout the run: {figures}");
    assert!(
        last.u("max_rtt_us") >= 200_000,
        "pings must have queued behind stream data (is the link really shaped?): {figures}"
    );
    // The streams made progress all along, at about the link rate (so the link was full).
    assert_eq!(tl.len() as u64, SLOW_RUN_SECS, "{figures}");
    assert!(
        tl.windows(3).all(|w| w.iter().any(|s| s.0 > 0)),
        "stream progress in every 3 s: {figures}"
    );
    assert!(
        (0.5..=1.15).contains(&rate),
        "throughput near the shaped rate: {figures}"
    );
}

/// One large stream (256 KiB messages, 4 in flight) keeps a 4 Mbit/s link busy for 40 s:
/// ≈ 1 MiB of stream data is queued ahead of each ping (≈ 2 s at the link rate).
#[test]
fn slow_link_with_a_large_stream_keeps_the_connection_alive() {
    slow_link("slow_link", 's', 2, 4_000_000, 256 * 1024, 1);
}

/// Four large streams (1 MiB messages, 4 in flight each) on an 8 Mbit/s link: ≈ 16 MiB of
/// stream data is queued (≈ 17 s at the link rate). With a single outbound FIFO the
/// connection pings and pongs waited behind it (PROTOCOL.md §12 item 10) and the connection
/// was torn down every ~20 s; they now go out ahead of queued data, between frames.
#[test]
fn slow_link_with_many_large_streams_keeps_the_connection_alive() {
    slow_link("slow_link_heavy", 'h', 3, 8_000_000, 1024 * 1024, 4);
}
