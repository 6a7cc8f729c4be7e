//! `GET /metrics` in Prometheus' text format.
//!
//! What the database knows (deliveries by event and outcome, tasks by state, CI rounds, the
//! queues) is read from it when scraped, so every replica reports the same totals. What only a
//! process sees (its GitHub API calls and the rate limit GitHub last reported, its running
//! containers, and the latency histograms) is counted in the process.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sea_orm::{ConnectionTrait, DbErr};

use crate::app::Ctx;

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
}

async fn rows(ctx: &Ctx, sql: &str) -> Result<Vec<(Vec<String>, i64)>, DbErr> {
    let rows = ctx
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            ctx.db.get_database_backend(),
            sql.to_string(),
        ))
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let mut labels = Vec::new();
        let mut i = 0;
        loop {
            match row.try_get_by_index::<String>(i) {
                Ok(v) => labels.push(v),
                Err(_) => break,
            }
            i += 1;
        }
        let value: i64 = row.try_get_by_index(i)?;
        out.push((labels, value));
    }
    Ok(out)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn render(ctx: &Ctx) -> Result<String, DbErr> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP amp_deliveries_total Webhook deliveries stored, by event and outcome.\n# TYPE amp_deliveries_total counter"
    );
    for (labels, n) in rows(
        ctx,
        "SELECT event, status, COUNT(*) FROM deliveries GROUP BY event, status ORDER BY event, status",
    )
    .await?
    {
        let _ = writeln!(
            out,
            "amp_deliveries_total{{event=\"{}\",outcome=\"{}\"}} {n}",
            escape(&labels[0]),
            escape(&labels[1])
        );
    }
    let _ = writeln!(
        out,
        "# HELP amp_tasks Tasks by state.\n# TYPE amp_tasks gauge"
    );
    let by_state = rows(ctx, "SELECT state, COUNT(*) FROM tasks GROUP BY state").await?;
    for state in crate::state::TaskState::ALL {
        let n = by_state
            .iter()
            .find(|(l, _)| l[0] == state.as_str())
            .map(|(_, n)| *n)
            .unwrap_or(0);
        let _ = writeln!(out, "amp_tasks{{state=\"{}\"}} {n}", state.as_str());
    }
    let ci_rounds = rows(
        ctx,
        "SELECT COUNT(*) FROM task_rounds WHERE kind = 'ci' AND (outcome IS NULL OR outcome <> 'gave_up')",
    )
    .await?;
    let _ = writeln!(
        out,
        "# HELP amp_ci_rounds_total CI failures sent back to the agent.\n# TYPE amp_ci_rounds_total counter\namp_ci_rounds_total {}",
        ci_rounds.first().map(|(_, n)| *n).unwrap_or(0)
    );
    let queued = by_state
        .iter()
        .find(|(l, _)| l[0] == "queued")
        .map(|(_, n)| *n)
        .unwrap_or(0);
    let backlog = crate::store::deliveries::backlog(&ctx.db).await?;
    let _ = writeln!(
        out,
        "# HELP amp_queue_depth Work waiting: queued tasks, and deliveries not yet processed.\n# TYPE amp_queue_depth gauge\namp_queue_depth{{queue=\"tasks\"}} {queued}\namp_queue_depth{{queue=\"deliveries\"}} {backlog}"
    );
    let _ = writeln!(
        out,
        "# HELP amp_running_tasks Tasks with a command running in this process.\n# TYPE amp_running_tasks gauge\namp_running_tasks {}",
        ctx.running.len()
    );
    let m = &*METRICS;
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
            m.github_calls[i].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP amp_github_rate_limit_remaining Requests left in GitHub's rate limit, as last reported (-1: not yet known).\n# TYPE amp_github_rate_limit_remaining gauge\namp_github_rate_limit_remaining {}",
        m.github_rate_remaining.load(Ordering::Relaxed)
    );
    m.intake.write(
        &mut out,
        "amp_intake_seconds",
        "Time to verify and store a webhook delivery.",
    );
    m.agent_start.write(
        &mut out,
        "amp_agent_start_seconds",
        "Time from a task's creation to its agent starting.",
    );
    m.time_to_green.write(
        &mut out,
        "amp_time_to_green_seconds",
        "Time from a task's creation to its checks passing.",
    );
    Ok(out)
}

pub async fn metrics(State(ctx): State<Ctx>) -> Response {
    match render(&ctx).await {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => crate::pages::internal_error(e),
    }
}
