//! The worker manager: claims queued tasks and runs each in its own agent container.
//!
//! A task: container and workspace volume → clone (with the installation token in that one git
//! process's environment only) → a branch → the agent's turn, its output stored as events →
//! commit, push, draft pull request → `awaiting_ci`. The container stays for the CI rounds and is
//! removed when the task ends, however it ends.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::agent::stream::{AgentEvent, TurnOutcome, TurnTracker, parse_line};
use crate::app::Ctx;
use crate::bus::Published;
use crate::docker::{ContainerSpec, Engine, Exec, Output, TaskContainer, WORKSPACE};
use crate::entities::task;
use crate::entities::task_round;
use crate::github::texts::{self, TaskView};
use crate::github::{GitHub, RepoRef};
use crate::state::TaskState;
use crate::store::rounds;
use crate::store::tasks::{self, Progress, kind};

const SWEEP: Duration = Duration::from_secs(5);
/// How often a running task checks the database for a stop asked on another replica.
const STOP_CHECK: Duration = Duration::from_secs(2);
/// How often orphaned containers and abandoned tasks are looked for.
const RECONCILE: Duration = Duration::from_secs(30);
/// How long handing back the running tasks may take at shutdown (after `DRAIN_TIMEOUT`); a
/// platform's stop timeout must leave room for both.
pub const HAND_BACK_WAIT: Duration = Duration::from_secs(10);

fn lease_ms(ctx: &Ctx) -> i64 {
    ctx.tunables.task_lease.as_millis() as i64
}
/// The agent container's limits.
const AGENT_MEMORY: i64 = 4 * 1024 * 1024 * 1024;
const AGENT_NANO_CPUS: i64 = 2_000_000_000;
const AGENT_PIDS: i64 = 1024;
const AGENT_USER: &str = "1000:1000";
const BOT_NAME: &str = "amp-orchestrator[bot]";

/// Tasks running in this process, for `/amp stop`.
#[derive(Default)]
pub struct Running {
    tasks: Mutex<HashMap<i64, CancellationToken>>,
}

impl Running {
    /// Ask a running task to stop; `false` when it does not run here.
    pub fn stop(&self, task_id: i64) -> bool {
        match self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&task_id)
        {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// How many tasks run here now.
    pub fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, task_id: i64) -> bool {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&task_id)
    }

    fn insert(&self, task_id: i64) -> CancellationToken {
        let token = CancellationToken::new();
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id, token.clone());
        token
    }

    fn remove(&self, task_id: i64) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&task_id);
    }
}

/// Claim and run tasks until shutdown, at most `MAX_CONCURRENT_TASKS` at once. Tasks whose
/// worker died while their container lived on are resumed first. At shutdown no more tasks
/// are claimed; see [`drain`].
pub async fn run(ctx: Ctx) {
    let slots = Arc::new(Semaphore::new(ctx.config.max_concurrent_tasks));
    let mut resumable: VecDeque<Resumable> = reconcile(&ctx).await.into();
    let mut last_reconcile = tokio::time::Instant::now();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = ctx.shutdown.cancelled() => return drain(&ctx, &slots).await,
        };
        if ctx.shutdown.is_cancelled() {
            drop(permit);
            return drain(&ctx, &slots).await;
        }
        let handed_back = ctx
            .reconcile_soon
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        if handed_back || last_reconcile.elapsed() >= RECONCILE.min(ctx.tunables.task_lease) {
            for found in reconcile(&ctx).await {
                if !resumable.iter().any(|r| r.task.id == found.task.id) {
                    resumable.push_back(found);
                }
            }
            last_reconcile = tokio::time::Instant::now();
        }
        let next = match resumable.pop_front() {
            Some(r) => take_over(&ctx, r).await,
            None => match tasks::claim_next(&ctx.db, &ctx.instance_id, lease_ms(&ctx)).await {
                Ok(claimed) => claimed.map(|task| (task, Start::Fresh)),
                Err(e) => {
                    error!(error = %e, "claiming a task failed");
                    None
                }
            },
        };
        if let Some((task, start)) = next {
            let ctx = ctx.clone();
            let span = info_span!("task", task_id = task.id, public_id = %task.public_id, repo = %task.repo_full_name);
            tokio::spawn(
                async move {
                    execute(&ctx, task, start).await;
                    drop(permit);
                }
                .instrument(span),
            );
            continue;
        }
        drop(permit);
        if !resumable.is_empty() {
            continue;
        }
        tokio::select! {
            _ = ctx.task_wakeup.notified() => {}
            _ = tokio::time::sleep(SWEEP) => {}
            _ = ctx.shutdown.cancelled() => return drain(&ctx, &slots).await,
        }
    }
}

/// Shutting down: running tasks get `drain_timeout` to finish; those still running then are
/// handed back (their lease released, their containers left running), for another replica to
/// take over at once, or this one at its next start.
async fn drain(ctx: &Ctx, slots: &Arc<Semaphore>) {
    let all = ctx.config.max_concurrent_tasks as u32;
    // A task just claimed may not be in `ctx.running` yet, but it holds its slot.
    if slots.available_permits() == all as usize {
        return;
    }
    let running = ctx.running.len();
    let grace = ctx.tunables.drain_timeout;
    info!(
        running,
        ?grace,
        "draining: no new tasks are claimed; running tasks may finish"
    );
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_ok()
    {
        info!("drained: every running task finished");
        return;
    }
    info!(
        running = ctx.running.len(),
        "handing back the tasks still running"
    );
    ctx.handoff.cancel();
    if tokio::time::timeout(HAND_BACK_WAIT, slots.acquire_many(all))
        .await
        .is_err()
    {
        warn!("some tasks did not let go in time; their leases expire on their own");
    }
}

/// A task found mid-run with no live worker, whose agent container still runs.
pub struct Resumable {
    task: task::Model,
    container: TaskContainer,
}

/// Take the lease of a task to resume; `None` when another worker got it first.
async fn take_over(ctx: &Ctx, r: Resumable) -> Option<(task::Model, Start)> {
    let state: TaskState = r.task.state.parse().ok()?;
    match tasks::take_over(&ctx.db, r.task.id, state, &ctx.instance_id, lease_ms(ctx)).await {
        Ok(true) => {
            let task = tasks::get(&ctx.db, r.task.id).await.ok().flatten()?;
            warn!(task_id = task.id, state = %task.state, "resuming a task whose worker is gone");
            Some((task, Start::Resume(r.container)))
        }
        Ok(false) => None,
        Err(e) => {
            warn!(task_id = r.task.id, error = %e, "taking over a task failed");
            None
        }
    }
}

/// How a task's run ended.
enum End {
    /// Changes pushed and a draft PR open: CI takes over.
    AwaitingCi {
        pr_url: String,
        summary: String,
    },
    /// The agent decided nothing needed to change.
    NoChanges {
        explanation: String,
    },
    /// A CI fix or retry round in which Amp changed nothing: a person has to look.
    NeedsHuman(String),
    Failed(String),
    Stopped,
    TimedOut(String),
    /// This replica is shutting down: the task goes on elsewhere, in its container.
    HandedBack,
}

/// Everything one task run needs.
struct Job<'a> {
    ctx: &'a Ctx,
    task: task::Model,
    repo: RepoRef,
    github: Option<Arc<GitHub>>,
    state: TaskState,
    container: Arc<Mutex<Option<TaskContainer>>>,
    engine: Option<Engine>,
    spec: Option<ContainerSpec>,
    /// The commit this run pushed.
    pushed: Option<String>,
    /// The workspace was cloned onto a branch an earlier run pushed (without a pull request).
    continued: bool,
}

async fn execute(ctx: &Ctx, task: task::Model, start: Start) {
    let stop = ctx.running.insert(task.id);
    let repo = RepoRef::of_task(&task);
    let state = match start {
        // A claim leaves a queued task `preparing` and a task with a CI round `fixing`.
        Start::Fresh | Start::Continue(_) => task.state.parse().unwrap_or(TaskState::Preparing),
        Start::Resume(_) => task.state.parse().unwrap_or(TaskState::Running),
    };
    let mut job = Job {
        ctx,
        repo,
        github: ctx.github(),
        state,
        container: Arc::new(Mutex::new(None)),
        engine: None,
        spec: None,
        pushed: None,
        continued: false,
        task,
    };
    // Keep the claim alive, and stop when a stop is asked for through the database (a `/amp
    // stop` taken by another replica).
    let mut lease = {
        let ctx = ctx.clone();
        let id = job.task.id;
        let stop = stop.clone();
        tokio::spawn(async move {
            let renew_every = Duration::from_millis(lease_ms(&ctx) as u64 / 3);
            let check_every = STOP_CHECK.min(renew_every);
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(check_every).await;
                if !stop.is_cancelled()
                    && let Ok(true) = tasks::stop_requested(&ctx.db, id).await
                {
                    info!(task_id = id, "a stop was requested through the database");
                    let data = json!({"level": "info", "text": "Stop requested (received by another replica)"});
                    ctx.record_event(id, kind::LOG, data).await;
                    stop.cancel();
                }
                if renewed.elapsed() < renew_every {
                    continue;
                }
                renewed = tokio::time::Instant::now();
                match tasks::renew_lease(&ctx.db, id, &ctx.instance_id, lease_ms(&ctx)).await {
                    Ok(true) => {}
                    Ok(false) => warn!(task_id = id, "the task's lease was taken over"),
                    Err(e) => warn!(task_id = id, error = %e, "renewing the task's lease failed"),
                }
            }
        })
    };
    let timeout = ctx.config.task_timeout;
    job.log(&format!("Picked up by replica {}", ctx.instance_id))
        .await;
    let end = tokio::select! {
        // A run that has finished is not handed back or stopped after the fact.
        biased;
        end = drive(&mut job, start) => end,
        _ = stop.cancelled() => End::Stopped,
        _ = ctx.handoff.cancelled() => End::HandedBack,
        _ = tokio::time::sleep(timeout) => End::TimedOut(format!(
            "the task ran longer than TASK_TIMEOUT ({})",
            humantime::format_duration(timeout)
        )),
    };
    // The lease is kept until the final state is stored: no other replica takes the task over
    // while it is being wound up. A task handed back lets go of it, so renewing stops first.
    if matches!(end, End::HandedBack) {
        lease.abort();
        let _ = (&mut lease).await;
    }
    finish(&mut job, end).await;
    lease.abort();
    ctx.running.remove(job.task.id);
    // A stop that came while the run was winding up (nothing listened for it any more) ends the
    // task now, if the run left it waiting for CI.
    if let Ok(Some(task)) = tasks::get(&ctx.db, job.task.id).await
        && task.state == TaskState::AwaitingCi.as_str()
        && (stop.is_cancelled() || task.stop_requested_at.is_some())
        && let Err(e) =
            end_waiting_task(ctx, &task, TaskState::Cancelled, "Stopped with /amp stop.").await
    {
        warn!(task_id = task.id, error = %e, "ending a stopped task failed");
    }
}

impl Job<'_> {
    /// Store an event (redacted) and publish it.
    async fn event(&self, kind: &str, mut data: serde_json::Value) {
        redact_json(&self.ctx.redactor, &mut data);
        self.ctx.record_event(self.task.id, kind, data).await;
    }

    async fn log(&self, text: &str) {
        info!("{text}");
        self.event(kind::LOG, json!({"level": "info", "text": text}))
            .await;
    }

    async fn move_to(&mut self, to: TaskState, reason: Option<&str>) -> bool {
        match tasks::transition(&self.ctx.db, self.task.id, self.state, to, reason).await {
            Ok(event) => {
                self.ctx.bus.publish(Published {
                    task_id: self.task.id,
                    seq: event.seq,
                    kind: kind::STATE.into(),
                    data: serde_json::from_str(&event.data).unwrap_or_default(),
                });
                self.state = to;
                true
            }
            Err(e) => {
                warn!(error = %e, from = self.state.as_str(), to = to.as_str(), "state change refused");
                false
            }
        }
    }

    /// `false` when the task has no status comment yet.
    async fn update_status_comment(&self, pr_url: Option<&str>, note: Option<&str>) -> bool {
        edit_status_comment_with(self.ctx, self.task.id, self.state, pr_url, note).await
    }

    fn current_container(&self) -> Option<TaskContainer> {
        self.container
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Run a shell script in the task's container; its output is logged, and its exit status
    /// and stdout returned. `env` reaches this one process only.
    async fn sh(&self, script: &str, env: Vec<String>) -> Result<(i64, String), String> {
        let (Some(engine), Some(container)) = (&self.engine, self.current_container()) else {
            return Err("the task's container is gone".into());
        };
        self.sh_in(engine, &container, script, env, WORKSPACE).await
    }

    async fn sh_in(
        &self,
        engine: &Engine,
        container: &TaskContainer,
        script: &str,
        env: Vec<String>,
        workdir: &str,
    ) -> Result<(i64, String), String> {
        let (tx, mut rx) = mpsc::channel(256);
        let exec = Exec {
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            env,
            user: Some(AGENT_USER.into()),
            workdir: Some(workdir.into()),
        };
        let run = engine.exec(container, exec, tx);
        let collect = async {
            let mut stdout = String::new();
            let mut stderr = String::new();
            while let Some(o) = rx.recv().await {
                match o {
                    Output::Stdout(s) => stdout.push_str(&s),
                    Output::Stderr(s) => stderr.push_str(&s),
                }
            }
            (stdout, stderr)
        };
        let (code, (stdout, stderr)) = tokio::join!(run, collect);
        let code = code.map_err(|e| e.to_string())?.unwrap_or(-1);
        let stderr = self.ctx.redactor.redact(stderr.trim());
        if !stderr.is_empty() {
            self.event(kind::LOG, json!({"level": "info", "text": stderr}))
                .await;
        }
        if code != 0 {
            return Err(if stderr.is_empty() {
                format!("exit status {code}")
            } else {
                stderr
            });
        }
        Ok((code, stdout))
    }

    /// Git with the installation token in the task's container. Only for steps before the agent
    /// has run (the clone): the token is in this one process's environment and handed to git by
    /// an inline credential helper, so nothing is written to disk. `args` refers to values from
    /// the webhook through `env` (`"$NAME"`), never by pasting them into the script.
    async fn git_with_token(&self, args: &str, env: Vec<String>) -> Result<String, String> {
        let (script, env) = self
            .token_script(&format!("git {CREDENTIAL_HELPER} {args}"), env)
            .await?;
        self.sh(&script, env).await.map(|(_, out)| out)
    }

    async fn token_script(
        &self,
        script: &str,
        mut env: Vec<String>,
    ) -> Result<(String, Vec<String>), String> {
        let Some(github) = &self.github else {
            return Err("the GitHub App is not configured".into());
        };
        let token = github
            .repo_token(&self.repo)
            .await
            .map_err(|e| e.to_string())?;
        env.push(format!("GIT_TOKEN={}", token.expose_secret()));
        env.push("GIT_TERMINAL_PROMPT=0".into());
        Ok((script.to_string(), env))
    }

    /// Push commit `sha` of the workspace to `branch`, from a helper container. Once the agent
    /// has run, anything it left behind in its container (a background process reading other
    /// processes' environments, a git hook, an edited `.git/config` pointing the remote
    /// elsewhere) must not meet the token. The helper shares only the workspace volume, mounted
    /// read-only; it fetches the commit into a repository of its own, whose configuration the
    /// agent never touched, and pushes from there to the task's clone URL.
    async fn push(&self, sha: &str, branch: &str) -> Result<(), String> {
        let (Some(engine), Some(spec), Some(container)) =
            (&self.engine, &self.spec, self.current_container())
        else {
            return Err("the task's container is gone".into());
        };
        let helper = engine
            .start_helper_container(spec, &container)
            .await
            .map_err(|e| e.to_string())?;
        let script = format!(
            "set -e; export HOME=/tmp GIT_CONFIG_NOSYSTEM=1; \
             git init -q --bare /tmp/push.git; cd /tmp/push.git; \
             (unset GIT_TOKEN; git fetch -q --no-tags {WORKSPACE} \"+HEAD:refs/heads/work\"); \
             test \"$(git rev-parse refs/heads/work)\" = \"$SHA\" || \
               {{ echo \"the workspace changed after the commit was made\" >&2; exit 1; }}; \
             git {CREDENTIAL_HELPER} push -q \"$CLONE_URL\" \"$SHA:refs/heads/$BRANCH\""
        );
        let env = vec![
            format!("SHA={sha}"),
            format!("BRANCH={branch}"),
            format!("CLONE_URL={}", self.task.clone_url),
        ];
        let result = match self.token_script(&script, env).await {
            Ok((script, env)) => self.sh_in(engine, &helper, &script, env, "/tmp").await,
            Err(e) => Err(e),
        };
        engine.remove(&helper).await;
        result.map(|_| ())
    }
}

/// Hands `$GIT_TOKEN` to git for this one command, replacing any configured helper.
const CREDENTIAL_HELPER: &str = "-c credential.helper= \
     -c 'credential.helper=!f() { echo username=x-access-token; echo \"password=$GIT_TOKEN\"; }; f'";

fn redact_json(redactor: &crate::redact::Redactor, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = redactor.redact(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact_json(redactor, v)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact_json(redactor, v)),
        _ => {}
    }
}

/// A branch name from the issue: `amp/<issue>-<slug of the title>`.
pub fn branch_name(issue_number: i64, title: &str, public_id: &str) -> String {
    let mut slug = String::new();
    for c in title.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    let tag: String = public_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(6)
        .collect::<String>()
        .to_lowercase();
    if slug.is_empty() {
        format!("amp/{issue_number}-{tag}")
    } else {
        format!("amp/{issue_number}-{slug}-{tag}")
    }
}

/// What the agent is told: the standing instructions, the issue, and the request.
pub fn agent_prompt(task: &task::Model, branch: &str) -> String {
    format!(
        "You are working in a clone of the GitHub repository {repo}, checked out in the current \
         directory on branch {branch}.\n\
         Make the change requested below. Keep it focused on the request. Do not commit, push or \
         open pull requests: that is done for you after you finish. End with a short summary of \
         what you changed and why.\n\n\
         {what} #{number}: {title}\n\n{body}\n\n\
         Request from @{login}:\n{prompt}\n",
        repo = task.repo_full_name,
        what = if task.is_pull_request {
            "Pull request"
        } else {
            "Issue"
        },
        number = task.issue_number,
        title = task.issue_title,
        body = task.issue_body,
        login = task.requester_login,
        prompt = task.prompt,
    )
}

/// How a run begins: a new task, or one whose worker died while its container lived on.
pub enum Start {
    Fresh,
    Resume(TaskContainer),
    /// A new round in the task's still running container.
    Continue(TaskContainer),
}

/// What the agent is told first when its run is resumed after a restart of the service.
const RESUME_NOTE: &str = "Your previous run on this task was interrupted when the service \
running you restarted. The workspace holds whatever you had done; check it and finish the task.";

fn container_spec(ctx: &Ctx, task: &task::Model) -> ContainerSpec {
    ContainerSpec {
        image: ctx.config.agent_image.clone(),
        task: task.public_id.clone(),
        instance_id: ctx.instance_id.clone(),
        store: ctx.store_label.clone(),
        network: ctx.config.agent_network.as_docker_mode().to_string(),
        memory_bytes: AGENT_MEMORY,
        nano_cpus: AGENT_NANO_CPUS,
        pids_limit: AGENT_PIDS,
        user: AGENT_USER.into(),
    }
}

async fn drive(job: &mut Job<'_>, start: Start) -> End {
    let ctx = job.ctx;
    let Some(amp_key) = ctx.config.amp_api_key.clone() else {
        return End::Failed(
            "AMP_API_KEY is not configured on the server, so the agent cannot run".into(),
        );
    };
    let target = match target(job).await {
        Ok(target) => target,
        Err(end) => return end,
    };
    let engine = match Engine::connect(ctx.config.docker_host.as_deref()).await {
        Ok(engine) => engine,
        Err(e) => return End::Failed(e.to_string()),
    };
    job.engine = Some(engine.clone());
    let spec = container_spec(ctx, &job.task);
    let round = match rounds::pending(&ctx.db, job.task.id).await {
        Ok(round) => round,
        Err(e) => return End::Failed(format!("reading the task's rounds failed: {e}")),
    };
    // A CI round or follow-up continues in the task's container while it still runs.
    let alive = if job.state == TaskState::Fixing && matches!(start, Start::Fresh) {
        engine
            .running_agent_container(&ctx.store_label, &job.task.public_id)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let start = match (start, alive) {
        (Start::Fresh, Some(container)) => Start::Continue(container),
        (start, _) => start,
    };
    let resumed = match start {
        Start::Continue(container) => {
            *job.container.lock().unwrap_or_else(|e| e.into_inner()) = Some(container);
            job.spec = Some(spec);
            job.log("Continuing in the task's container").await;
            false
        }
        Start::Fresh => {
            job.log(&format!("Starting the agent container ({})", spec.image))
                .await;
            let container = match engine.start_task_container(&spec).await {
                Ok(c) => c,
                Err(e) => return End::Failed(e.to_string()),
            };
            *job.container.lock().unwrap_or_else(|e| e.into_inner()) = Some(container);
            job.spec = Some(spec);
            if let Err(end) = prepare_workspace(job, &target).await {
                return end;
            }
            false
        }
        Start::Resume(container) => {
            *job.container.lock().unwrap_or_else(|e| e.into_inner()) = Some(container);
            job.spec = Some(spec);
            job.log("This task's previous worker is gone (a restart, a crash, or a replica that handed it over); resuming it in its container")
                .await;
            // Whatever the interrupted run left running in the container goes first.
            let _ = job.sh("kill -KILL -1 2>/dev/null; true", vec![]).await;
            true
        }
    };
    let prompt = match &round {
        Some(round) => round.prompt.clone(),
        None => agent_prompt(&job.task, &target.branch),
    };
    if round.is_none() && !resumed {
        let waited = (crate::db::now_ms() - job.task.created_at).max(0) as u64;
        crate::metrics::METRICS
            .agent_start
            .observe(Duration::from_millis(waited));
    }
    let prompt = if resumed {
        format!("{RESUME_NOTE}\n\n{prompt}")
    } else {
        prompt
    };
    let end = work(job, &amp_key, target, prompt, round.as_ref()).await;
    // Record how the round went (a failed run leaves it pending, for `/amp retry`).
    if let Some(round) = &round {
        let outcome = match &end {
            End::AwaitingCi { .. } if job.pushed.is_some() => Some("pushed"),
            End::AwaitingCi { .. } | End::NoChanges { .. } | End::NeedsHuman(_) => {
                Some("no_changes")
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            let _ = rounds::finish(&ctx.db, round.id, outcome, job.pushed.as_deref()).await;
        }
    }
    end
}

/// Clone into the workspace: the default branch and a new branch, or a pull request's head.
async fn prepare_workspace(job: &mut Job<'_>, target: &Target) -> Result<(), End> {
    job.log(&format!("Cloning {}", job.task.repo_full_name))
        .await;
    job.git_with_token(
        "clone --quiet --branch \"$BASE\" -- \"$CLONE_URL\" .",
        vec![
            format!("BASE={}", target.clone_branch),
            format!("CLONE_URL={}", job.task.clone_url),
        ],
    )
    .await
    .map_err(|e| End::Failed(format!("cloning the repository failed: {e}")))?;
    if target.pull.is_none() {
        // A task run before may have pushed its branch without getting as far as a pull request
        // (stopped, or failed opening it): go on from that branch, so the next push is a
        // fast-forward. A branch that is not there starts from the default branch.
        let existing = match &job.task.branch {
            None => false,
            Some(_) => {
                // `ls-remote --exit-code` exits 2 when the branch is not there; anything else
                // that fails (the token, the network) must not be mistaken for that.
                let (script, env) = job
                    .token_script(
                        &format!(
                            "if git {CREDENTIAL_HELPER} ls-remote --exit-code origin \
                               \"refs/heads/$BRANCH\" >/dev/null; then \
                               git {CREDENTIAL_HELPER} fetch --quiet origin \"refs/heads/$BRANCH\" \
                               && echo present; \
                             else rc=$?; if [ $rc = 2 ]; then echo absent; else exit $rc; fi; fi"
                        ),
                        vec![format!("BRANCH={}", target.branch)],
                    )
                    .await
                    .map_err(|e| {
                        End::Failed(format!("looking for the task's branch failed: {e}"))
                    })?;
                let (_, out) = job.sh(&script, env).await.map_err(|e| {
                    End::Failed(format!("looking for the task's branch failed: {e}"))
                })?;
                out.trim() == "present"
            }
        };
        let start = if existing { "FETCH_HEAD" } else { "HEAD" };
        job.sh(
            "git checkout -q -b \"$BRANCH\" \"$START\"",
            vec![
                format!("BRANCH={}", target.branch),
                format!("START={start}"),
            ],
        )
        .await
        .map_err(|e| End::Failed(format!("creating the branch failed: {e}")))?;
        if existing {
            job.log(&format!(
                "Continuing on the existing branch {}",
                target.branch
            ))
            .await;
        }
        job.continued = existing;
    }
    let _ = tasks::record_progress(
        &job.ctx.db,
        job.task.id,
        Progress {
            branch: Some(target.branch.clone()),
            pr_number: target.pull.as_ref().map(|(number, _)| *number),
            ..Default::default()
        },
    )
    .await;
    Ok(())
}

/// The agent's turn, then commit, push and the pull request.
async fn work(
    job: &mut Job<'_>,
    amp_key: &secrecy::SecretString,
    target: Target,
    prompt: String,
    round: Option<&task_round::Model>,
) -> End {
    let ctx = job.ctx;
    let branch = target.branch.clone();
    // A CI round stays `fixing` until it pushes; everything else runs as `running`.
    if matches!(job.state, TaskState::Preparing | TaskState::Pushing)
        && !job.move_to(TaskState::Running, None).await
    {
        return End::Failed("the task changed state unexpectedly".into());
    }
    job.update_status_comment(target.pull.as_ref().map(|(_, url)| url.as_str()), None)
        .await;
    let outcome = match agent_turn(job, amp_key, prompt).await {
        Ok(outcome) => outcome,
        Err(end) => return end,
    };
    let summary = match outcome {
        TurnOutcome::Succeeded { message, .. } => message,
        TurnOutcome::Failed { reason, .. } => return End::Failed(format!("Amp failed: {reason}")),
    };

    // Commit what changed (the agent may also have committed, though told not to).
    let dirty = match job.sh("git status --porcelain", vec![]).await {
        Ok((_, out)) => !out.trim().is_empty(),
        Err(e) => return End::Failed(format!("reading the workspace failed: {e}")),
    };
    if dirty {
        if !job.move_to(TaskState::Pushing, None).await {
            return End::Failed("the task changed state unexpectedly".into());
        }
        let message = format!(
            "{}\n\n{}\n\nCo-authored-by: {} <{}>",
            commit_title(&job.task),
            summary.trim(),
            job.task.requester_login,
            noreply_email(&job.task.requester_login, job.task.requester_id)
        );
        let commit = job
            .sh(
                "git add -A && printf '%s' \"$MESSAGE\" | git -c core.hooksPath=/dev/null \
                 -c user.name=\"$BOT_NAME\" -c user.email=\"$BOT_EMAIL\" commit -q --no-verify -F -",
                vec![
                    format!("MESSAGE={message}"),
                    format!("BOT_NAME={BOT_NAME}"),
                    format!(
                        "BOT_EMAIL={}+{BOT_NAME}@users.noreply.github.com",
                        ctx.app_id().unwrap_or(0)
                    ),
                ],
            )
            .await;
        if let Err(e) = commit {
            return End::Failed(format!("committing the changes failed: {e}"));
        }
    }
    let head = job
        .sh(
            // New commits: since the branch as cloned, or (resumed in a workspace cloned
            // before the branch existed) since the default branch.
            "git rev-parse HEAD && b=\"origin/$BASE\" && \
             { git rev-parse -q --verify \"$b\" >/dev/null || b=\"origin/$DEFAULT\"; } && \
             git rev-list --count \"$b..HEAD\"",
            vec![
                format!("BASE={}", target.clone_branch),
                format!("DEFAULT={}", job.task.default_branch),
            ],
        )
        .await;
    let (head_sha, ahead) = match head {
        Ok((_, out)) => {
            let mut lines = out.lines().map(str::trim);
            let sha = lines.next().unwrap_or_default().to_string();
            (sha, lines.next().unwrap_or("0") != "0")
        }
        Err(e) => return End::Failed(format!("reading the workspace failed: {e}")),
    };
    // In a container reused for a round, HEAD may be the commit pushed last time. On a branch an
    // earlier run pushed without getting to its pull request, that commit still needs one.
    let reopened = job.continued && target.pull.is_none();
    let ahead = ahead && (reopened || job.task.head_sha.as_deref() != Some(head_sha.as_str()));
    if !ahead {
        return match (round.map(|r| r.kind.as_str()), target.pull) {
            (Some(rounds::round_kind::CI | rounds::round_kind::RETRY), _) => End::NeedsHuman(
                format!("Amp made no change for the CI failure. {}", summary.trim()),
            ),
            // A follow-up that changed nothing: the pull request still waits for its CI.
            (Some(_), Some((_, pr_url))) if job.task.head_sha.is_some() => {
                End::AwaitingCi { pr_url, summary }
            }
            _ => End::NoChanges {
                explanation: summary,
            },
        };
    }
    if job.state != TaskState::Pushing && !job.move_to(TaskState::Pushing, None).await {
        return End::Failed("the task changed state unexpectedly".into());
    }
    if let Err(e) = job.push(&head_sha, &branch).await {
        return End::Failed(format!("pushing the branch failed: {e}"));
    }
    job.log(&format!("Pushed {branch} at {head_sha}")).await;
    job.pushed = Some(head_sha.clone());
    if let Err(e) = tasks::record_progress(
        &ctx.db,
        job.task.id,
        Progress {
            head_sha: Some(head_sha.clone()),
            ..Default::default()
        },
    )
    .await
    {
        return End::Failed(format!("recording the pushed commit failed: {e}"));
    }
    if let Some((_, pr_url)) = target.pull {
        // The pull request exists (the task is on one, or opened it before a restart): the new
        // commit is on its branch, nothing else to open.
        return End::AwaitingCi { pr_url, summary };
    }
    let Some(github) = job.github.clone() else {
        return End::Failed("the GitHub App is not configured".into());
    };
    let body = format!(
        "Closes #{}\n\n{}\n\n---\nRequested by @{} · [task page]({}/tasks/{})",
        job.task.issue_number,
        summary.trim(),
        job.task.requester_login,
        ctx.config.public_url,
        job.task.public_id
    );
    let pr = match github
        .open_draft_pr(
            &job.repo,
            &branch,
            &job.task.default_branch,
            &job.task.issue_title,
            &body,
        )
        .await
    {
        Ok(pr) => pr,
        // Opened before, without the answer reaching us (a lost response retried, or a run
        // stopped between opening it and recording it): that one is the task's.
        Err(e) if e.status() == Some(422) && e.to_string().contains("already exists") => {
            match github.find_open_pull(&job.repo, &branch).await {
                Ok(Some(pr)) => {
                    job.log(&format!(
                        "A pull request from {branch} was open already: #{}",
                        pr.number
                    ))
                    .await;
                    pr
                }
                Ok(None) => return End::Failed(format!("opening the pull request failed: {e}")),
                Err(find) => {
                    return End::Failed(format!(
                        "opening the pull request failed: {e}; looking for it failed: {find}"
                    ));
                }
            }
        }
        Err(e) => return End::Failed(format!("opening the pull request failed: {e}")),
    };
    let pr_url = pr
        .html_url
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_default();
    if let Err(e) = tasks::record_progress(
        &ctx.db,
        job.task.id,
        Progress {
            pr_number: Some(pr.number as i64),
            ..Default::default()
        },
    )
    .await
    {
        return End::Failed(format!("recording the pull request failed: {e}"));
    }
    job.log(&format!("Opened draft pull request {pr_url}"))
        .await;
    End::AwaitingCi { pr_url, summary }
}

/// Where a task's work goes.
struct Target {
    /// The branch the agent works on and the service pushes.
    branch: String,
    /// The branch to clone.
    clone_branch: String,
    /// On a pull request: its number and address (no new pull request is opened).
    pull: Option<(i64, String)>,
}

/// An issue gets a new branch from the default branch; a pull request is worked on in place,
/// on its head branch, which must be in this repository (the app cannot push to forks).
async fn target(job: &Job<'_>) -> Result<Target, End> {
    let task = &job.task;
    // A pull request: the one commented on, or the one this task opened before a restart.
    let pull_number = if task.is_pull_request {
        Some(task.issue_number)
    } else {
        task.pr_number
    };
    let Some(number) = pull_number else {
        return Ok(Target {
            branch: task.branch.clone().unwrap_or_else(|| {
                branch_name(task.issue_number, &task.issue_title, &task.public_id)
            }),
            clone_branch: task.default_branch.clone(),
            pull: None,
        });
    };
    let Some(github) = &job.github else {
        return Err(End::Failed("the GitHub App is not configured".into()));
    };
    let pull = github
        .get_pull(&job.repo, number)
        .await
        .map_err(|e| End::Failed(format!("reading pull request #{number} failed: {e}")))?;
    if pull.state == Some(octocrab::models::IssueState::Closed) {
        return Err(End::Failed(format!(
            "Pull request #{number} is closed, so there is no branch to work on. Reopen it, or \
             ask on an issue."
        )));
    }
    let head_repo = pull.head.repo.as_ref().and_then(|r| r.full_name.clone());
    if head_repo.as_deref() != Some(task.repo_full_name.as_str()) {
        let place = match head_repo {
            Some(fork) => format!("in the fork {fork}"),
            None => "in a repository that no longer exists".to_string(),
        };
        return Err(End::Failed(format!(
            "The branch of pull request #{number} is {place}. This app only pushes to branches \
             of {}, so it cannot work on pull requests from forks. Ask on an issue instead: the \
             change will come as a new pull request.",
            task.repo_full_name
        )));
    }
    Ok(Target {
        branch: pull.head.ref_field.clone(),
        clone_branch: pull.head.ref_field.clone(),
        pull: Some((
            number,
            pull.html_url.map(|u| u.to_string()).unwrap_or_default(),
        )),
    })
}

/// GitHub's private address for a user: `<id>+<login>@…`, or `<login>@…` when the id is not
/// known (a task created through the API for a named requester).
fn noreply_email(login: &str, id: i64) -> String {
    if id > 0 {
        format!("{id}+{login}@users.noreply.github.com")
    } else {
        format!("{login}@users.noreply.github.com")
    }
}

fn commit_title(task: &task::Model) -> String {
    let title: String = task.issue_title.chars().take(60).collect();
    format!("{title} (#{})", task.issue_number)
}

/// Run one Amp turn, turning its output into events, under the idle timeout.
async fn agent_turn(
    job: &Job<'_>,
    amp_key: &secrecy::SecretString,
    prompt: String,
) -> Result<TurnOutcome, End> {
    let ctx = job.ctx;
    let (Some(engine), Some(container)) = (&job.engine, job.current_container()) else {
        return Err(End::Failed("the task's container is gone".into()));
    };
    let mut cmd = vec!["amp".to_string()];
    if let Some(thread) = &job.task.thread_id {
        cmd.extend(["threads".into(), "continue".into(), thread.clone()]);
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
    job.log("Starting Amp").await;
    let (tx, mut rx) = mpsc::channel(1024);
    let exec = Exec {
        cmd,
        env,
        user: Some(AGENT_USER.into()),
        workdir: Some(WORKSPACE.into()),
    };
    let engine2 = engine.clone();
    let container2 = container.clone();
    let run = tokio::spawn(async move { engine2.exec(&container2, exec, tx).await });
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
                        tracker.observe(&event);
                        if let AgentEvent::Init { thread_id } = &event {
                            let _ = tasks::record_progress(
                                &ctx.db,
                                job.task.id,
                                Progress {
                                    thread_id: Some(thread_id.clone()),
                                    ..Default::default()
                                },
                            )
                            .await;
                        }
                        job.event("agent", agent_event_json(&event)).await;
                    }
                }
            }
            Ok(Some(Output::Stderr(chunk))) => {
                stderr.push_str(&chunk);
                job.event("agent", json!({"type": "stderr", "text": chunk.trim_end()}))
                    .await;
            }
            Ok(None) => break,
            Err(_) => {
                run.abort();
                return Err(End::TimedOut(format!(
                    "Amp printed nothing for AGENT_IDLE_TIMEOUT ({})",
                    humantime::format_duration(idle)
                )));
            }
        }
    }
    for event in parse_line(&pending) {
        tracker.observe(&event);
        job.event("agent", agent_event_json(&event)).await;
    }
    let code = match run.await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => return Err(End::Failed(e.to_string())),
        Err(_) => None,
    };
    let stderr = ctx.redactor.redact(&stderr);
    Ok(tracker.finish(code, &stderr))
}

fn agent_event_json(event: &AgentEvent) -> serde_json::Value {
    match event {
        AgentEvent::Init { thread_id } => json!({"type": "init", "thread_id": thread_id}),
        AgentEvent::Text(text) => json!({"type": "text", "text": text}),
        AgentEvent::ToolUse { name, input } => {
            json!({"type": "tool_use", "name": name, "input": input})
        }
        AgentEvent::ToolResult { is_error, output } => {
            json!({"type": "tool_result", "is_error": is_error, "output": output})
        }
        AgentEvent::Result {
            is_error,
            message,
            duration_ms,
            num_turns,
            input_tokens,
            output_tokens,
        } => json!({
            "type": "result", "is_error": is_error, "text": message,
            "duration_ms": duration_ms, "num_turns": num_turns,
            "input_tokens": input_tokens, "output_tokens": output_tokens,
        }),
        AgentEvent::Raw(line) => json!({"type": "raw", "text": line}),
    }
}

/// Record how the run ended, clean up when the task is over, and update the status comment.
async fn finish(job: &mut Job<'_>, end: End) {
    if matches!(end, End::HandedBack) {
        return hand_back(job).await;
    }
    let (to, note, pr_url, keep_container) = match end {
        End::HandedBack => unreachable!("handled above"),
        End::AwaitingCi { pr_url, summary } => (TaskState::AwaitingCi, summary, Some(pr_url), true),
        End::NoChanges { explanation } => (
            TaskState::Succeeded,
            format!("No changes were needed. {explanation}"),
            None,
            false,
        ),
        End::NeedsHuman(reason) => (TaskState::NeedsHuman, reason, None, false),
        End::Failed(reason) => (TaskState::Failed, reason, None, false),
        End::Stopped => (
            TaskState::Cancelled,
            "Stopped with /amp stop.".to_string(),
            None,
            false,
        ),
        End::TimedOut(reason) => (TaskState::TimedOut, reason, None, false),
    };
    let note = job.ctx.redactor.redact(&note);
    if !keep_container {
        // However the task ended, its container and volume go.
        let container = job
            .container
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(container) = container {
            let engine = match &job.engine {
                Some(engine) => Some(engine.clone()),
                None => Engine::connect(job.ctx.config.docker_host.as_deref())
                    .await
                    .ok(),
            };
            if let Some(engine) = engine {
                engine.remove(&container).await;
            }
        }
        // A helper container a stopped push left behind goes too.
        remove_task_containers(job.ctx, &job.task.public_id).await;
    }
    job.event(
        kind::LOG,
        json!({"level": if to == TaskState::Failed { "error" } else { "info" }, "text": note}),
    )
    .await;
    if to == TaskState::Succeeded && job.state == TaskState::Preparing {
        job.move_to(TaskState::Running, None).await;
    }
    // The comment first, so that whoever sees the final state also sees the final comment.
    let shown = job.state;
    job.state = to;
    job.update_status_comment(pr_url.as_deref(), Some(&note))
        .await;
    job.state = shown;
    let moved = job.move_to(to, Some(&note)).await;
    // The comment handler may have posted (or brought up to date) the comment meanwhile, from
    // a state read before this change: say how it ended once more, now that it is recorded.
    job.update_status_comment(pr_url.as_deref(), Some(&note))
        .await;
    if !moved {
        error!(
            to = to.as_str(),
            "the task's final state could not be recorded"
        );
    } else if to == TaskState::AwaitingCi {
        // CI may have finished already (its webhook, come before this state, was set aside).
        let ctx = job.ctx.clone();
        let task_id = job.task.id;
        tokio::spawn(async move { crate::ci::recheck(&ctx, task_id).await });
    }
    info!(state = to.as_str(), "task run ended");
}

/// End a task that has no command running (waiting for CI): record `to`, remove its container
/// and volume, and update the status comment. Used by `/amp stop`, by restart recovery and by
/// the CI loop. `false` when the task had moved on meanwhile (nothing is done then).
pub async fn end_waiting_task(
    ctx: &Ctx,
    task: &task::Model,
    to: TaskState,
    note: &str,
) -> anyhow::Result<bool> {
    end_waiting_task_at(ctx, task, to, note, None).await
}

/// [`end_waiting_task`], only while the task's head commit is `head` (when given).
pub async fn end_waiting_task_at(
    ctx: &Ctx,
    task: &task::Model,
    to: TaskState,
    note: &str,
    head: Option<&str>,
) -> anyhow::Result<bool> {
    let from: TaskState = task.state.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    match tasks::transition_at(&ctx.db, task.id, from, to, Some(note), head).await {
        Ok(event) => ctx.bus.publish(Published {
            task_id: task.id,
            seq: event.seq,
            kind: kind::STATE.into(),
            data: serde_json::from_str(&event.data).unwrap_or_default(),
        }),
        Err(tasks::TaskError::Conflict { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    after_waiting_task_ended(ctx, task, to, note).await;
    Ok(true)
}

/// The rest of ending a waiting task, once its state is recorded: its container and volume go,
/// and the status comment says how it ended.
pub async fn after_waiting_task_ended(ctx: &Ctx, task: &task::Model, to: TaskState, note: &str) {
    remove_task_containers(ctx, &task.public_id).await;
    edit_status_comment(ctx, task.id, to, Some(note)).await;
}

/// Edit the task's status comment to show `state`, `note`, its pull request and its rounds.
pub async fn edit_status_comment(ctx: &Ctx, task_id: i64, state: TaskState, note: Option<&str>) {
    edit_status_comment_with(ctx, task_id, state, None, note).await;
}

async fn edit_status_comment_with(
    ctx: &Ctx,
    task_id: i64,
    state: TaskState,
    pr_url: Option<&str>,
    note: Option<&str>,
) -> bool {
    let Some(github) = ctx.github() else {
        return true;
    };
    // Read afresh: the comment handler posts the comment, possibly after a worker claimed the task.
    let task = match tasks::get(&ctx.db, task_id).await {
        Ok(Some(task)) => task,
        _ => return true,
    };
    let Some(comment_id) = task.status_comment_id else {
        return false;
    };
    let rounds = crate::store::rounds::list(&ctx.db, task_id)
        .await
        .unwrap_or_default();
    let rounds = texts::rounds_section(&rounds, ctx.config.max_ci_rounds);
    // GitHub links `#N` to the pull request.
    let pr_ref = task.pr_number.map(|n| format!("#{n}"));
    let view = TaskView {
        state,
        pr_url: pr_url.or(pr_ref.as_deref()),
        note,
        rounds: rounds.as_deref(),
        ..TaskView::of(&task, &ctx.config.public_url)
    };
    let repo = RepoRef::of_task(&task);
    if let Err(e) = github
        .update_comment(&repo, comment_id, &texts::status_comment(&view))
        .await
    {
        warn!(error = %e, "editing the status comment failed");
    }
    true
}

/// Let go of a task at shutdown without ending it: it stays in its state, its container keeps
/// the workspace, and its lease ends now, so the next replica to look resumes it there.
async fn hand_back(job: &mut Job<'_>) {
    job.log("This replica is shutting down; the task is handed to another replica and resumes in its container")
        .await;
    match tasks::release_lease(&job.ctx.db, job.task.id, &job.ctx.instance_id).await {
        Ok(true) => info!(task_id = job.task.id, state = %job.state, "task handed back"),
        Ok(false) => warn!(
            task_id = job.task.id,
            "handing back: the lease was no longer this replica's"
        ),
        Err(e) => {
            warn!(task_id = job.task.id, error = %e, "handing back failed; the lease expires on its own")
        }
    }
}

/// Remove every container and volume labelled with the task.
async fn remove_task_containers(ctx: &Ctx, public_id: &str) {
    match Engine::connect(ctx.config.docker_host.as_deref()).await {
        Ok(engine) => match engine.owned(Some(&ctx.store_label)).await {
            Ok(owned) => {
                for (task, container) in owned {
                    if task == public_id {
                        engine.remove(&container).await;
                    }
                }
            }
            Err(e) => warn!(error = %e, "listing the task's containers failed"),
        },
        Err(e) => warn!(error = %e, "the Docker engine cannot be reached to clean up"),
    }
}

/// After a crash or on another replica's death, for tasks whose worker is gone (lease expired
/// while preparing, running, pushing or fixing): a task that had not reached its agent goes
/// back to the queue; one whose agent container still runs is returned to be resumed; any other
/// ends as failed with a clear status comment. Containers of tasks that are over (or unknown to
/// the store) are removed.
pub async fn reconcile(ctx: &Ctx) -> Vec<Resumable> {
    let engine = Engine::connect(ctx.config.docker_host.as_deref())
        .await
        .ok();
    let mut resumable = Vec::new();
    match tasks::abandoned(&ctx.db).await {
        Ok(abandoned) => {
            for task in abandoned {
                if ctx.running.contains(task.id) {
                    continue;
                }
                if let Some(found) = recover(ctx, engine.as_ref(), task).await {
                    resumable.push(found);
                }
            }
        }
        Err(e) => warn!(error = %e, "looking for abandoned tasks failed"),
    }
    let Some(engine) = engine else {
        return resumable;
    };
    let owned = match engine.owned(Some(&ctx.store_label)).await {
        Ok(owned) => owned,
        Err(e) => {
            warn!(error = %e, "listing the service's containers failed");
            return resumable;
        }
    };
    for (public_id, container) in owned {
        let over = match tasks::get_by_public_id(&ctx.db, &public_id).await {
            Ok(Some(task)) => task
                .state
                .parse::<TaskState>()
                .map(TaskState::is_terminal)
                .unwrap_or(true),
            Ok(None) => true,
            Err(_) => false,
        };
        if over {
            info!(task = %public_id, container = %container.id, "removing an orphaned container");
            engine.remove(&container).await;
        }
    }
    resumable
}

async fn recover(ctx: &Ctx, engine: Option<&Engine>, task: task::Model) -> Option<Resumable> {
    let state: TaskState = task.state.parse().ok()?;
    // Only the replica that takes the expired lease acts on the task: another one may have
    // taken it over (and started a container) since the list was read.
    let claim = || async {
        match tasks::take_over(&ctx.db, task.id, state, &ctx.instance_id, lease_ms(ctx)).await {
            Ok(won) => won,
            Err(e) => {
                warn!(task_id = task.id, error = %e, "taking over an abandoned task failed");
                false
            }
        }
    };
    if state == TaskState::Preparing {
        if !claim().await {
            return None;
        }
        // Nothing was done that cannot be done again.
        warn!(
            task_id = task.id,
            "the task's worker is gone before its agent started; queueing it again"
        );
        remove_task_containers(ctx, &task.public_id).await;
        match tasks::transition(
            &ctx.db,
            task.id,
            state,
            TaskState::Queued,
            Some("the service stopped before the agent started; queued again"),
        )
        .await
        {
            Ok(event) => {
                ctx.bus.publish(Published {
                    task_id: task.id,
                    seq: event.seq,
                    kind: kind::STATE.into(),
                    data: serde_json::from_str(&event.data).unwrap_or_default(),
                });
                ctx.task_wakeup.notify_one();
            }
            Err(e) => warn!(task_id = task.id, error = %e, "queueing an abandoned task failed"),
        }
        return None;
    }
    if matches!(
        state,
        TaskState::Running | TaskState::Pushing | TaskState::Fixing
    ) {
        // Whether the container survived decides between resuming and failing, so an engine
        // that cannot be asked now means: look again later.
        let Some(engine) = engine else {
            warn!(
                task_id = task.id,
                "the Docker engine cannot be reached; an abandoned task waits"
            );
            return None;
        };
        match engine
            .running_agent_container(&ctx.store_label, &task.public_id)
            .await
        {
            // Resumed by whichever replica takes the lease first (see `take_over`).
            Ok(Some(container)) => return Some(Resumable { task, container }),
            Ok(None) => {}
            Err(e) => {
                warn!(task_id = task.id, error = %e, "looking for an abandoned task's container failed; it waits");
                return None;
            }
        }
    }
    if !claim().await {
        return None;
    }
    warn!(task_id = task.id, state = %task.state, "the task's worker and container are gone; ending it");
    let note = "The service stopped while this task was running and its container is gone, so it \
                could not finish. Comment `/amp retry` to run it again.";
    if let Err(e) = end_waiting_task(ctx, &task, TaskState::Failed, note).await {
        warn!(task_id = task.id, error = %e, "ending an abandoned task failed");
    }
    None
}
