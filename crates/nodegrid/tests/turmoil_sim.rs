//! Deterministic simulation tests with turmoil (issue 6, part 2).
//!
//! Two or three nodes run real managers over turmoil's simulated TCP (`net.rs`: a `Dialer` and
//! an accept loop feeding `GridService::serve_connection`). Each node runs a seeded workload of
//! single requests and streams, all with deadlines, while the test injects faults on a seeded
//! schedule: partitions (both directions or one), holds (both directions in turmoil, or one
//! direction with a read gate), node restarts (`Sim::bounce` and crash + restart: the manager
//! is rebuilt) and message latency. Then the network heals and the test checks:
//!
//! * every call started ends with success or an expected typed `nodegrid::Error` no later than
//!   its deadline plus [`DETECTION_BOUND`] (single requests: no later than the deadline plus
//!   the deadline sweep, [`SINGLE_SLACK`]); a call may only vanish if its own node crashed;
//! * a dialer that is disconnected when the network heals is connected again within
//!   [`reconnect_bound`] (redial pacing plus the handshake), unless an attempt of it was
//!   already stalled in its handshake at the heal: turmoil drops segments in a partition and
//!   never retransmits them, so such an attempt waits for its own timeout (dial timeout for the
//!   upgrade, `GridConfig::handshake_timeout` for Connect/ConnectResponse) before the next one
//!   starts; see `Shared::down_dialers`;
//! * by the time every fault is past the detection bound, every connection (both sides) is up
//!   and new calls (a single request and a stream per ordered pair) succeed;
//! * at the end no mux entry, running handler, in-flight call or queued message remains, the
//!   runtime of each node holds exactly the tasks of its live sessions and dial loops, and
//!   the simulated TCP stack holds exactly one socket per live session; no protocol error was
//!   ever counted.
//!
//! At least 200 seeded runs by default (40 per scenario); `NODEGRID_SIM_SEEDS=N` runs N per
//! scenario, `NODEGRID_SIM_SEED=S` only seed S (to reproduce a failure). The summary line
//! prints with `--nocapture`.
//!
//! Determinism: the fault schedule, the workload and turmoil (latencies, host order) derive
//! from the seed. The library's own randomness (mux-ID start, redial jitter, WebSocket masks,
//! instance IDs), tokio's `select!` branch order and hash-map iteration orders are not seeded,
//! so timings inside a run can differ between two runs of the same seed; the properties
//! checked hold for every run.

mod common;
#[path = "turmoil_sim/net.rs"]
mod net;

use bytes::Bytes;
use net::{host_name, host_string, DialCounters, Gates, TurmoilDialer, PORT};
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::{
    CallOptions, Error, GridConfig, Manager, MuxCounts, RemoteError, StreamContext, StreamInput,
    StreamOptions, StreamOutput, StreamSpec,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ECHO: u8 = 78;
const SLOW: u8 = 10;
const STREAM_ECHO: u8 = 78;
const COUNT: u8 = 77;
const TOKEN: &str = "turmoil-sim";

/// Simulated time per turmoil step.
const TICK: Duration = Duration::from_millis(20);

/// How long after the last connection-level pong a dead session is noticed at the latest
/// (PROTOCOL.md §4.3 and the table of §10): each side pings every 10 s and ends the session
/// when, at one of those 10 s ticks, more than 20 s passed since the last pong, so a silent
/// peer is noticed 20–30 s after its last pong. The library checks on its 100 ms
/// housekeeping sweep, which can delay each 10 s tick by up to 100 ms (0.3 s over the three
/// ticks); the remaining 0.7 s covers simulated latency (at most 500 ms per message here) and
/// the simulation step. A blocked write ends a session sooner (3–4 s, §8).
const DETECTION_BOUND: Duration = Duration::from_millis(31_000);

/// How late a single request may end after its deadline: long deadlines (> 2 s) are enforced
/// by the session's 100 ms sweep, short ones by an exact timer; plus two simulation steps.
const SINGLE_SLACK: Duration = Duration::from_millis(100 + 2 * 20);

/// The longest pause a stream caller takes between two rounds (a deadline that passes during
/// the pause is seen at the next operation).
const MAX_THINK: Duration = Duration::from_millis(200);

/// Most calls of the workload in flight per node.
const MAX_IN_FLIGHT: usize = 24;

/// When a dialer that is disconnected at the moment the network heals must be connected again
/// (PROTOCOL.md §4.6): the next attempt starts at most 2 s after the heal (a failed attempt
/// is followed by one at its start + U[1 s, 2 s), and an attempt gives up after the 2 s dial
/// timeout), then the TCP connect, the HTTP upgrade and the Connect/ConnectResponse exchange
/// take five one-way trips; each trip takes at most the maximum latency plus two steps
/// (delivery and processing). One more step of slack.
fn reconnect_bound(max_latency: Duration) -> Duration {
    Duration::from_secs(2) + 5 * (max_latency + 2 * TICK) + TICK
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Partition,
    OneWayHold,
    Bounce,
    Latency,
    Mix,
}

#[derive(Clone, Debug)]
enum Act {
    /// turmoil partition: segments between the two nodes are dropped, both directions.
    Partition(usize, usize),
    /// turmoil one-way partition: segments from the first to the second are dropped.
    PartitionOneway(usize, usize),
    /// turmoil hold: segments in both directions wait on the link until released.
    Hold(usize, usize),
    /// Read gate: the second node stops reading what the first sends.
    HoldOneway(usize, usize),
    /// Undoes any of the above between the two nodes (held segments are delivered).
    Heal(usize, usize),
    /// Restart the node's software at once: the manager is rebuilt.
    Bounce(usize),
    /// Stop the node's software.
    Crash(usize),
    /// Start a crashed node's software again.
    Restart(usize),
    /// Change the maximum message latency of every link.
    MaxLatency(Duration),
}

impl Act {
    /// Whether the action can break a live session.
    fn breaks(&self) -> bool {
        !matches!(self, Act::Heal(..) | Act::MaxLatency(_))
    }
}

#[derive(Clone, Debug)]
struct Plan {
    seed: u64,
    nodes: usize,
    min_latency: Duration,
    max_latency: Duration,
    /// Largest maximum latency of the run.
    peak_latency: Duration,
    events: Vec<(Duration, Act)>,
    heal_at: Duration,
    /// A small outbound queue (`GridConfig::outbound_queue`), so callers wait for space.
    outbound_queue: Option<usize>,
}

impl Plan {
    /// When the last action that can break a session happened.
    fn last_break(&self) -> Duration {
        self.events
            .iter()
            .filter(|(_, a)| a.breaks())
            .map(|(t, _)| *t)
            .max()
            .unwrap_or_default()
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A fault duration: shorter than a ping interval, within the detection window, or longer.
fn fault_len(rng: &mut StdRng) -> Duration {
    match rng.gen_range(0..10) {
        0..=3 => ms(rng.gen_range(200..8_000)),
        4..=6 => ms(rng.gen_range(8_000..25_000)),
        _ => ms(rng.gen_range(25_000..35_000)),
    }
}

fn pair(rng: &mut StdRng, n: usize) -> (usize, usize) {
    let a = rng.gen_range(0..n);
    let b = (a + rng.gen_range(1..n)) % n;
    (a, b)
}

/// Link faults on distinct pairs or one after another on the same pair (turmoil does not
/// combine a hold with a one-way partition on one link).
fn link_faults(
    rng: &mut StdRng,
    n: usize,
    count: usize,
    mut pick: impl FnMut(&mut StdRng, usize, usize) -> Act,
) -> Vec<(Duration, Act)> {
    let mut busy_until = vec![Duration::ZERO; n * n];
    let mut ev = Vec::new();
    for _ in 0..count {
        let (a, b) = pair(rng, n);
        let key = a.min(b) * n + a.max(b);
        let start = busy_until[key].max(ms(rng.gen_range(1_500..12_000)));
        let end = start + fault_len(rng);
        busy_until[key] = end + ms(100);
        ev.push((start, pick(rng, a, b)));
        ev.push((end, Act::Heal(a, b)));
    }
    ev
}

fn make_plan(kind: Kind, seed: u64) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed ^ ((kind as u64 + 1) << 56));
    let nodes = match kind {
        Kind::Mix => 3,
        _ => rng.gen_range(2..=3),
    };
    let (mut min_latency, mut max_latency) = (ms(0), ms(rng.gen_range(1..20)));
    let mut events = match kind {
        Kind::Partition => {
            let count = rng.gen_range(1..=2);
            link_faults(&mut rng, nodes, count, |r, a, b| {
                if r.gen_bool(0.3) {
                    Act::PartitionOneway(a, b)
                } else {
                    Act::Partition(a, b)
                }
            })
        }
        Kind::OneWayHold => {
            let count = rng.gen_range(1..=2);
            link_faults(&mut rng, nodes, count, |r, a, b| {
                if r.gen_bool(0.25) {
                    Act::Hold(a, b)
                } else {
                    Act::HoldOneway(a, b)
                }
            })
        }
        Kind::Bounce => {
            let mut ev = Vec::new();
            for _ in 0..rng.gen_range(1..=3) {
                let node = rng.gen_range(0..nodes);
                let at = ms(rng.gen_range(1_500..20_000));
                if rng.gen_bool(0.4) {
                    ev.push((at, Act::Crash(node)));
                    ev.push((at + ms(rng.gen_range(300..15_000)), Act::Restart(node)));
                } else {
                    ev.push((at, Act::Bounce(node)));
                }
            }
            ev
        }
        Kind::Latency => {
            min_latency = ms(rng.gen_range(0..20));
            max_latency = min_latency + ms(rng.gen_range(10..300));
            let mut ev = Vec::new();
            let mut t = Duration::ZERO;
            for _ in 0..rng.gen_range(2..=4) {
                t += ms(rng.gen_range(2_000..6_000));
                let max = min_latency + ms(rng.gen_range(1..480));
                ev.push((t, Act::MaxLatency(max)));
            }
            ev
        }
        Kind::Mix => {
            min_latency = ms(rng.gen_range(0..5));
            max_latency = min_latency + ms(rng.gen_range(5..150));
            let count = rng.gen_range(2..=4);
            let mut ev = link_faults(&mut rng, nodes, count, |r, a, b| match r.gen_range(0..4) {
                0 => Act::Partition(a, b),
                1 => Act::PartitionOneway(a, b),
                2 => Act::Hold(a, b),
                _ => Act::HoldOneway(a, b),
            });
            for _ in 0..rng.gen_range(0..=2) {
                let node = rng.gen_range(0..nodes);
                let at = ms(rng.gen_range(1_500..15_000));
                if rng.gen_bool(0.5) {
                    ev.push((at, Act::Crash(node)));
                    ev.push((at + ms(rng.gen_range(300..10_000)), Act::Restart(node)));
                } else {
                    ev.push((at, Act::Bounce(node)));
                }
            }
            if rng.gen_bool(0.5) {
                let at = ms(rng.gen_range(1_500..15_000));
                ev.push((at, Act::MaxLatency(min_latency + ms(rng.gen_range(1..480)))));
            }
            ev
        }
    };
    // A crashed node that is bounced meanwhile is simply running again; keep events sorted
    // (stable, so a fault and its heal at the same instant stay in order).
    events.sort_by_key(|(t, _)| *t);
    let heal_at = events.iter().map(|(t, _)| *t).max().unwrap_or_default() + ms(10);
    let peak_latency = events
        .iter()
        .filter_map(|(_, a)| match a {
            Act::MaxLatency(m) => Some(*m),
            _ => None,
        })
        .fold(max_latency, Duration::max);
    let outbound_queue = rng.gen_bool(0.3).then(|| rng.gen_range(2..=32));
    Plan {
        outbound_queue,
        seed,
        nodes,
        min_latency,
        max_latency,
        peak_latency,
        events,
        heal_at,
    }
}

// ---------------------------------------------------------------------------------------------
// Call records

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallKind {
    Single,
    Slow,
    /// A slow request whose caller stops waiting early (drops the call).
    Abandoned,
    /// Lock-step echo stream, sometimes cancelled.
    Stream,
    /// Echo stream with input and output on two tasks (`StreamCall::split`).
    Split,
    /// Output-only stream read by a slow consumer.
    Count,
    ProbeSingle,
    ProbeStream,
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Pending,
    Ok,
    /// The caller cancelled its stream and saw `context canceled`.
    Cancelled,
    Failed(Error),
    /// Wrong data or a wrong sequence of events (always a violation).
    Bad(String),
    /// The call's future was dropped: its node crashed or restarted.
    Aborted,
}

#[derive(Clone, Debug)]
struct Rec {
    caller: usize,
    callee: usize,
    incarnation: u32,
    kind: CallKind,
    deadline: Duration,
    start: Duration,
    end: Option<Duration>,
    outcome: Outcome,
}

fn now() -> Duration {
    turmoil::sim_elapsed().expect("inside the simulation")
}

/// Closes a record when the call ends, or marks it aborted when its future is dropped.
struct RecGuard {
    sh: Arc<Shared>,
    idx: usize,
    caller: usize,
    done: bool,
}

impl RecGuard {
    fn finish(mut self, outcome: Outcome) {
        let mut recs = self.sh.recs.lock();
        recs[self.idx].end = Some(now());
        recs[self.idx].outcome = outcome;
        self.done = true;
    }
}

impl Drop for RecGuard {
    fn drop(&mut self) {
        self.sh.in_flight[self.caller].fetch_sub(1, Ordering::SeqCst);
        if !self.done {
            // Dropped with its node's runtime: the call ended when the node stopped (the
            // clock of a runtime being dropped is not the simulation's).
            let at = *self.sh.stopping_at.lock();
            let mut recs = self.sh.recs.lock();
            recs[self.idx].end = at;
            recs[self.idx].outcome = Outcome::Aborted;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state between the nodes' software and the test

#[derive(Clone, Debug)]
struct ConnSnap {
    remote: String,
    dialer: bool,
    connected: bool,
    mux: MuxCounts,
    outgoing_in_flight: u64,
    incoming_in_flight: u64,
    outbound_queue: u64,
    protocol_errors: u64,
    reconnects: u64,
}

#[derive(Clone, Debug)]
struct Snapshot {
    epoch: u32,
    alive_tasks: usize,
    tcp_streams: usize,
    /// Connects of this node that failed: turmoil keeps a socket entry for each.
    leaked_sockets: usize,
    conns: Vec<ConnSnap>,
}

impl Snapshot {
    /// What is wrong with a node that should be idle and fully connected.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut sessions = 0;
        let mut dial_loops = 0;
        for c in &self.conns {
            sessions += c.connected as usize;
            dial_loops += c.dialer as usize;
            if !c.connected {
                p.push(format!("{} not connected", c.remote));
            }
            if c.mux != MuxCounts::default() {
                p.push(format!("{}: mux entries left {:?}", c.remote, c.mux));
            }
            if c.outgoing_in_flight + c.incoming_in_flight + c.outbound_queue != 0 {
                p.push(format!(
                    "{}: in flight out {} in {}, queued {}",
                    c.remote, c.outgoing_in_flight, c.incoming_in_flight, c.outbound_queue
                ));
            }
        }
        // Per live session a reader, a writer and a housekeeping task; per peer one dial loop
        // (a peer this node dials) or one watcher that reports a peer not dialing us. Nothing
        // else may run once every call has ended.
        let want_tasks = 3 * sessions + self.conns.len();
        if self.alive_tasks != want_tasks {
            p.push(format!(
                "{} runtime tasks alive, want {want_tasks} ({sessions} sessions, {dial_loops} dial \
                 loops, {} watchers)",
                self.alive_tasks,
                self.conns.len() - dial_loops
            ));
        }
        if self.tcp_streams != sessions + self.leaked_sockets {
            p.push(format!(
                "{} simulated TCP sockets, want {} (one per session, {} left by failed connects)",
                self.tcp_streams,
                sessions + self.leaked_sockets,
                self.leaked_sockets
            ));
        }
        p
    }
}

struct Shared {
    plan: Plan,
    hosts: Vec<String>,
    gates: Arc<Gates>,
    mgrs: Mutex<Vec<Option<Manager>>>,
    incarnation: Vec<AtomicU32>,
    recs: Mutex<Vec<Rec>>,
    in_flight: Vec<AtomicUsize>,
    /// No new workload calls.
    stop: AtomicBool,
    probe_epoch: AtomicU32,
    snap_epoch: AtomicU32,
    snaps: Mutex<Vec<Option<Snapshot>>>,
    protocol_errors: AtomicU32,
    /// Per node: sockets turmoil keeps for failed connects (all incarnations).
    leaked_sockets: Vec<Arc<AtomicUsize>>,
    /// Per node, per peer: the current incarnation's dial attempts.
    dials: Mutex<Vec<Arc<Vec<Arc<DialCounters>>>>>,
    /// When the node being crashed or bounced stops (set by the test just before).
    stopping_at: Mutex<Option<Duration>>,
}

impl Shared {
    fn new(plan: &Plan) -> Self {
        let n = plan.nodes;
        Shared {
            plan: plan.clone(),
            hosts: (0..n).map(host_string).collect(),
            gates: Arc::new(Gates::new(n)),
            mgrs: Mutex::new(vec![None; n]),
            incarnation: (0..n).map(|_| AtomicU32::new(0)).collect(),
            recs: Mutex::new(Vec::new()),
            in_flight: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            stop: AtomicBool::new(false),
            probe_epoch: AtomicU32::new(0),
            snap_epoch: AtomicU32::new(0),
            snaps: Mutex::new(vec![None; n]),
            protocol_errors: AtomicU32::new(0),
            leaked_sockets: (0..n).map(|_| Arc::default()).collect(),
            dials: Mutex::new(vec![Arc::default(); n]),
            stopping_at: Mutex::new(None),
        }
    }

    fn start(
        self: &Arc<Self>,
        caller: usize,
        callee: usize,
        kind: CallKind,
        deadline: Duration,
    ) -> RecGuard {
        let mut recs = self.recs.lock();
        recs.push(Rec {
            caller,
            callee,
            incarnation: self.incarnation[caller].load(Ordering::SeqCst),
            kind,
            deadline,
            start: now(),
            end: None,
            outcome: Outcome::Pending,
        });
        self.in_flight[caller].fetch_add(1, Ordering::SeqCst);
        RecGuard {
            sh: self.clone(),
            idx: recs.len() - 1,
            caller,
            done: false,
        }
    }

    /// Connection states `(from, to, dialer, connected)` of every running node.
    fn conn_states(&self) -> Vec<(usize, usize, bool, bool)> {
        let mgrs = self.mgrs.lock();
        let mut v = Vec::new();
        for (i, m) in mgrs.iter().enumerate() {
            let Some(m) = m else { continue };
            for (j, h) in self.hosts.iter().enumerate() {
                if i != j {
                    let c = m.connection(h).expect("known host");
                    v.push((i, j, c.is_dialer(), c.state().is_connected()));
                }
            }
        }
        v
    }

    /// Every connection's state and last error, for failure messages.
    fn describe(&self) -> String {
        let mgrs = self.mgrs.lock();
        let mut out = String::new();
        for (i, m) in mgrs.iter().enumerate() {
            let Some(m) = m else {
                let _ = write!(out, " [node{i} down]");
                continue;
            };
            for c in m.connections() {
                let st = c.stats();
                let _ = write!(
                    out,
                    " [node{i} -> {}: {} (connects {}, last error {:?})]",
                    c.remote(),
                    st.state,
                    st.connects,
                    st.last_error
                );
            }
        }
        out
    }

    /// The dialers that are not connected at `now` (just healed), each with the time by
    /// which it must be connected again and whether an attempt is stalled in its handshake.
    ///
    /// Normally the next attempt starts within 2 s ([`reconnect_bound`]). An attempt whose
    /// TCP connect succeeded before the heal may have lost its HTTP upgrade or its grid
    /// Connect/ConnectResponse in the fault (turmoil does not retransmit): it only gives up
    /// after the dial timeout (upgrade) or the handshake timeout (Connect/ConnectResponse,
    /// `GridConfig::handshake_timeout`, 10 s; the reference has no limit there at all, §10),
    /// counted from its connect, and the next attempt starts at once.
    fn down_dialers(
        &self,
        now: Duration,
        max_latency: Duration,
    ) -> Vec<(usize, usize, Duration, bool)> {
        let mgrs = self.mgrs.lock();
        let dials = self.dials.lock();
        let mut v = Vec::new();
        for (i, m) in mgrs.iter().enumerate() {
            let Some(m) = m else { continue };
            let cfg = m.config();
            for (j, h) in self.hosts.iter().enumerate() {
                if i == j {
                    continue;
                }
                let c = m.connection(h).expect("known host");
                if !c.is_dialer() || c.state().is_connected() {
                    continue;
                }
                let st = c.stats();
                let d = &dials[i][j];
                let attempts =
                    d.tcp_ok.load(Ordering::SeqCst) + d.tcp_failed.load(Ordering::SeqCst);
                let finished = (st.connects + st.handshake_failures) as usize;
                let stalled = attempts > finished;
                let mut deadline = now + reconnect_bound(max_latency);
                if stalled {
                    let since = d.last_ok_at.lock().unwrap_or(now);
                    deadline = deadline.max(
                        since
                            + cfg.dial_timeout
                            + cfg.handshake_timeout
                            + reconnect_bound(max_latency)
                            - Duration::from_secs(2),
                    );
                }
                v.push((i, j, deadline, stalled));
            }
        }
        v
    }

    fn all_connected(&self) -> bool {
        let s = self.conn_states();
        s.len() == self.hosts.len() * (self.hosts.len() - 1) && s.iter().all(|c| c.3)
    }

    fn open_records(&self) -> usize {
        self.recs.lock().iter().filter(|r| r.end.is_none()).count()
    }
}

// ---------------------------------------------------------------------------------------------
// Node software

fn register(m: &Manager) {
    m.register_single(
        ECHO,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    m.register_single(SLOW, |r: Request| async move {
        let b = r.bytes();
        let ms = u16::from_le_bytes([b[0], b[1]]) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok::<_, RemoteError>(b),
            _ = r.cancel.cancelled() => Err(RemoteError::new("cancelled")),
        }
    })
    .unwrap();
    m.register_stream(
        COUNT,
        StreamSpec::new().in_capacity(0).out_capacity(3),
        |ctx: StreamContext, _i: StreamInput, o: StreamOutput| async move {
            let p = ctx.payload.clone().unwrap_or_default();
            let n = p.first().copied().unwrap_or(0);
            let gap = ms(p.get(1).copied().unwrap_or(0) as u64 * 10);
            for i in 0..n {
                if !gap.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(gap) => {}
                        _ = ctx.cancel.cancelled() => return Ok(()),
                    }
                }
                o.send(count_item(i))
                    .await
                    .map_err(|e| RemoteError::new(e.to_string()))?;
            }
            Ok(())
        },
    )
    .unwrap();
    m.register_stream(
        STREAM_ECHO,
        StreamSpec::new().in_capacity(2).out_capacity(2),
        |_ctx: StreamContext, mut i: StreamInput, o: StreamOutput| async move {
            while let Some(item) = i.recv().await {
                o.send(item)
                    .await
                    .map_err(|e| RemoteError::new(e.to_string()))?;
            }
            Ok(())
        },
    )
    .unwrap();
}

async fn node_main(sh: Arc<Shared>, me: usize) -> turmoil::Result {
    let inc = sh.incarnation[me].fetch_add(1, Ordering::SeqCst) + 1;
    let dials: Arc<Vec<Arc<DialCounters>>> =
        Arc::new((0..sh.hosts.len()).map(|_| Arc::default()).collect());
    sh.dials.lock()[me] = dials.clone();
    let mut cfg = GridConfig::default();
    if let Some(q) = sh.plan.outbound_queue {
        cfg.outbound_queue = q;
    }
    let mgr = Manager::builder(sh.hosts[me].clone(), sh.hosts.clone())
        .auth(Auth::shared_token(TOKEN))
        .config(cfg)
        .dialer(TurmoilDialer::new(
            me,
            sh.gates.clone(),
            dials,
            sh.leaked_sockets[me].clone(),
        ))
        .build()?;
    register(&mgr);
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    sh.mgrs.lock()[me] = Some(mgr.clone());
    tokio::task::spawn_local(net::accept_loop(
        listener,
        mgr.service(),
        me,
        sh.gates.clone(),
    ));
    node_loop(sh, me, inc, mgr).await;
    Ok(())
}

fn count_item(i: u8) -> Bytes {
    Bytes::from(vec![i; 1 + i as usize])
}

/// One call of the seeded workload (every random choice is drawn before it starts).
enum Spec {
    Single {
        handler: u8,
        payload: Bytes,
        timeout: Duration,
    },
    Abandoned {
        payload: Bytes,
        timeout: Duration,
        after: Duration,
    },
    Stream {
        cancel_at: Option<usize>,
        timeout: Duration,
        think: Vec<Duration>,
    },
    Split {
        items: usize,
        timeout: Duration,
    },
    Count {
        n: u8,
        gap_10ms: u8,
        consume: Duration,
        timeout: Duration,
    },
}

fn slow_payload(rng: &mut StdRng) -> Bytes {
    let delay: u16 = rng.gen_range(0..3_000);
    let mut p = delay.to_le_bytes().to_vec();
    p.extend_from_slice(&[rng.gen(); 6]);
    Bytes::from(p)
}

fn draw_spec(rng: &mut StdRng) -> Spec {
    const SINGLE_TIMEOUTS: [u64; 6] = [100, 300, 1_000, 2_000, 3_000, 8_000];
    // 16 s: longer than the 15 s stream ping interval, so those streams ping (§6.8).
    const STREAM_TIMEOUTS: [u64; 4] = [1_000, 3_000, 8_000, 16_000];
    let stream_timeout =
        |rng: &mut StdRng| ms(STREAM_TIMEOUTS[rng.gen_range(0..STREAM_TIMEOUTS.len())]);
    match rng.gen_range(0..10) {
        0..=3 => {
            let len = if rng.gen_bool(0.05) {
                rng.gen_range(16_384..65_536)
            } else {
                rng.gen_range(0..2_048)
            };
            let fill: u8 = rng.gen();
            Spec::Single {
                handler: ECHO,
                payload: Bytes::from(vec![fill; len]),
                timeout: ms(SINGLE_TIMEOUTS[rng.gen_range(0..SINGLE_TIMEOUTS.len())]),
            }
        }
        4..=5 => Spec::Single {
            handler: SLOW,
            payload: slow_payload(rng),
            timeout: ms(rng.gen_range(200..4_000)),
        },
        6 => Spec::Abandoned {
            payload: slow_payload(rng),
            timeout: ms(rng.gen_range(200..4_000)),
            after: ms(rng.gen_range(10..1_000)),
        },
        7 => {
            let rounds = rng.gen_range(1..8);
            Spec::Stream {
                cancel_at: rng.gen_bool(0.2).then(|| rng.gen_range(0..rounds)),
                timeout: stream_timeout(rng),
                think: (0..rounds)
                    .map(|_| ms(rng.gen_range(0..=MAX_THINK.as_millis() as u64)))
                    .collect(),
            }
        }
        8 => Spec::Split {
            items: rng.gen_range(1..12),
            timeout: stream_timeout(rng),
        },
        _ => Spec::Count {
            n: rng.gen_range(0..10),
            gap_10ms: rng.gen_range(0..20),
            consume: ms(rng.gen_range(0..=MAX_THINK.as_millis() as u64)),
            timeout: stream_timeout(rng),
        },
    }
}

async fn single(
    conn: &nodegrid::Connection,
    handler: u8,
    payload: Bytes,
    timeout: Duration,
) -> Outcome {
    match conn
        .call(
            handler,
            Some(payload.clone()),
            CallOptions::new().timeout(timeout),
        )
        .await
    {
        Ok(b) if b.as_ref().unwrap_or(&Bytes::new()) == &payload => Outcome::Ok,
        Ok(b) => Outcome::Bad(format!(
            "corrupt response: {} bytes, sent {}",
            b.map(|b| b.len()).unwrap_or(0),
            payload.len()
        )),
        Err(e) => Outcome::Failed(e),
    }
}

async fn stream(
    conn: &nodegrid::Connection,
    cancel_at: Option<usize>,
    timeout: Duration,
    think: &[Duration],
) -> Outcome {
    let mut s = match conn
        .open_stream(STREAM_ECHO, None, StreamOptions::new().timeout(timeout))
        .await
    {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e),
    };
    for (i, pause) in think.iter().enumerate() {
        if cancel_at == Some(i) {
            s.cancel();
            return match s.recv().await {
                Some(Err(Error::Cancelled)) => Outcome::Cancelled,
                // It may have failed before the cancel.
                Some(Err(e)) => Outcome::Failed(e),
                other => Outcome::Bad(format!("after cancel: {other:?}")),
            };
        }
        let item = Bytes::from(format!("round {i}"));
        if let Err(e) = s.send(item.clone()).await {
            return Outcome::Failed(e);
        }
        match s.recv().await {
            Some(Ok(b)) if b == item => {}
            Some(Ok(b)) => return Outcome::Bad(format!("corrupt echo {b:?}")),
            Some(Err(e)) => return Outcome::Failed(e),
            None => return Outcome::Bad("clean end before EOF".into()),
        }
        if !pause.is_zero() {
            tokio::time::sleep(*pause).await;
        }
    }
    if let Err(e) = s.close_send().await {
        return Outcome::Failed(e);
    }
    match s.recv().await {
        None => Outcome::Ok,
        Some(Err(e)) => Outcome::Failed(e),
        Some(Ok(b)) => Outcome::Bad(format!("item after EOF: {b:?}")),
    }
}

/// An echo stream whose input and output run on two tasks.
async fn split_stream(conn: &nodegrid::Connection, items: usize, timeout: Duration) -> Outcome {
    let s = match conn
        .open_stream(STREAM_ECHO, None, StreamOptions::new().timeout(timeout))
        .await
    {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e),
    };
    let item = |i: usize| Bytes::from(format!("split {i}"));
    let (tx, mut rx) = s.split();
    let send = async move {
        for i in 0..items {
            tx.send(item(i)).await?;
        }
        tx.close_send().await
    };
    let recv = async move {
        for i in 0..items {
            match rx.recv().await {
                Some(Ok(b)) if b == item(i) => {}
                Some(Ok(b)) => return Outcome::Bad(format!("corrupt echo {b:?}")),
                Some(Err(e)) => return Outcome::Failed(e),
                None => return Outcome::Bad("clean end before EOF".into()),
            }
        }
        match rx.recv().await {
            None => Outcome::Ok,
            Some(Err(e)) => Outcome::Failed(e),
            Some(Ok(b)) => Outcome::Bad(format!("item after EOF: {b:?}")),
        }
    };
    let (sent, received) = tokio::join!(send, recv);
    match (sent, received) {
        (Ok(()), o) => o,
        // The receiver saw the failure too; a clean receive with a failed send is wrong.
        (Err(e), Outcome::Ok) => {
            Outcome::Bad(format!("send failed with {e:?}, receive ended cleanly"))
        }
        (Err(_), o) => o,
    }
}

/// An output-only stream of `n` items, read with a pause after each.
async fn count_stream(
    conn: &nodegrid::Connection,
    n: u8,
    gap_10ms: u8,
    consume: Duration,
    timeout: Duration,
) -> Outcome {
    let mut s = match conn
        .open_stream(
            COUNT,
            Some(Bytes::from(vec![n, gap_10ms])),
            StreamOptions::new().timeout(timeout),
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e),
    };
    for i in 0..n {
        match s.recv().await {
            Some(Ok(b)) if b == count_item(i) => {}
            Some(Ok(b)) => return Outcome::Bad(format!("item {i}: got {b:?}")),
            Some(Err(e)) => return Outcome::Failed(e),
            None => return Outcome::Bad(format!("clean end after {i} of {n} items")),
        }
        if !consume.is_zero() {
            tokio::time::sleep(consume).await;
        }
    }
    match s.recv().await {
        None => Outcome::Ok,
        Some(Err(e)) => Outcome::Failed(e),
        Some(Ok(b)) => Outcome::Bad(format!("item after the last: {b:?}")),
    }
}

/// Runs the node's workload until told to stop; answers probe and snapshot requests forever
/// (the software of a turmoil host must not return).
async fn node_loop(sh: Arc<Shared>, me: usize, inc: u32, mgr: Manager) {
    let seed = sh.plan.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ ((me as u64) << 40)
        ^ ((inc as u64) << 48);
    let mut rng = StdRng::seed_from_u64(seed);
    let n = sh.hosts.len();
    let mut probes_done = 0;
    let mut snaps_done = 0;
    loop {
        tokio::time::sleep(ms(rng.gen_range(60..400))).await;
        let probe = sh.probe_epoch.load(Ordering::SeqCst);
        if probe > probes_done {
            probes_done = probe;
            for peer in (0..n).filter(|p| *p != me) {
                let conn = mgr.connection(&sh.hosts[peer]).unwrap();
                let g = sh.start(me, peer, CallKind::ProbeSingle, ms(2_000));
                let c = conn.clone();
                tokio::task::spawn_local(async move {
                    let o = single(&c, ECHO, Bytes::from_static(b"probe"), ms(2_000)).await;
                    g.finish(o);
                });
                let g = sh.start(me, peer, CallKind::ProbeStream, ms(5_000));
                tokio::task::spawn_local(async move {
                    let o = stream(&conn, None, ms(5_000), &[Duration::ZERO; 3]).await;
                    g.finish(o);
                });
            }
        }
        let snap = sh.snap_epoch.load(Ordering::SeqCst);
        if snap > snaps_done {
            snaps_done = snap;
            let conns = mgr
                .connections()
                .iter()
                .map(|c| {
                    let st = c.stats();
                    ConnSnap {
                        remote: c.remote().to_string(),
                        dialer: c.is_dialer(),
                        connected: st.connected,
                        mux: c.mux_counts(),
                        outgoing_in_flight: st.outgoing_in_flight,
                        incoming_in_flight: st.incoming_in_flight,
                        outbound_queue: st.outbound_queue,
                        protocol_errors: st.protocol_errors,
                        reconnects: st.reconnects,
                    }
                })
                .collect();
            sh.snaps.lock()[me] = Some(Snapshot {
                epoch: snap,
                alive_tasks: tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks(),
                tcp_streams: turmoil::established_tcp_stream_count(),
                leaked_sockets: sh.leaked_sockets[me].load(Ordering::SeqCst),
                conns,
            });
        }
        // Draw first, so the sequence of draws does not depend on how earlier calls went.
        let peer = (me + rng.gen_range(1..n)) % n;
        let spec = draw_spec(&mut rng);
        if sh.stop.load(Ordering::SeqCst)
            || sh.in_flight[me].load(Ordering::SeqCst) >= MAX_IN_FLIGHT
        {
            continue;
        }
        let conn = mgr.connection(&sh.hosts[peer]).unwrap();
        match spec {
            Spec::Single {
                handler,
                payload,
                timeout,
            } => {
                let kind = if handler == SLOW {
                    CallKind::Slow
                } else {
                    CallKind::Single
                };
                let g = sh.start(me, peer, kind, timeout);
                tokio::task::spawn_local(async move {
                    let o = single(&conn, handler, payload, timeout).await;
                    g.finish(o);
                });
            }
            Spec::Abandoned {
                payload,
                timeout,
                after,
            } => {
                let g = sh.start(me, peer, CallKind::Abandoned, after.min(timeout));
                tokio::task::spawn_local(async move {
                    let call = single(&conn, SLOW, payload, timeout);
                    let o = tokio::time::timeout(after, call)
                        .await
                        .unwrap_or(Outcome::Cancelled);
                    g.finish(o);
                });
            }
            Spec::Stream {
                cancel_at,
                timeout,
                think,
            } => {
                let g = sh.start(me, peer, CallKind::Stream, timeout);
                tokio::task::spawn_local(async move {
                    let o = stream(&conn, cancel_at, timeout, &think).await;
                    g.finish(o);
                });
            }
            Spec::Split { items, timeout } => {
                let g = sh.start(me, peer, CallKind::Split, timeout);
                tokio::task::spawn_local(async move {
                    g.finish(split_stream(&conn, items, timeout).await);
                });
            }
            Spec::Count {
                n,
                gap_10ms,
                consume,
                timeout,
            } => {
                let g = sh.start(me, peer, CallKind::Count, timeout);
                tokio::task::spawn_local(async move {
                    g.finish(count_stream(&conn, n, gap_10ms, consume, timeout).await);
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test driver

#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    calls: usize,
    ok: usize,
    cancelled: usize,
    disconnected: usize,
    deadline: usize,
    aborted: usize,
    probes: usize,
    reconnects_checked: usize,
    max_reconnect: Duration,
    max_late: Duration,
    /// Sessions established after the first, counted by the dialers.
    sessions_replaced: u64,
    /// Reconnects after a heal that waited for an attempt stalled in its handshake.
    stalled_handshakes: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.calls += o.calls;
        self.ok += o.ok;
        self.cancelled += o.cancelled;
        self.disconnected += o.disconnected;
        self.deadline += o.deadline;
        self.aborted += o.aborted;
        self.probes += o.probes;
        self.reconnects_checked += o.reconnects_checked;
        self.max_reconnect = self.max_reconnect.max(o.max_reconnect);
        self.max_late = self.max_late.max(o.max_late);
        self.sessions_replaced += o.sessions_replaced;
        self.stalled_handshakes += o.stalled_handshakes;
    }
}

struct Run<'a> {
    sim: turmoil::Sim<'a>,
    sh: Arc<Shared>,
    violations: Vec<String>,
}

impl Run<'_> {
    fn step(&mut self) -> bool {
        match self.sim.step() {
            Ok(_) => true,
            Err(e) => {
                self.violations
                    .push(format!("simulation error at {:?}: {e}", self.sim.elapsed()));
                false
            }
        }
    }

    /// Steps until `t` (simulated time since the start).
    fn step_to(&mut self, t: Duration) -> bool {
        while self.sim.elapsed() < t {
            if !self.step() {
                return false;
            }
        }
        true
    }

    /// Steps until `f` holds or the simulated time reaches `limit`; whether it held.
    fn step_until(&mut self, limit: Duration, f: impl Fn(&Shared) -> bool) -> bool {
        loop {
            if f(&self.sh) {
                return true;
            }
            if self.sim.elapsed() >= limit || !self.step() {
                return f(&self.sh);
            }
        }
    }

    fn name(i: usize) -> String {
        host_name(i)
    }

    fn apply(&mut self, act: &Act) {
        let (sim, sh) = (&mut self.sim, &self.sh);
        match *act {
            Act::Partition(a, b) => sim.partition(Self::name(a), Self::name(b)),
            Act::PartitionOneway(a, b) => sim.partition_oneway(Self::name(a), Self::name(b)),
            Act::Hold(a, b) => sim.hold(Self::name(a), Self::name(b)),
            Act::HoldOneway(a, b) => sh.gates.get(a, b).set(true),
            Act::Heal(a, b) => {
                // `release` makes both directions healthy and delivers held segments.
                sim.release(Self::name(a), Self::name(b));
                sh.gates.get(a, b).set(false);
                sh.gates.get(b, a).set(false);
            }
            Act::Bounce(a) => {
                sh.mgrs.lock()[a] = None;
                *sh.stopping_at.lock() = Some(sim.elapsed());
                sim.bounce(Self::name(a));
            }
            Act::Crash(a) => {
                if sim.is_host_running(Self::name(a)) {
                    sh.mgrs.lock()[a] = None;
                    *sh.stopping_at.lock() = Some(sim.elapsed());
                    sim.crash(Self::name(a));
                }
            }
            Act::Restart(a) => {
                if !sim.is_host_running(Self::name(a)) {
                    sim.bounce(Self::name(a));
                }
            }
            Act::MaxLatency(m) => sim.set_max_message_latency(m),
        }
    }

    fn heal_all(&mut self) {
        let n = self.sh.plan.nodes;
        for a in 0..n {
            for b in a + 1..n {
                self.apply(&Act::Heal(a, b));
            }
            self.apply(&Act::Restart(a));
        }
        self.sim.set_max_message_latency(self.sh.plan.max_latency);
    }
}

/// Runs one seeded scenario; returns its tally and the violations found.
fn run_plan(plan: &Plan) -> (Tally, Vec<String>, Vec<String>) {
    // DETECTION_BOUND allows for at most 500 ms of latency per message.
    assert!(plan.peak_latency <= ms(500), "{plan:?}");
    let sh = Arc::new(Shared::new(plan));
    let sim = turmoil::Builder::new()
        .rng_seed(plan.seed)
        .tick_duration(TICK)
        .simulation_duration(Duration::from_secs(3_600))
        .min_message_latency(plan.min_latency)
        .max_message_latency(plan.max_latency)
        .enable_random_order()
        .build();
    let mut run = Run {
        sim,
        sh: sh.clone(),
        violations: Vec::new(),
    };
    for i in 0..plan.nodes {
        let sh = sh.clone();
        run.sim.host(host_name(i), move || node_main(sh.clone(), i));
    }
    let mut tally = Tally::default();

    // Start-up: every pair connects.
    if !run.step_until(ms(5_000), Shared::all_connected) {
        run.violations.push(format!(
            "no full mesh after start-up: {:?}",
            sh.conn_states()
        ));
    }

    // Faults.
    for (at, act) in &plan.events {
        if !run.step_to(*at) {
            break;
        }
        run.apply(act);
    }

    // Heal; no new workload calls from now on.
    run.step_to(plan.heal_at);
    run.heal_all();
    sh.stop.store(true, Ordering::SeqCst);
    let healed = run.sim.elapsed();

    // A dialer that is disconnected now reconnects within the backoff bound.
    let recon = reconnect_bound(plan.max_latency);
    let mut last_reconnect = healed + recon;
    let mut down = sh.down_dialers(healed, plan.max_latency);
    down.sort_by_key(|d| d.2);
    for (i, j, deadline, stalled) in down {
        let ok = run.step_until(deadline, |sh| {
            sh.conn_states().iter().any(|c| (c.0, c.1) == (i, j) && c.3)
        });
        tally.reconnects_checked += 1;
        tally.stalled_handshakes += stalled as usize;
        last_reconnect = last_reconnect.max(deadline);
        if ok {
            tally.max_reconnect = tally.max_reconnect.max(run.sim.elapsed() - healed);
        } else {
            run.violations.push(format!(
                "node{i} -> node{j} disconnected at the heal ({healed:?}) not reconnected by {deadline:?} (attempt stalled in the handshake: {stalled}):{}",
                sh.describe()
            ));
        }
    }

    // Once every fault is past the detection bound, every connection is up and new calls
    // succeed.
    let settled = last_reconnect.max(plan.last_break() + DETECTION_BOUND + recon);
    run.step_to(settled);
    if !sh.all_connected() {
        run.violations.push(format!(
            "not fully connected at {settled:?} (healed {healed:?}, last fault {:?}):{}",
            plan.last_break(),
            sh.describe()
        ));
    }
    let probes_from = sh.recs.lock().len();
    sh.probe_epoch.fetch_add(1, Ordering::SeqCst);
    let want_probes = 2 * plan.nodes * (plan.nodes - 1);
    let probed = run.step_until(settled + ms(8_000), |sh| {
        let recs = sh.recs.lock();
        recs.len() - probes_from == want_probes
            && recs[probes_from..].iter().all(|r| r.end.is_some())
    });
    {
        let recs = sh.recs.lock();
        let probes: Vec<_> = recs
            .iter()
            .filter(|r| matches!(r.kind, CallKind::ProbeSingle | CallKind::ProbeStream))
            .collect();
        tally.probes += probes.len();
        if !probed || probes.len() != want_probes {
            run.violations.push(format!(
                "probes did not finish: {} of {want_probes} started",
                probes.len()
            ));
        }
        for p in probes.iter().filter(|p| p.outcome != Outcome::Ok) {
            run.violations
                .push(format!("probe after the heal failed: {p:?}"));
        }
    }

    // Every call ends within its bound.
    let latest_bound = sh
        .recs
        .lock()
        .iter()
        .map(|r| r.start + r.deadline + DETECTION_BOUND)
        .max()
        .unwrap_or_default();
    run.step_until(latest_bound + TICK, |sh| sh.open_records() == 0);

    // Quiescence: nothing left behind.
    let mut problems = Vec::new();
    let quiet_limit = run.sim.elapsed() + ms(15_000);
    loop {
        let epoch = sh.snap_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let got = run.step_until(run.sim.elapsed() + ms(2_000), |sh| {
            sh.snaps
                .lock()
                .iter()
                .all(|s| s.as_ref().is_some_and(|s| s.epoch == epoch))
        });
        problems.clear();
        if !got {
            problems.push("not every node answered the snapshot request".to_string());
        }
        for (i, s) in sh.snaps.lock().iter().enumerate() {
            if let Some(s) = s {
                for p in s.problems() {
                    problems.push(format!("node{i}: {p}"));
                }
                let pe: u64 = s.conns.iter().map(|c| c.protocol_errors).sum();
                if pe > 0 {
                    sh.protocol_errors.store(pe as u32, Ordering::SeqCst);
                }
            }
        }
        if problems.is_empty() || run.sim.elapsed() >= quiet_limit {
            break;
        }
        run.step_to(run.sim.elapsed() + ms(500));
    }
    for p in problems {
        run.violations.push(format!("leftover after the run: {p}"));
    }
    tally.sessions_replaced = sh
        .snaps
        .lock()
        .iter()
        .flatten()
        .flat_map(|s| s.conns.iter())
        .filter(|c| c.dialer)
        .map(|c| c.reconnects)
        .sum();
    if sh.protocol_errors.load(Ordering::SeqCst) > 0 {
        run.violations.push(
            "protocol errors were counted on a simulated (lossless once healed) network".into(),
        );
    }

    // The property of every call.
    let incarnations: Vec<u32> = sh
        .incarnation
        .iter()
        .map(|i| i.load(Ordering::SeqCst))
        .collect();
    for r in sh.recs.lock().iter() {
        tally.calls += 1;
        let Some(end) = r.end else {
            run.violations.push(format!(
                "call never ended (bound {:?}): {r:?}",
                r.start + r.deadline + DETECTION_BOUND
            ));
            continue;
        };
        let took = end.saturating_sub(r.start);
        if matches!(
            r.kind,
            CallKind::Single | CallKind::Slow | CallKind::ProbeSingle
        ) {
            tally.max_late = tally.max_late.max(took.saturating_sub(r.deadline));
        }
        if took > r.deadline + DETECTION_BOUND {
            run.violations.push(format!(
                "call ended {took:?} after its start, deadline {:?} + detection bound {DETECTION_BOUND:?}: {r:?}",
                r.deadline
            ));
        }
        let slack = match r.kind {
            CallKind::Single
            | CallKind::Slow
            | CallKind::Abandoned
            | CallKind::Split
            | CallKind::ProbeSingle
            | CallKind::ProbeStream => SINGLE_SLACK,
            // A pause in progress when the deadline passes.
            CallKind::Stream => MAX_THINK + SINGLE_SLACK,
            // Items buffered before the deadline are still delivered (at most the output
            // capacity of 3), each followed by a pause, plus the pause in progress.
            CallKind::Count => 4 * MAX_THINK + SINGLE_SLACK,
        };
        if took > r.deadline + slack {
            run.violations.push(format!(
                "call ended {:?} after its deadline (allowed {slack:?}): {r:?}",
                took - r.deadline
            ));
        }
        match &r.outcome {
            Outcome::Ok => tally.ok += 1,
            Outcome::Cancelled => tally.cancelled += 1,
            Outcome::Failed(Error::Disconnected) => tally.disconnected += 1,
            Outcome::Failed(Error::DeadlineExceeded) => tally.deadline += 1,
            Outcome::Aborted if r.incarnation < incarnations[r.caller] => tally.aborted += 1,
            Outcome::Aborted => run.violations.push(format!(
                "call dropped although its node kept running: {r:?}"
            )),
            Outcome::Failed(e) => run
                .violations
                .push(format!("unexpected error {e:?} ({e}): {r:?}")),
            Outcome::Bad(why) => run.violations.push(format!("{why}: {r:?}")),
            Outcome::Pending => run.violations.push(format!("call without outcome: {r:?}")),
        }
    }
    let trace = sh
        .recs
        .lock()
        .iter()
        .map(|r| {
            let o = match &r.outcome {
                Outcome::Failed(e) => format!("{e}"),
                o => format!("{o:?}"),
            };
            format!(
                "{}->{} {:?} {:?}..{:?} {o}",
                r.caller, r.callee, r.kind, r.start, r.end
            )
        })
        .collect();
    let violations = std::mem::take(&mut run.violations);
    drop(run);
    (tally, violations, trace)
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("NODEGRID_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![s];
    }
    let n: u64 = std::env::var("NODEGRID_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    (1..=n).collect()
}

fn run_kind(kind: Kind) {
    common::init_tracing();
    let mut total = Tally::default();
    let mut failures = String::new();
    let mut failed = 0;
    let seeds = seeds();
    for &seed in &seeds {
        let plan = make_plan(kind, seed);
        let (t, v, _) = run_plan(&plan);
        total.add(&t);
        if !v.is_empty() {
            failed += 1;
            let _ = writeln!(
                failures,
                "\n{kind:?} seed {seed} ({} violations; reproduce with NODEGRID_SIM_SEED={seed}):\n  plan: {:?}",
                v.len(),
                plan
            );
            for line in v.iter().take(8) {
                let _ = writeln!(failures, "  - {line}");
            }
        }
    }
    println!(
        "turmoil {kind:?}: {} seeds, {failed} failed; {} calls: {} ok, {} cancelled, {} disconnected, {} deadline, {} aborted by a restart; {} probes; {} sessions replaced; {} reconnects after a heal checked ({} behind a stalled handshake, slowest {:?}); latest single request end after its deadline {:?}",
        seeds.len(),
        total.calls,
        total.ok,
        total.cancelled,
        total.disconnected,
        total.deadline,
        total.aborted,
        total.probes,
        total.sessions_replaced,
        total.reconnects_checked,
        total.stalled_handshakes,
        total.max_reconnect,
        total.max_late,
    );
    assert!(
        failures.is_empty(),
        "{failed} of {} seeds failed:{failures}",
        seeds.len()
    );
    // The scenario did what it is for (checked over many seeds only).
    if seeds.len() >= 10 {
        assert!(
            total.ok * 4 > total.calls,
            "{kind:?}: only {} of {} calls succeeded",
            total.ok,
            total.calls
        );
        if kind != Kind::Latency {
            assert!(
                total.disconnected > 0 && total.reconnects_checked > 0,
                "{kind:?}: the faults never broke a session: {total:?}"
            );
        } else {
            assert!(
                total.deadline > 0,
                "latency never made a deadline pass: {total:?}"
            );
        }
        if matches!(kind, Kind::Bounce | Kind::Mix) {
            assert!(
                total.aborted > 0,
                "{kind:?}: no call was cut by a restart: {total:?}"
            );
        }
    }
}

#[test]
fn partitions_and_repair() {
    run_kind(Kind::Partition);
}

#[test]
fn one_way_holds_and_release() {
    run_kind(Kind::OneWayHold);
}

#[test]
fn node_restarts() {
    run_kind(Kind::Bounce);
}

#[test]
fn random_latency() {
    run_kind(Kind::Latency);
}

#[test]
fn mixed_faults() {
    run_kind(Kind::Mix);
}

/// Reproducibility: a seed fixes the fault schedule and every call the workload starts (who
/// calls whom, what, with which deadline, when). Outcomes can still differ between two runs of
/// one seed, because the library draws its redial jitter (and mux IDs, masks, instance IDs)
/// from an unseeded RNG and tokio's `select!` picks ready branches at random: the divergence is
/// printed with `--nocapture`, not asserted.
#[test]
fn a_seed_fixes_schedule_and_workload() {
    common::init_tracing();
    // Calls of different nodes in one simulation step may be recorded in either order. The
    // probes start once the pairs are reconnected, which depends on the library's jitter.
    let started = |trace: &[String]| -> Vec<String> {
        let mut v: Vec<String> = trace
            .iter()
            .filter(|t| !t.contains(" Probe"))
            .map(|t| t.split("..").next().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    };
    for kind in [
        Kind::Partition,
        Kind::OneWayHold,
        Kind::Bounce,
        Kind::Latency,
        Kind::Mix,
    ] {
        for seed in 1..=5 {
            let (a, b) = (make_plan(kind, seed), make_plan(kind, seed));
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            assert!(!a.events.is_empty(), "{kind:?} seed {seed}: no event");
        }
    }
    for (kind, seed) in [(Kind::Mix, 2), (Kind::Bounce, 1)] {
        let plan = make_plan(kind, seed);
        let (_, va, a) = run_plan(&plan);
        let (_, vb, b) = run_plan(&plan);
        assert!(va.is_empty() && vb.is_empty(), "{va:?} {vb:?}");
        assert!(a.len() > 50, "{kind:?} seed {seed}: only {} calls", a.len());
        let (sa, sb) = (started(&a), started(&b));
        let first = sa.iter().zip(&sb).position(|(x, y)| x != y);
        assert!(
            sa.len() == sb.len() && first.is_none(),
            "{kind:?} seed {seed}: different workload ({} vs {} calls), first difference {:?}",
            sa.len(),
            sb.len(),
            first.map(|i| (&sa[i], &sb[i]))
        );
        let (mut a, mut b) = (a, b);
        a.sort();
        b.sort();
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        println!(
            "turmoil {kind:?} seed {seed} run twice: {} calls, same starts, {differ} ended differently",
            a.len()
        );
    }
}
