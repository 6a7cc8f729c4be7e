//! What this process counts for `GET /metrics` (see [`crate::pages::metrics`]): its GitHub API
//! calls and the rate limit GitHub last reported, and the latency histograms.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A histogram with fixed buckets (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {total}");
    }
}

/// What this process counts.
pub struct Metrics {
    /// GitHub API calls: 2xx/3xx, 4xx, 5xx, and transport failures.
    github_calls: [AtomicU64; 4],
    /// `x-ratelimit-remaining` of GitHub's last answer (-1: none yet).
    github_rate_remaining: AtomicI64,
    pub intake: Histogram,
    pub agent_start: Histogram,
    pub time_to_green: Histogram,
}

const FAST: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const SLOW: &[f64] = &[0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
const LONG: &[f64] = &[60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0];

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    github_calls: Default::default(),
    github_rate_remaining: AtomicI64::new(-1),
    intake: Histogram::new(FAST),
    agent_start: Histogram::new(SLOW),
    time_to_green: Histogram::new(LONG),
});

impl Metrics {
    /// One answer from GitHub (`None`: it could not be reached).
    pub fn github_call(&self, status: Option<u16>, rate_remaining: Option<i64>) {
        let slot = match status {
            Some(s) if s < 400 => 0,
            Some(s) if s < 500 => 1,
            Some(_) => 2,
            None => 3,
        };
        self.github_calls[slot].fetch_add(1, Ordering::Relaxed);
        if let Some(left) = rate_remaining {
            self.github_rate_remaining.store(left, Ordering::Relaxed);
        }
    }

    /// The process's own counters and histograms, in Prometheus' text format.
    pub fn write(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP amp_github_calls_total GitHub API calls by this process, by result.\n# TYPE amp_github_calls_total counter"
        );
        for (i, result) in ["ok", "client_error", "server_error", "unreachable"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "amp_github_calls_total{{result=\"{result}\"}} {}",
                self.github_calls[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP amp_github_rate_limit_remaining Requests left in GitHub's rate limit, as last reported (-1: not yet known).\n# TYPE amp_github_rate_limit_remaining gauge\namp_github_rate_limit_remaining {}",
            self.github_rate_remaining.load(Ordering::Relaxed)
        );
        self.intake.write(
            out,
            "amp_intake_seconds",
            "Time to verify and store a webhook delivery.",
        );
        self.agent_start.write(
            out,
            "amp_agent_start_seconds",
            "Time from a task's creation to its agent starting.",
        );
        self.time_to_green.write(
            out,
            "amp_time_to_green_seconds",
            "Time from a task's creation to its checks passing.",
        );
    }
}
