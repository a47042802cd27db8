//! Measurement plumbing shared by the grid benchmark and the raw-TCP baseline: latency
//! histograms, per-second timelines, and the run clock (warm-up, then the measured window).

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counter shards per second of the timeline. Each thread counts into its own shard (its
/// own cache line), so the measurement adds no cross-core contention: with one shared counter,
/// 64 workers on two cores would contend on every operation, which a single baseline receiver
/// never does.
const SHARDS: usize = 8;

#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

/// Operations and errors of one second of the timeline.
#[derive(Default)]
struct Slot {
    ops: [Padded; SHARDS],
    errors: [Padded; SHARDS],
}

fn sum(c: &[Padded; SHARDS]) -> u64 {
    c.iter().map(|a| a.0.load(Ordering::Relaxed)).sum()
}

fn shard() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SHARD: usize = (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// The clock of one run: workers call [`Run::record`] per operation; only operations that
/// complete inside the measured window count.
pub struct Run {
    start: Instant,
    warmup: Duration,
    duration: Duration,
    stop: AtomicBool,
    slots: Vec<Slot>,
}

impl Run {
    pub fn new(warmup: Duration, duration: Duration) -> Arc<Run> {
        let secs = duration.as_secs_f64().ceil().max(1.0) as usize;
        Arc::new(Run {
            start: Instant::now(),
            warmup,
            duration,
            stop: AtomicBool::new(false),
            slots: (0..secs).map(|_| Slot::default()).collect(),
        })
    }

    /// Whether workers should stop.
    pub fn done(&self) -> bool {
        self.done_at(Instant::now())
    }

    /// [`Run::done`] with the time already read (the stream loops read the clock once per
    /// message, as the baseline's receiver does).
    pub fn done_at(&self, now: Instant) -> bool {
        self.stop.load(Ordering::Relaxed)
            || now.saturating_duration_since(self.start) >= self.warmup + self.duration
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Time left until the end of the run.
    pub fn remaining(&self) -> Duration {
        (self.warmup + self.duration).saturating_sub(self.start.elapsed())
    }

    /// The second of the measured window `t` falls into, if any.
    fn slot(&self, t: Instant) -> Option<usize> {
        let since = t.checked_duration_since(self.start)?;
        let m = since.checked_sub(self.warmup)?;
        if m >= self.duration {
            return None;
        }
        Some((m.as_secs() as usize).min(self.slots.len() - 1))
    }

    /// Records one completed operation that started at `t0`. Returns whether it counted.
    pub fn record(&self, hist: &mut Histogram<u64>, t0: Instant, ok: bool) -> bool {
        self.record_at(hist, t0, Instant::now(), ok)
    }

    /// [`Run::record`] with the completion time already read (one clock read per message in
    /// the stream loops, which also use it as the next message's start).
    pub fn record_at(
        &self,
        hist: &mut Histogram<u64>,
        t0: Instant,
        now: Instant,
        ok: bool,
    ) -> bool {
        let Some(s) = self.slot(now) else {
            return false;
        };
        if ok {
            self.slots[s].ops[shard()].0.fetch_add(1, Ordering::Relaxed);
            let _ = hist.record(now.duration_since(t0).as_nanos().max(1) as u64);
        } else {
            self.slots[s].errors[shard()]
                .0
                .fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Seconds elapsed in the measured window so far (for the progress bar).
    pub fn progress(&self) -> (f64, u64) {
        let m = self
            .start
            .elapsed()
            .saturating_sub(self.warmup)
            .min(self.duration);
        let ops = self.slots.iter().map(|s| sum(&s.ops)).sum();
        (m.as_secs_f64(), ops)
    }

    pub fn totals(&self) -> (u64, u64) {
        let ops = self.slots.iter().map(|s| sum(&s.ops)).sum();
        let errs = self.slots.iter().map(|s| sum(&s.errors)).sum();
        (ops, errs)
    }

    pub fn timeline(&self) -> Vec<(u64, u64)> {
        self.slots
            .iter()
            .map(|s| (sum(&s.ops), sum(&s.errors)))
            .collect()
    }

    /// Adds everything `slice` counted to second `t` of this run's timeline (the last second
    /// if `t` is past it): an interleaved run sums its slices this way.
    pub fn absorb(&self, slice: &Run, t: usize) {
        let Some(slot) = self.slots.get(t).or(self.slots.last()) else {
            return;
        };
        let (ops, errors) = slice.totals();
        slot.ops[shard()].0.fetch_add(ops, Ordering::Relaxed);
        slot.errors[shard()].0.fetch_add(errors, Ordering::Relaxed);
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }
}

pub fn new_hist() -> Histogram<u64> {
    // 1 ns .. 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |v: u64| (v as f64 / 1000.0 * 10.0).round() / 10.0;
        Latency {
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}
