//! `nodegrid bench`: a grid benchmark on an in-process cluster (the default) or against running
//! `nodegrid node` processes, with an optional raw-TCP baseline measured in the same run.

use crate::builtin;
use crate::measure::{new_hist, peak_rss_bytes, Latency, Run};
use crate::{baseline, cluster};
use anyhow::{bail, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use nodegrid::{Connection, StreamOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Single requests (echo).
    Single,
    /// Callee streams messages to the caller as fast as credit allows.
    StreamOut,
    /// Caller streams messages to the callee.
    StreamIn,
    /// Caller sends, callee echoes each message.
    StreamBidi,
    /// All grid modes, one after the other.
    All,
    /// REST: POST `--payload` bytes to the peer's `sink` method per call (streamed).
    RestUpload,
    /// REST: GET `--payload` bytes from the peer's `source` method per call (streamed).
    RestDownload,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::StreamOut => "stream-out",
            Mode::StreamIn => "stream-in",
            Mode::StreamBidi => "stream-bidi",
            Mode::All => "all",
            Mode::RestUpload => "rest-upload",
            Mode::RestDownload => "rest-download",
        }
    }
}

/// The raw-TCP baseline of the stream modes (`--stream-baseline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamBaseline {
    /// One-way streams multiplexed with the run's concurrency.
    Mux,
    /// One sender, one receiver, no multiplexing.
    Wire,
}

/// Options of `nodegrid bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// In-process nodes to start (ignored with --local/--hosts).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Single)]
    pub mode: Mode,
    /// Payload bytes per request or stream message.
    #[arg(long, default_value_t = 512)]
    pub payload: usize,
    /// Callers in flight (streams open, for stream modes).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Stream capacities (messages in flight per stream and direction); default 64 in-process,
    /// 4 against running nodes (the capacities `nodegrid node` registers).
    #[arg(long)]
    pub capacity: Option<usize>,
    /// Use TLS between the in-process nodes (self-signed certificate).
    #[arg(long)]
    pub tls: bool,
    /// Also measure a raw-TCP baseline in the same run and print ratios.
    #[arg(long)]
    pub baseline: bool,
    /// The stream modes' baseline: `mux` (streams with the run's concurrency over one
    /// connection: sender tasks, one writer, one reader, a consumer per stream) or `wire` (one
    /// sender writing 64 KiB batches of messages to one receiver: the raw wire's limit).
    #[arg(long, value_enum, default_value_t = StreamBaseline::Mux)]
    pub stream_baseline: StreamBaseline,
    /// Print one JSON object per mode on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Join a running cluster as this host (requires --hosts).
    #[arg(long, requires = "hosts")]
    pub local: Option<String>,
    /// Comma-separated host strings of the running cluster, this one included.
    #[arg(long, requires = "local", value_delimiter = ',')]
    pub hosts: Option<Vec<String>>,
    #[command(flatten)]
    pub creds: cluster::Credentials,
}

struct Outcome {
    mode: Mode,
    run: Arc<Run>,
    hist: Histogram<u64>,
    baseline: Option<(Arc<Run>, Histogram<u64>)>,
    nodes: usize,
}

pub async fn run(args: BenchArgs) -> Result<bool> {
    if args.payload == 0 && args.mode != Mode::Single {
        bail!("--payload must be > 0 for stream modes");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be > 0");
    }
    if !args.duration.is_finite()
        || args.duration <= 0.0
        || !args.warmup.is_finite()
        || args.warmup < 0.0
    {
        bail!("--duration must be > 0 and --warmup >= 0");
    }
    let external = args.local.is_some();
    let capacity = args
        .capacity
        .unwrap_or(if external { builtin::ECHO_CAPACITY } else { 64 })
        .max(1);
    let (cluster, node_count) = match (&args.local, &args.hosts) {
        (Some(local), Some(hosts)) => (
            cluster::join(local, hosts, &args.creds, capacity).await?,
            hosts.len(),
        ),
        _ => {
            if args.nodes < 2 {
                bail!("--nodes must be at least 2");
            }
            (
                cluster::start_in_process(args.nodes, args.tls, capacity).await?,
                args.nodes,
            )
        }
    };
    // Grid connections: conns[src][dst] (None on the diagonal; one row when joining).
    let conns: Vec<Vec<Option<Connection>>> = cluster
        .nodes
        .iter()
        .map(|m| m.connections().into_iter().map(Some).collect())
        .collect();
    let conns = Arc::new(conns);
    let rest: Arc<Vec<Vec<nodegrid_rest::RestClient>>> = Arc::new(
        cluster
            .rest
            .iter()
            .map(|row| row.iter().map(|(_, c)| c.clone()).collect())
            .collect(),
    );
    let modes: Vec<Mode> = if args.mode == Mode::All {
        vec![
            Mode::Single,
            Mode::StreamOut,
            Mode::StreamIn,
            Mode::StreamBidi,
        ]
    } else {
        vec![args.mode]
    };
    let mut all_ok = true;
    for mode in modes {
        let o = run_mode(
            &args,
            mode,
            conns.clone(),
            rest.clone(),
            capacity,
            node_count,
        )
        .await?;
        let (_, errors) = o.run.totals();
        all_ok &= errors == 0;
        report(&args, &o);
    }
    cluster.shutdown();
    Ok(all_ok)
}

fn progress(args: &BenchArgs, run: Arc<Run>, label: &str) -> Option<tokio::task::JoinHandle<()>> {
    if args.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new((run.duration().as_secs_f64() * 10.0) as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    Some(tokio::spawn(async move {
        while !run.done() {
            let (secs, ops) = run.progress();
            pb.set_position((secs * 10.0) as u64);
            if secs > 0.0 {
                pb.set_message(format!("{:.0} ops/s", ops as f64 / secs));
            } else {
                pb.set_message("warming up");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        pb.finish_and_clear();
    }))
}

/// A random source node and a different random destination: a reference, so the hot loop
/// does not touch the connection's reference count (the baseline's callers do not either).
fn pick<'a>(rng: &mut impl Rng, conns: &'a [Vec<Option<Connection>>]) -> Option<&'a Connection> {
    let src = rng.gen_range(0..conns.len());
    let row = &conns[src];
    let peers: usize = row.iter().filter(|c| c.is_some()).count();
    if peers == 0 {
        return None;
    }
    let k = rng.gen_range(0..peers);
    row.iter().flatten().nth(k)
}

/// How long each later slice of an interleaved (`--baseline`) run warms up again: the grid's
/// connections stay up between slices, the baseline's TCP pair is new.
const REWARM: Duration = Duration::from_millis(200);

async fn run_mode(
    args: &BenchArgs,
    mode: Mode,
    conns: Arc<Vec<Vec<Option<Connection>>>>,
    rest: Arc<Vec<Vec<nodegrid_rest::RestClient>>>,
    capacity: usize,
    nodes: usize,
) -> Result<Outcome> {
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let setup = Setup {
        args,
        mode,
        conns,
        rest,
        capacity,
    };
    if !args.baseline {
        let (run, hist) = setup.grid(warmup, duration, mode.name()).await?;
        return Ok(Outcome {
            mode,
            run,
            hist,
            baseline: None,
            nodes,
        });
    }
    // With a baseline, the grid and the baseline take turns in slices of at most a second, so
    // both see the same machine: on a shared host, load drifts between two back-to-back
    // five-second runs by more than the differences being measured.
    let slices = args.duration.ceil().max(1.0) as usize;
    let slice = duration / slices as u32;
    let (run, base_run) = (Run::new(warmup, duration), Run::new(warmup, duration));
    let (mut hist, mut base_hist) = (new_hist(), new_hist());
    for i in 0..slices {
        let w = if i == 0 { warmup } else { warmup.min(REWARM) };
        // The timeline second this slice's measured window falls into (by its middle).
        let t = ((i as f64 + 0.5) * slice.as_secs_f64()) as usize;
        let label = format!("{} {}/{slices}", mode.name(), i + 1);
        let (r, h) = setup.grid(w, slice, &label).await?;
        run.absorb(&r, t);
        let _ = hist.add(&h);
        let (r, h) = match mode {
            // A two-way stream's echo is a request and its response: the multiplexed echo.
            Mode::Single | Mode::StreamBidi => {
                let (p, c) = (args.payload, args.concurrency);
                baseline::single(p, c, nodes, w, slice).await?
            }
            _ => match args.stream_baseline {
                StreamBaseline::Mux => {
                    let (p, c) = (args.payload.max(1), args.concurrency);
                    baseline::one_way(p, c, capacity, w, slice).await?
                }
                StreamBaseline::Wire => baseline::wire(args.payload.max(1), w, slice).await?,
            },
        };
        base_run.absorb(&r, t);
        let _ = base_hist.add(&h);
    }
    Ok(Outcome {
        mode,
        run,
        hist,
        baseline: Some((base_run, base_hist)),
        nodes,
    })
}

/// What one grid measurement needs.
struct Setup<'a> {
    args: &'a BenchArgs,
    mode: Mode,
    conns: Arc<Vec<Vec<Option<Connection>>>>,
    rest: Arc<Vec<Vec<nodegrid_rest::RestClient>>>,
    capacity: usize,
}

impl Setup<'_> {
    /// Runs the grid workers for `warmup` + `duration`.
    async fn grid(
        &self,
        warmup: Duration,
        duration: Duration,
        label: &str,
    ) -> Result<(Arc<Run>, Histogram<u64>)> {
        let (args, mode, capacity) = (self.args, self.mode, self.capacity);
        let run = Run::new(warmup, duration);
        let bar = progress(args, run.clone(), label);
        // REST modes stream their bodies; `body` only carries the size there.
        let body = if matches!(mode, Mode::RestUpload | Mode::RestDownload) {
            Bytes::new()
        } else {
            Bytes::from(vec![0xa5u8; args.payload])
        };
        let rest_size = args.payload as u64;
        let mut tasks = Vec::new();
        for w in 0..args.concurrency {
            let (run, conns, rest, body) = (
                run.clone(),
                self.conns.clone(),
                self.rest.clone(),
                body.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64 * 7919 + 1);
                let mut h = new_hist();
                let mut errors = Vec::new();
                while !run.done() {
                    if matches!(mode, Mode::RestUpload | Mode::RestDownload) {
                        let row = &rest[rng.gen_range(0..rest.len())];
                        if row.is_empty() {
                            break;
                        }
                        let c = &row[rng.gen_range(0..row.len())];
                        if let Err(e) = rest_call(&run, &mut h, c, mode, rest_size).await {
                            if errors.len() < 3 {
                                errors.push(format!("{}: {e}", c.peer()));
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        continue;
                    }
                    let Some(c) = pick(&mut rng, &conns) else {
                        break;
                    };
                    let r = match mode {
                        Mode::Single => single_call(&run, &mut h, c, &body).await,
                        Mode::StreamOut => stream_out(&run, &mut h, c, &body, capacity).await,
                        Mode::StreamIn => stream_in(&run, &mut h, c, &body, capacity).await,
                        Mode::StreamBidi => stream_bidi(&run, &mut h, c, &body, capacity).await,
                        Mode::All | Mode::RestUpload | Mode::RestDownload => Ok(()),
                    };
                    if let Err(e) = r {
                        if errors.len() < 3 {
                            errors.push(format!("{}: {e}", c.remote()));
                        }
                        // Do not spin on a dead peer.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                (h, errors)
            }));
        }
        let mut hist = new_hist();
        let mut samples = Vec::new();
        for t in tasks {
            let (h, e) = t.await?;
            let _ = hist.add(&h);
            samples.extend(e);
        }
        if let Some(b) = bar {
            let _ = b.await;
        }
        for e in samples.iter().take(5) {
            eprintln!("error sample: {e}");
        }
        Ok((run, hist))
    }
}

async fn rest_call(
    run: &Run,
    h: &mut Histogram<u64>,
    c: &nodegrid_rest::RestClient,
    mode: Mode,
    size: u64,
) -> Result<(), nodegrid_rest::RestError> {
    let t0 = Instant::now();
    let r = async {
        if mode == Mode::RestUpload {
            let body =
                nodegrid_rest::RequestBody::from_stream(nodegrid_rest::builtin::repeat_bytes(size));
            let resp = c.call("sink", &[], body).await?;
            let got = resp.bytes(64).await?;
            if got != size.to_string().as_bytes() {
                return Err(nodegrid_rest::RestError::InvalidRequest {
                    peer: c.peer().to_string(),
                    reason: format!(
                        "sink answered {:?}, expected {size}",
                        String::from_utf8_lossy(&got)
                    ),
                });
            }
        } else {
            let s = size.to_string();
            let resp = c
                .call(
                    "source",
                    &[("size", s.as_str())],
                    nodegrid_rest::RequestBody::empty(),
                )
                .await?;
            let n = resp.into_body().drain().await?;
            if n != size {
                return Err(nodegrid_rest::RestError::InvalidRequest {
                    peer: c.peer().to_string(),
                    reason: format!("source sent {n} bytes, expected {size}"),
                });
            }
        }
        Ok(())
    }
    .await;
    run.record(h, t0, r.is_ok());
    r
}

async fn single_call(
    run: &Run,
    h: &mut Histogram<u64>,
    c: &Connection,
    body: &Bytes,
) -> Result<(), nodegrid::Error> {
    let t0 = Instant::now();
    let r = c.request(builtin::ECHO, body.clone()).await;
    let ok = matches!(&r, Ok(b) if b.len() == body.len());
    run.record(h, t0, ok);
    r.map(|_| ())
}

async fn stream_out(
    run: &Run,
    h: &mut Histogram<u64>,
    c: &Connection,
    body: &Bytes,
    cap: usize,
) -> Result<(), nodegrid::Error> {
    let payload = Bytes::from(format!("{}:{}", u64::MAX / 2, body.len()));
    let mut s = c
        .open_stream(
            builtin::TEST2,
            Some(payload),
            StreamOptions::new().capacities(0, cap),
        )
        .await?;
    // One timer for the whole stream, not one per message.
    let end = tokio::time::sleep(run.remaining() + Duration::from_millis(100));
    tokio::pin!(end);
    // The loop checks the clock reading of the last message (one read per message).
    let mut last = Instant::now();
    while !run.done_at(last) {
        tokio::select! {
            biased;
            item = s.recv() => match item {
                None => break,
                Some(Ok(_)) => {
                    let now = Instant::now();
                    run.record_at(h, last, now, true);
                    last = now;
                }
                Some(Err(e)) => {
                    run.record(h, last, false);
                    return Err(e);
                }
            },
            _ = &mut end => break,
        }
    }
    Ok(())
}

async fn stream_in(
    run: &Run,
    h: &mut Histogram<u64>,
    c: &Connection,
    body: &Bytes,
    cap: usize,
) -> Result<(), nodegrid::Error> {
    let s = c
        .open_stream(
            builtin::SINK,
            None,
            StreamOptions::new().capacities(cap as u32, 1),
        )
        .await?;
    let end = tokio::time::sleep(run.remaining() + Duration::from_millis(100));
    tokio::pin!(end);
    // Latency is the time between completed sends; the loop checks the end of the run with the
    // same reading (one clock read per message).
    let mut last = Instant::now();
    while !run.done_at(last) {
        tokio::select! {
            biased;
            r = s.send(body.clone()) => match r {
                Ok(()) => {
                    let now = Instant::now();
                    run.record_at(h, last, now, true);
                    last = now;
                }
                Err(e) => {
                    run.record(h, last, false);
                    return Err(e);
                }
            },
            _ = &mut end => break,
        }
    }
    Ok(())
}

async fn stream_bidi(
    run: &Run,
    h: &mut Histogram<u64>,
    c: &Connection,
    body: &Bytes,
    cap: usize,
) -> Result<(), nodegrid::Error> {
    let mut s = c
        .open_stream(
            builtin::ECHO,
            None,
            StreamOptions::new().capacities(cap as u32, cap),
        )
        .await?;
    while !run.done() {
        let t0 = Instant::now();
        let r = async {
            s.send(body.clone()).await?;
            match s.recv().await {
                Some(Ok(b)) if b.len() == body.len() => Ok(()),
                Some(Ok(_)) => Err(nodegrid::Error::Protocol(
                    "echo returned a different length".into(),
                )),
                Some(Err(e)) => Err(e),
                None => Err(nodegrid::Error::Disconnected),
            }
        };
        match tokio::time::timeout(run.remaining() + Duration::from_millis(100), r).await {
            Err(_) => break,
            Ok(Ok(())) => {
                run.record(h, t0, true);
            }
            Ok(Err(e)) => {
                run.record(h, t0, false);
                return Err(e);
            }
        }
    }
    Ok(())
}

fn report(args: &BenchArgs, o: &Outcome) {
    let secs = o.run.duration().as_secs_f64();
    let (ops, errors) = o.run.totals();
    let ops_per_sec = ops as f64 / secs;
    let mib_per_sec = ops_per_sec * args.payload as f64 / (1024.0 * 1024.0);
    let lat = Latency::of(&o.hist);
    let base = o.baseline.as_ref().map(|(r, h)| {
        let (bops, _) = r.totals();
        (bops as f64 / r.duration().as_secs_f64(), Latency::of(h))
    });
    let ratio = base.map(|(b, _)| if b > 0.0 { ops_per_sec / b } else { 0.0 });
    if args.json {
        let timeline: Vec<_> = o
            .run
            .timeline()
            .into_iter()
            .enumerate()
            .map(|(t, (ops, errors))| json!({"t": t, "ops": ops, "errors": errors}))
            .collect();
        let mut v = json!({
            "mode": o.mode.name(),
            "nodes": o.nodes,
            "payload_bytes": args.payload,
            "concurrency": args.concurrency,
            "duration_s": secs,
            "ops": ops,
            "errors": errors,
            "ops_per_sec": round2(ops_per_sec),
            "mib_per_sec": round2(mib_per_sec),
            "latency_us": lat,
            "peak_rss_bytes": peak_rss_bytes(),
            "ratio_vs_baseline": ratio.map(round3),
            "timeline": timeline,
        });
        if let (Some((b, bl)), Some(obj)) = (base, v.as_object_mut()) {
            obj.insert(
                "baseline".into(),
                json!({"ops_per_sec": round2(b), "latency_us": bl}),
            );
        }
        println!("{v}");
        return;
    }
    println!(
        "\n{} — {} nodes, payload {} B, concurrency {}, {:.1} s measured",
        o.mode.name(),
        o.nodes,
        args.payload,
        args.concurrency,
        secs
    );
    println!(
        "{:<10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "", "ops/s", "MiB/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "errors"
    );
    let row = |name: &str, ops: f64, l: &Latency, errs: Option<u64>| {
        println!(
            "{:<10} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>7}",
            name,
            ops,
            ops * args.payload as f64 / 1048576.0,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            errs.map(|e| e.to_string()).unwrap_or_default()
        )
    };
    row("grid", ops_per_sec, &lat, Some(errors));
    if let Some((b, bl)) = base {
        row("raw tcp", b, &bl, None);
        let r = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}x", a / b)
            } else {
                "-".into()
            }
        };
        println!(
            "{:<10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "ratio",
            r(ops_per_sec, b),
            "",
            r(lat.p50, bl.p50),
            r(lat.p90, bl.p90),
            r(lat.p99, bl.p99),
            r(lat.p999, bl.p999),
            r(lat.max, bl.max)
        );
    }
    println!("peak RSS {:.1} MiB", peak_rss_bytes() as f64 / 1048576.0);
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
