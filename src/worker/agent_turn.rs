//! One turn of the agent: `amp -x … --stream-json` in the workspace (or `amp threads continue`
//! for a task with a thread), its output turned into task events as it comes, under the idle
//! timeout.

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;

use super::outcome::End;
use super::workspace::Workspace;
use crate::agent::stream::{AgentEvent, TurnOutcome, TurnTracker, parse_line};
use crate::context::Ctx;
use crate::docker::Output;
use crate::domain::{AgentLine, Failure, ThreadId};
use crate::entities::task;
use crate::lifecycle::Journal;
use crate::store::tasks::{self, Progress};
use crate::texts::failures;

/// Run one turn with `prompt`; what it came to, or how the run ends when the turn could not
/// finish (the agent went silent, the container failed).
pub async fn run(
    ctx: &Ctx,
    ws: &Workspace,
    journal: &Journal,
    task: &task::Model,
    amp_key: &SecretString,
    prompt: String,
) -> Result<TurnOutcome, End> {
    let mut cmd = vec!["amp".to_string()];
    if let Some(thread) = &task.thread_id {
        cmd.extend(["threads".into(), "continue".into(), thread.to_string()]);
    }
    cmd.extend([
        "-x".into(),
        prompt,
        "--stream-json".into(),
        "--dangerously-allow-all".into(),
    ]);
    let mut env = vec![
        format!("AMP_API_KEY={}", amp_key.expose_secret()),
        "AMP_SKIP_UPDATE_CHECK=1".into(),
    ];
    if let Some(url) = &ctx.config.amp_url {
        env.push(format!("AMP_URL={url}"));
    }
    journal.info("Starting Amp").await;
    let (tx, mut rx) = mpsc::channel(1024);
    let run = ws.spawn(cmd, env, tx);
    let mut tracker = TurnTracker::default();
    let mut stderr = String::new();
    let mut pending = String::new();
    let idle = ctx.config.agent_idle_timeout;
    loop {
        match tokio::time::timeout(idle, rx.recv()).await {
            Ok(Some(Output::Stdout(chunk))) => {
                pending.push_str(&chunk);
                while let Some(pos) = pending.find('\n') {
                    let line: String = pending.drain(..=pos).collect();
                    for event in parse_line(&line) {
                        observe(ctx, journal, task, &mut tracker, &event).await?;
                    }
                }
            }
            Ok(Some(Output::Stderr(chunk))) => {
                stderr.push_str(&chunk);
                journal
                    .agent(AgentLine::Stderr {
                        text: chunk.trim_end().to_string(),
                    })
                    .await;
            }
            Ok(None) => break,
            Err(_) => {
                run.abort();
                return Err(End::TimedOut(failures::agent_idle(idle)));
            }
        }
    }
    for event in parse_line(&pending) {
        observe(ctx, journal, task, &mut tracker, &event).await?;
    }
    let code = match run.await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            return Err(End::Failed(Failure::internal(
                "running Amp in the agent container failed",
                e,
            )));
        }
        Err(_) => None,
    };
    let stderr = journal.redact(&stderr);
    Ok(tracker.finish(code, &stderr))
}

/// Take in one event of the turn: stored in the log, and the thread remembered as soon as it is
/// known (a follow-up or a resumed run continues it).
async fn observe(
    ctx: &Ctx,
    journal: &Journal,
    task: &task::Model,
    tracker: &mut TurnTracker,
    event: &AgentEvent,
) -> Result<(), End> {
    tracker.observe(event);
    if let AgentEvent::Init { thread_id } = event {
        let progress = Progress {
            thread_id: Some(ThreadId(thread_id.clone())),
            ..Default::default()
        };
        tasks::record_progress(&ctx.db, task.id, progress)
            .await
            .map_err(|e| End::Failed(Failure::internal("recording the Amp thread failed", e)))?;
    }
    journal.agent(event.stored()).await;
    Ok(())
}
