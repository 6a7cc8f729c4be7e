//! `GET /metrics` in Prometheus' text format.
//!
//! What the database knows (deliveries by event and outcome, tasks by state, CI rounds, the
//! queues) is read from it when scraped, at most once per [`STORE_READ_REUSE`], so every replica
//! reports the same totals and a flood of scrapes costs the database nothing more. What only a
//! process sees (its GitHub API calls and the rate limit GitHub last reported, its running
//! containers, and the latency histograms) is counted in the process.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sea_orm::{ConnectionTrait, DbErr};

use crate::context::Ctx;
use crate::domain::TaskState;
use crate::metrics::METRICS;

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

/// How long the store's figures are reused: scrapes as often as anyone likes cost the database at
/// most one read of them per this interval.
const STORE_READ_REUSE: Duration = Duration::from_secs(5);

/// The store's figures as last read, shared by the scrapes that come while they are fresh (and by
/// those that wait while they are read).
#[derive(Debug, Default)]
pub struct StoreFigures {
    last: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl StoreFigures {
    async fn text(&self, ctx: &Ctx) -> Result<String, DbErr> {
        let mut last = self.last.lock().await;
        if let Some((at, text)) = last.as_ref()
            && at.elapsed() < STORE_READ_REUSE
        {
            return Ok(text.clone());
        }
        let text = store_text(ctx).await?;
        *last = Some((Instant::now(), text.clone()));
        Ok(text)
    }
}

async fn render(ctx: &Ctx) -> Result<String, DbErr> {
    let mut out = ctx.store_figures.text(ctx).await?;
    let _ = writeln!(
        out,
        "# HELP amp_running_tasks Tasks with a command running in this process.\n# TYPE amp_running_tasks gauge\namp_running_tasks {}",
        ctx.lifecycle.local.len()
    );
    METRICS.write(&mut out);
    Ok(out)
}

/// What the database knows, for every replica alike.
async fn store_text(ctx: &Ctx) -> Result<String, DbErr> {
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
    for state in TaskState::ALL {
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
        Err(e) => super::internal_error(e),
    }
}
