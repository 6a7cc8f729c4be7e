//! One turn of the agent: `amp -x … --stream-json` in the workspace (or `amp threads continue`
//! for a task with a thread), its output turned into task events as it comes, under the idle
//! timeout. The output is bounded (see [`OutputLimits`]): lines are cut at their cap, the log
//! keeps the newest output, and a turn that prints more than a turn may is stopped.

use std::time::SystemTime;

use secrecy::SecretString;
use tokio::sync::mpsc;

use super::agent_log::AgentLog;
use super::outcome::End;
use super::workspace::Workspace;
use crate::agent::limits::OutputLimits;
use crate::agent::lines::{Line, LineSplitter, Tail};
use crate::agent::stream::{AgentEvent, TurnOutcome, TurnTracker, parse};
use crate::context::Ctx;
use crate::docker::Output;
use crate::domain::{AgentLine, Failure, ThreadId};
use crate::entities::task;
use crate::lifecycle::Journal;
use crate::repo_config::Effective;
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
    config: &Effective,
) -> Result<TurnOutcome, End> {
    let mut cmd = vec![ws.amp_program()];
    if let Some(thread) = &task.thread_id {
        cmd.extend(["threads".into(), "continue".into(), thread.to_string()]);
    }
    cmd.extend([
        "-x".into(),
        prompt,
        "--stream-json".into(),
        "--dangerously-allow-all".into(),
    ]);
    if let Some(mode) = config.mode.value {
        cmd.extend(["--mode".into(), mode.as_str().into()]);
    }
    // The repository's variables first: the service's own (which a file may not name) follow.
    let mut env = config.variables();
    // No turn outlives its task, so neither does the credential it gets in the sandbox.
    let until = SystemTime::now() + ctx.config.task_timeout;
    env.extend(ws.agent_env(
        amp_key,
        ctx.config.amp_url.as_deref(),
        until,
        &config.egress_allow.value,
    ));
    env.push("AMP_SKIP_UPDATE_CHECK=1".into());
    journal.info("Starting Amp").await;
    let mut log = AgentLog::open(ctx, task.id)
        .await
        .map_err(|e| End::Failed(Failure::internal("reading the task's log failed", e)))?;
    let limits = log.limits().clone();
    // Few chunks in flight: a fast agent waits for the log rather than filling memory.
    let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let run = ws.spawn(cmd, env, config.workdir.value.as_deref(), tx);
    let mut tracker = TurnTracker::default();
    let mut out = TurnOutput::new(&limits);
    let idle = ctx.config.agent_idle_timeout;
    let turn_timeout = config.turn_timeout.value;
    let deadline = tokio::time::Instant::now() + turn_timeout;
    loop {
        let wait = idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let first = match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => break,
            Err(_) => {
                run.abort();
                out.finish(ctx, task, &mut tracker, &mut log).await?;
                log.flush().await;
                let why = if tokio::time::Instant::now() >= deadline {
                    failures::turn_too_long(turn_timeout)
                } else {
                    failures::agent_idle(idle)
                };
                return Err(End::TimedOut(why));
            }
        };
        // Whatever else is already waiting is taken in too, and stored in batches.
        let mut next = Some(first);
        while let Some(output) = next.take() {
            out.take(output, ctx, task, &mut tracker, &mut log).await?;
            if out.total > limits.turn_bytes {
                run.abort();
                out.finish(ctx, task, &mut tracker, &mut log).await?;
                log.flush().await;
                tracing::warn!(task_id = %task.id, bytes = out.total, "the agent printed more than a turn may; stopped");
                return Err(End::Failed(failures::agent_flooded(limits.turn_bytes)));
            }
            if log.is_full() {
                log.flush().await;
            }
            next = rx.try_recv().ok();
        }
        log.flush().await;
    }
    out.finish(ctx, task, &mut tracker, &mut log).await?;
    log.flush().await;
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
    let stderr = journal.redact(&out.stderr_tail.into_string());
    Ok(tracker.finish(code, &stderr))
}

/// Chunks of output (of at most a pipe's worth each, as Docker forwards them) waiting to be
/// taken in.
pub(super) const CHUNKS_IN_FLIGHT: usize = 64;

/// A turn's output as it comes: both streams cut into bounded lines, the end of stderr kept for
/// the failure's reason, and everything counted.
struct TurnOutput {
    stdout: LineSplitter,
    stderr: LineSplitter,
    stderr_tail: Tail,
    /// Bytes printed so far, kept or not.
    total: u64,
    lines: Vec<Line>,
}

impl TurnOutput {
    fn new(limits: &OutputLimits) -> TurnOutput {
        TurnOutput {
            stdout: LineSplitter::new(limits.line_max),
            stderr: LineSplitter::new(limits.line_max),
            stderr_tail: Tail::new(limits.stderr_tail),
            total: 0,
            lines: Vec::new(),
        }
    }

    async fn take(
        &mut self,
        output: Output,
        ctx: &Ctx,
        task: &task::Model,
        tracker: &mut TurnTracker,
        log: &mut AgentLog,
    ) -> Result<(), End> {
        match output {
            Output::Stdout(chunk) => {
                self.total += chunk.len() as u64;
                self.stdout.push(&chunk, &mut self.lines);
                for line in self.lines.drain(..) {
                    for event in parse(&line) {
                        observe(ctx, task, tracker, log, &event).await?;
                    }
                    // A chunk can hold thousands of short lines.
                    if log.is_full() {
                        log.flush().await;
                    }
                }
            }
            Output::Stderr(chunk) => {
                self.total += chunk.len() as u64;
                self.stderr_tail.push(&chunk);
                self.stderr.push(&chunk, &mut self.lines);
                for line in self.lines.drain(..) {
                    log.push(AgentLine::Stderr {
                        text: line.marked(),
                    });
                    if log.is_full() {
                        log.flush().await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The last lines, when the output ended (or was cut off) without a newline.
    async fn finish(
        &mut self,
        ctx: &Ctx,
        task: &task::Model,
        tracker: &mut TurnTracker,
        log: &mut AgentLog,
    ) -> Result<(), End> {
        if let Some(line) = self.stdout.finish() {
            for event in parse(&line) {
                observe(ctx, task, tracker, log, &event).await?;
            }
        }
        if let Some(line) = self.stderr.finish() {
            log.push(AgentLine::Stderr {
                text: line.marked(),
            });
        }
        Ok(())
    }
}

/// Take in one event of the turn: stored in the log, and the thread remembered as soon as it is
/// known (a follow-up or a resumed run continues it).
async fn observe(
    ctx: &Ctx,
    task: &task::Model,
    tracker: &mut TurnTracker,
    log: &mut AgentLog,
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
    log.push(event.stored());
    Ok(())
}
