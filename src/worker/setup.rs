//! The repository's `setup` commands (`.github/amp.toml`), run one by one with `sh -c` in a new
//! workspace before the agent's first turn there, as the agent's user, in `paths.workdir`, with
//! the file's `env`, the `secrets` it lists (theirs alone: the agent never gets them) and the
//! sandbox's proxy (never the Amp credential). Their output goes to the task's log as setup
//! lines, within the same bounds as the agent's; all of them together have the task's turn
//! timeout. A setup with secrets leaves no process behind.

use std::time::{Instant, SystemTime};

use secrecy::SecretString;
use tokio::sync::mpsc;

use super::agent_log::AgentLog;
use super::agent_turn::CHUNKS_IN_FLIGHT;
use super::outcome::End;
use super::workspace::Workspace;
use crate::agent::lines::{LineSplitter, Tail};
use crate::context::Ctx;
use crate::docker::Output;
use crate::domain::{AgentLine, Failure};
use crate::entities::task;
use crate::lifecycle::Journal;
use crate::repo_config::Effective;
use crate::texts::failures;

/// How much of the end of a failed command's output is kept for its reason.
const FAILED_TAIL: usize = 4 * 1024;

/// A setup command that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupFailed {
    /// Its place in `setup`, from 1.
    pub number: usize,
    pub command: String,
    /// Its exit code (`None`: it was killed, or its end is unknown).
    pub code: Option<i64>,
    /// The end of its output (stdout and stderr as they came), masked.
    pub tail: String,
}

/// Run every setup command of `config` in order, stopping at the first that fails (returned).
/// `Err`: the run ends (setup took too long, printed too much, or the container failed).
pub async fn run(
    ctx: &Ctx,
    ws: &Workspace,
    journal: &Journal,
    task: &task::Model,
    amp_key: &SecretString,
    config: &Effective,
) -> Result<Option<SetupFailed>, End> {
    let commands = &config.setup.value;
    if commands.is_empty() {
        return Ok(None);
    }
    let mut env = config.variables();
    // The secrets the file lists, for setup alone (the service masks their values everywhere).
    env.extend(ctx.config.repo_secrets.env_for(&config.secrets.value));
    // The sandbox's proxy (which needs the task's credential), but nothing that reaches Amp.
    let until = SystemTime::now() + ctx.config.task_timeout;
    env.extend(
        ws.agent_env(
            amp_key,
            ctx.config.amp_url.as_deref(),
            until,
            &config.egress_allow.value,
        )
        .into_iter()
        .filter(|v| !v.starts_with("AMP_")),
    );
    let mut log = AgentLog::open(ctx, task.id)
        .await
        .map_err(|e| End::Failed(Failure::internal("reading the task's log failed", e)))?;
    let timeout = config.turn_timeout.value;
    let deadline = tokio::time::Instant::now() + timeout;
    let started = Instant::now();
    let mut printed = 0u64;
    for (i, command) in commands.iter().enumerate() {
        let number = i + 1;
        journal
            .info(&format!("Setup {number}/{}: {command}", commands.len()))
            .await;
        // The command heads its output in the setup section.
        log.push(AgentLine::Setup {
            text: format!("$ {command}"),
        });
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let cmd = vec!["sh".to_string(), "-c".to_string(), command.clone()];
        let child = ws.spawn(cmd, env.clone(), config.workdir.value.as_deref(), tx);
        let mut out = Taken::new(log.limits().line_max);
        let cut = take(rx, &mut out, &mut log, &mut printed, deadline).await;
        log.flush().await;
        if let Some(cut) = cut {
            child.abort();
            return Err(match cut {
                Cut::Timeout => End::TimedOut(failures::setup_too_long(timeout)),
                Cut::Flood(limit) => End::Failed(failures::setup_flooded(limit)),
            });
        }
        let code = match child.await {
            Ok(Ok(code)) => code,
            Ok(Err(e)) => {
                return Err(End::Failed(Failure::internal(
                    "running a setup command in the agent container failed",
                    e,
                )));
            }
            Err(_) => None,
        };
        if code != Some(0) {
            let failed = SetupFailed {
                number,
                command: command.clone(),
                code,
                tail: journal.redact(&out.tail.into_string()),
            };
            end_with_secrets(ws, config).await;
            return Ok(Some(failed));
        }
    }
    end_with_secrets(ws, config).await;
    journal
        .info(&format!(
            "Setup finished: {} command{} in {:.1} s",
            commands.len(),
            if commands.len() == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64()
        ))
        .await;
    Ok(None)
}

/// A setup that had secrets leaves nothing running: a process it started in the background
/// would keep them in its environment, where the agent (the same user) could read them.
async fn end_with_secrets(ws: &Workspace, config: &Effective) {
    if !config.secrets.value.is_empty() {
        ws.kill_leftovers().await;
    }
}

/// Why a command's output was cut off.
enum Cut {
    /// Setup ran past its time.
    Timeout,
    /// Setup printed more than a turn may (the limit).
    Flood(u64),
}

/// One command's output as it comes: cut into bounded lines for the log (both streams in one,
/// as a terminal shows them), with its end kept.
struct Taken {
    lines: LineSplitter,
    tail: Tail,
}

impl Taken {
    fn new(line_max: usize) -> Taken {
        Taken {
            lines: LineSplitter::new(line_max),
            tail: Tail::new(FAILED_TAIL),
        }
    }
}

/// Take a command's output into the log until it ends; why it was cut off, if it was.
async fn take(
    mut rx: mpsc::Receiver<Output>,
    out: &mut Taken,
    log: &mut AgentLog,
    printed: &mut u64,
    deadline: tokio::time::Instant,
) -> Option<Cut> {
    let limit = log.limits().turn_bytes;
    let mut lines = Vec::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return Some(Cut::Timeout),
            Ok(None) => break,
            Ok(Some(Output::Stdout(chunk) | Output::Stderr(chunk))) => chunk,
        };
        *printed += chunk.len() as u64;
        out.tail.push(&chunk);
        out.lines.push(&chunk, &mut lines);
        for line in lines.drain(..) {
            log.push(AgentLine::Setup {
                text: line.marked(),
            });
            if log.is_full() {
                log.flush().await;
            }
        }
        if *printed > limit {
            return Some(Cut::Flood(limit));
        }
    }
    if let Some(line) = out.lines.finish() {
        log.push(AgentLine::Setup {
            text: line.marked(),
        });
    }
    None
}
