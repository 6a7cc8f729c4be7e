//! The task's workspace: its agent container with the clone on a volume, and the one place that
//! runs shell or git in a container.
//!
//! Git steps that need the installation token run in short-lived helper containers on the git
//! network, never in the agent's container: the clone and the fetch of an existing branch (before
//! the agent has run, with the workspace writable) and the push (from a read-only view of it).
//! The token is in that one git process's environment and handed to git by an inline credential
//! helper, so nothing is written to disk; anything the agent leaves behind in its container (a
//! background process reading other processes' environments, a git hook, an edited
//! `.git/config` pointing the remote elsewhere) never meets it. In the sandbox the agent's
//! container sits on its own network with the egress gateway (see [`crate::sandbox`]), and its
//! turns get a credential bound to its address in place of the Amp key.

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::docker::{
    ContainerSpec, DockerError, Engine, Exec, Output, TaskContainer, WORKSPACE, WorkspaceAccess,
};
use crate::domain::CommitSha;
use crate::lifecycle::Journal;
use crate::sandbox::Sandbox;

/// Sets `$b` to the remote branch the workspace's new commits go on top of: `origin/$BASE`, or
/// `origin/$DEFAULT` when the workspace was cloned before `$BASE` existed.
const PUSHED_RANGE: &str = "b=\"origin/$BASE\" && \
     { git rev-parse -q --verify \"$b\" >/dev/null || b=\"origin/$DEFAULT\"; }";

/// Sets `$b` to what the remote branch holds: `$PUSHED` (the commit the task pushed last) when
/// the workspace has it, otherwise as [`PUSHED_RANGE`].
const REMOTE_TIP: &str = "b=\"\"; \
     if [ -n \"$PUSHED\" ] && git rev-parse -q --verify \"$PUSHED^{commit}\" >/dev/null; then \
       b=\"$PUSHED\"; \
     else b=\"origin/$BASE\"; git rev-parse -q --verify \"$b\" >/dev/null || b=\"origin/$DEFAULT\"; fi";

/// Git without the repository's replacements, path quoting or text conversion, which the agent
/// may have set up to hide what a commit changes.
const PLAIN_GIT: &str = "git --no-replace-objects -c core.quotePath=false";

/// The user the agent and every command in its container run as.
pub const AGENT_USER: &str = "1000:1000";

/// Hands `$GIT_TOKEN` to git for this one command, replacing any configured helper.
const CREDENTIAL_HELPER: &str = "-c credential.helper= \
     -c 'credential.helper=!f() { echo username=x-access-token; echo \"password=$GIT_TOKEN\"; }; f'";

/// A command in the workspace that failed: its stderr (masked), or its exit status.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// The task's agent container and what it runs in it.
pub struct Workspace {
    engine: Engine,
    spec: ContainerSpec,
    container: TaskContainer,
    journal: Journal,
    /// The sandbox the agent runs in, and its address there (`None` with `AGENT_EGRESS=open`).
    sandbox: Option<(Arc<Sandbox>, Ipv4Addr)>,
}

/// A commit in the workspace and whether the branch's base lacks it.
pub struct Head {
    pub sha: CommitSha,
    /// The workspace has commits its base branch lacks.
    pub ahead: bool,
}

impl Workspace {
    /// Start a new container, its workspace filled with a clone of `seed` (in a helper container
    /// on the git network, while the container starts): in `sandbox` when there is one.
    pub async fn start(
        engine: Engine,
        spec: ContainerSpec,
        sandbox: Option<Arc<Sandbox>>,
        journal: Journal,
        seed: &Seed<'_>,
    ) -> Result<Workspace, StartError> {
        let clone = |volume: String| {
            let (engine, spec, journal) = (&engine, &spec, &journal);
            async move { seed.clone_into(engine, spec, journal, &volume).await }
        };
        let (container, sandbox, cloned) = match sandbox {
            Some(sandbox) => {
                let (agent, cloned) = sandbox.start_agent_beside(&engine, &spec, clone).await?;
                (agent.container, Some((sandbox, agent.ip)), cloned)
            }
            None => {
                let (container, cloned) = engine.start_task_container_beside(&spec, clone).await?;
                (container, None, cloned)
            }
        };
        if let Err(e) = cloned {
            engine.remove(&container).await;
            return Err(StartError::Clone(e));
        }
        Ok(Workspace {
            engine,
            spec,
            container,
            journal,
            sandbox,
        })
    }

    /// The task's container, still running from an earlier run or round.
    pub async fn reopen(
        engine: Engine,
        spec: ContainerSpec,
        container: TaskContainer,
        sandbox: Option<Arc<Sandbox>>,
        journal: Journal,
    ) -> Result<Workspace, DockerError> {
        let sandbox = match sandbox {
            Some(sandbox) => {
                sandbox.gateway(&engine).await?;
                match crate::sandbox::agent_ip(&engine, &container).await? {
                    Some(ip) => Some((sandbox, ip)),
                    None => {
                        return Err(DockerError::Api {
                            action: "resume the agent container".into(),
                            message: "it is not on a task network (started without the sandbox)"
                                .into(),
                        });
                    }
                }
            }
            None => None,
        };
        Ok(Workspace {
            engine,
            spec,
            container,
            journal,
            sandbox,
        })
    }

    /// What a turn of the agent gets in its environment to reach the Amp service: in the
    /// sandbox a credential for the task valid until `until` (which lets it reach `allow` too,
    /// beside the service's allowlist), the relay and the proxy; without it the Amp key itself
    /// and `amp_url`.
    pub fn agent_env(
        &self,
        amp_key: &SecretString,
        amp_url: Option<&str>,
        until: SystemTime,
        allow: &[String],
    ) -> Vec<String> {
        match &self.sandbox {
            Some((sandbox, ip)) => sandbox.agent_env(&self.spec.task, *ip, until, allow),
            None => {
                let mut env = vec![format!("AMP_API_KEY={}", amp_key.expose_secret())];
                if let Some(url) = amp_url {
                    env.push(format!("AMP_URL={url}"));
                }
                env
            }
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn container(&self) -> &TaskContainer {
        &self.container
    }

    /// The Amp CLI to run: the service's, provided at [`crate::docker::CLI_DIR`] in a
    /// repository's image, or the image's own `amp`.
    pub fn amp_program(&self) -> String {
        match self.spec.cli_volume {
            Some(_) => super::image::cli_path(),
            None => "amp".into(),
        }
    }

    /// What the container's image lacks to run a task (see [`super::image::lacks`]).
    pub async fn image_lacks(&self) -> Result<Option<super::image::Lack>, DockerError> {
        super::image::lacks(&self.engine, &self.container).await
    }

    /// The connections the sandbox refused for the task so far (none without a sandbox).
    pub async fn blocked_egress(&self) -> Option<Vec<crate::domain::BlockedEgress>> {
        let (sandbox, _) = self.sandbox.as_ref()?;
        Some(sandbox.blocked(&self.engine, &self.spec.task).await)
    }

    /// Run `script` with the token in a short-lived helper container on the git network, with
    /// the workspace writable: only before the agent has run.
    async fn git_with_token(
        &self,
        token: &SecretString,
        script: &str,
        env: Vec<String>,
    ) -> Result<String, ShellError> {
        git_in_helper(
            &self.engine,
            &self.spec,
            &self.journal,
            &self.container.volume,
            token,
            script,
            env,
        )
        .await
    }

    /// Run a shell script in the workspace; its stdout when it exits 0. Its stderr is logged
    /// (masked), and is the error when it fails. `env` reaches this one process only.
    pub async fn sh(&self, script: &str, env: Vec<String>) -> Result<String, ShellError> {
        self.sh_in(&self.container, script, env, WORKSPACE).await
    }

    async fn sh_in(
        &self,
        container: &TaskContainer,
        script: &str,
        env: Vec<String>,
        workdir: &str,
    ) -> Result<String, ShellError> {
        sh_in(&self.engine, &self.journal, container, script, env, workdir).await
    }

    /// Fetch `branch` from the repository if it is there (into `FETCH_HEAD`); `false` when it is
    /// not. Only before the agent has run.
    pub async fn fetch_if_present(
        &self,
        token: &SecretString,
        branch: &str,
    ) -> Result<bool, ShellError> {
        // `ls-remote --exit-code` exits 2 when the branch is not there; anything else that fails
        // (the token, the network) must not be mistaken for that.
        let script = format!(
            "export HOME=/tmp GIT_CONFIG_NOSYSTEM=1; \
             if git {CREDENTIAL_HELPER} ls-remote --exit-code origin \"refs/heads/$BRANCH\" >/dev/null; then \
               git {CREDENTIAL_HELPER} fetch --quiet origin \"refs/heads/$BRANCH\" && echo present; \
             else rc=$?; if [ $rc = 2 ]; then echo absent; else exit $rc; fi; fi"
        );
        let out = self
            .git_with_token(token, &script, vec![format!("BRANCH={branch}")])
            .await?;
        Ok(out.trim() == "present")
    }

    /// Create `branch` at `start` (a commit-ish such as `HEAD` or `FETCH_HEAD`) and check it out.
    pub async fn checkout_new_branch(&self, branch: &str, start: &str) -> Result<(), ShellError> {
        self.sh(
            "git checkout -q -b \"$BRANCH\" \"$START\"",
            vec![format!("BRANCH={branch}"), format!("START={start}")],
        )
        .await
        .map(drop)
    }

    /// Whether the workspace has uncommitted changes.
    pub async fn is_dirty(&self) -> Result<bool, ShellError> {
        Ok(!self
            .sh("git status --porcelain", vec![])
            .await?
            .trim()
            .is_empty())
    }

    /// Commit every change as `author`, skipping any hook the repository or the agent set up.
    pub async fn commit_all(
        &self,
        message: &str,
        author_name: &str,
        author_email: &str,
    ) -> Result<(), ShellError> {
        self.sh(
            "git add -A && printf '%s' \"$MESSAGE\" | git -c core.hooksPath=/dev/null \
             -c user.name=\"$BOT_NAME\" -c user.email=\"$BOT_EMAIL\" commit -q --no-verify -F -",
            vec![
                format!("MESSAGE={message}"),
                format!("BOT_NAME={author_name}"),
                format!("BOT_EMAIL={author_email}"),
            ],
        )
        .await
        .map(drop)
    }

    /// `HEAD`, and whether it has commits `base` lacks (`default` when the workspace was cloned
    /// before `base` existed: a run resumed on a branch it created itself).
    pub async fn head(&self, base: &str, default: &str) -> Result<Head, ShellError> {
        let out = self
            .sh(
                &format!(
                    "git rev-parse HEAD && {PUSHED_RANGE} && git rev-list --count \"$b..HEAD\""
                ),
                vec![format!("BASE={base}"), format!("DEFAULT={default}")],
            )
            .await?;
        let mut lines = out.lines().map(str::trim);
        let sha = CommitSha(lines.next().unwrap_or_default().to_string());
        let ahead = lines.next().unwrap_or("0") != "0";
        Ok(Head { sha, ahead })
    }

    /// The workflow files (`.github/workflows/…`) that the commits `HEAD` has and the remote
    /// branch lacks add, change or remove (merges included). The remote branch holds `pushed`,
    /// the commit the task pushed last, if any; otherwise `base` as in [`Workspace::head`].
    pub async fn workflow_changes(
        &self,
        pushed: Option<&CommitSha>,
        base: &str,
        default: &str,
    ) -> Result<Vec<String>, ShellError> {
        let out = self
            .sh(
                &format!(
                    "{REMOTE_TIP}; {PLAIN_GIT} log -m --name-only --format= \"$b..HEAD\" -- .github/workflows"
                ),
                remote_tip_env(pushed, base, default),
            )
            .await?;
        let mut files: Vec<String> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// The change `HEAD` makes to the remote branch (as in [`Workspace::workflow_changes`]), as
    /// a patch `git apply` takes, binary files included; `None` when it is over `limit` bytes.
    pub async fn patch(
        &self,
        pushed: Option<&CommitSha>,
        base: &str,
        default: &str,
        limit: usize,
    ) -> Result<Option<String>, ShellError> {
        let mut env = remote_tip_env(pushed, base, default);
        env.push(format!("LIMIT={}", limit + 1));
        let out = self
            .sh(
                &format!(
                    "{REMOTE_TIP}; {PLAIN_GIT} -c core.pager=cat diff --binary --no-textconv \
                     --full-index --no-color --no-ext-diff \"$b\" HEAD | head -c \"$LIMIT\""
                ),
                env,
            )
            .await?;
        Ok((out.len() <= limit).then_some(out))
    }

    /// Kill whatever an interrupted run left running in the container.
    pub async fn kill_leftovers(&self) {
        if let Err(e) = self.sh("kill -KILL -1 2>/dev/null; true", vec![]).await {
            tracing::warn!(error = %e, "clearing the container of an interrupted run failed");
        }
    }

    /// Push commit `sha` of the workspace to `branch` of `clone_url`, from a helper container
    /// that shares only the workspace volume, mounted read-only. It fetches the commit into a
    /// repository of its own, whose configuration the agent never touched, and pushes from there.
    pub async fn push(
        &self,
        token: &SecretString,
        clone_url: &str,
        sha: &CommitSha,
        branch: &str,
    ) -> Result<(), ShellError> {
        let helper = self
            .engine
            .start_helper_container(
                &self.spec,
                &self.container.volume,
                &self.spec.git_network,
                WorkspaceAccess::ReadOnly,
            )
            .await?;
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
            format!("CLONE_URL={clone_url}"),
        ];
        let result = self
            .sh_in(&helper, &script, with_token(token, env), "/tmp")
            .await;
        self.engine.remove(&helper).await;
        result.map(drop)
    }

    /// Start `cmd` in the workspace as the agent's user, its output sent to `output` as it
    /// comes; the handle yields its exit code.
    pub fn spawn(
        &self,
        cmd: Vec<String>,
        env: Vec<String>,
        subdir: Option<&str>,
        output: mpsc::Sender<Output>,
    ) -> JoinHandle<Result<Option<i64>, DockerError>> {
        let engine = self.engine.clone();
        let container = self.container.clone();
        let workdir = match subdir {
            Some(subdir) => format!("{WORKSPACE}/{subdir}"),
            None => WORKSPACE.to_string(),
        };
        let exec = Exec {
            cmd,
            env,
            user: Some(AGENT_USER.into()),
            workdir: Some(workdir),
        };
        tokio::spawn(async move { engine.exec(&container, exec, output).await })
    }
}

/// What a new workspace is filled with: `branch` of the repository at `clone_url`, cloned with
/// `token`.
pub struct Seed<'a> {
    pub token: &'a SecretString,
    pub clone_url: &'a str,
    pub branch: &'a str,
}

impl Seed<'_> {
    /// Clone into the workspace volume `volume`. Values from the webhook reach git through the
    /// environment, never pasted into the script.
    async fn clone_into(
        &self,
        engine: &Engine,
        spec: &ContainerSpec,
        journal: &Journal,
        volume: &str,
    ) -> Result<(), ShellError> {
        let env = vec![
            format!("BASE={}", self.branch),
            format!("CLONE_URL={}", self.clone_url),
        ];
        let script = format!(
            "export HOME=/tmp GIT_CONFIG_NOSYSTEM=1; \
             git {CREDENTIAL_HELPER} clone --quiet --branch \"$BASE\" -- \"$CLONE_URL\" ."
        );
        git_in_helper(engine, spec, journal, volume, self.token, &script, env)
            .await
            .map(drop)
    }
}

/// Starting a workspace failed: its container, or the clone (the container is gone either way).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("{0}")]
    Clone(ShellError),
}

/// Run `script` with the token in a short-lived helper container on the git network, with the
/// workspace volume `volume` writable: only before the agent has run.
async fn git_in_helper(
    engine: &Engine,
    spec: &ContainerSpec,
    journal: &Journal,
    volume: &str,
    token: &SecretString,
    script: &str,
    env: Vec<String>,
) -> Result<String, ShellError> {
    let helper = engine
        .start_helper_container(spec, volume, &spec.git_network, WorkspaceAccess::ReadWrite)
        .await?;
    let result = sh_in(
        engine,
        journal,
        &helper,
        script,
        with_token(token, env),
        WORKSPACE,
    )
    .await;
    // Its work is done: the agent need not wait for it to go.
    let engine = engine.clone();
    tokio::spawn(async move { engine.remove(&helper).await });
    result
}

/// Run a shell script in `container`; its stdout when it exits 0. Its stderr is logged (masked),
/// and is the error when it fails. `env` reaches this one process only.
async fn sh_in(
    engine: &Engine,
    journal: &Journal,
    container: &TaskContainer,
    script: &str,
    env: Vec<String>,
    workdir: &str,
) -> Result<String, ShellError> {
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
    let code = code?.unwrap_or(-1);
    let stderr = journal.redact(stderr.trim());
    if !stderr.is_empty() {
        journal.info(&stderr).await;
    }
    if code != 0 {
        return Err(ShellError::Failed(if stderr.is_empty() {
            format!("exit status {code}")
        } else {
            stderr
        }));
    }
    Ok(stdout)
}

/// `env` with the token for a git step that needs it (and no prompt if it is refused).
fn with_token(token: &SecretString, mut env: Vec<String>) -> Vec<String> {
    env.push(format!("GIT_TOKEN={}", token.expose_secret()));
    env.push("GIT_TERMINAL_PROMPT=0".into());
    env
}

/// The environment [`REMOTE_TIP`] reads.
fn remote_tip_env(pushed: Option<&CommitSha>, base: &str, default: &str) -> Vec<String> {
    vec![
        format!("PUSHED={}", pushed.map(|s| s.as_str()).unwrap_or_default()),
        format!("BASE={base}"),
        format!("DEFAULT={default}"),
    ]
}
