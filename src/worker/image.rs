//! The image a task's agent runs in: the service's `AGENT_IMAGE`, or the repository's own
//! (`image` in `.github/amp.toml`). A repository's image is pulled when the engine lacks it and
//! needs nothing of the service's: the service's pinned Amp CLI comes from a volume filled once
//! per engine and `AGENT_IMAGE` (copied out of that image, whose `amp` on the `PATH` is the CLI's
//! executable), mounted read-only at [`CLI_DIR`]. What the image must have itself, a POSIX
//! shell and git, is checked when its container starts, and a lack is said plainly.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::docker::{
    CLI_DIR, ContainerSpec, DockerError, Engine, Exec, FOREIGN_HOME, Output, TaskContainer,
    WORKSPACE, WorkspaceAccess,
};

/// How long pulling a repository's image may take.
pub const PULL_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The CLI's path in a container with a repository's image.
pub fn cli_path() -> String {
    format!("{CLI_DIR}/amp")
}

/// The volumes this process has filled (or found filled) since it started.
static FILLED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The volume holding the Amp CLI of the service's image (`spec.helper_image`), filled now if
/// it is new: named after the image's id, so a new `AGENT_IMAGE` brings a new CLI.
pub async fn cli_volume(engine: &Engine, spec: &ContainerSpec) -> Result<String, DockerError> {
    let Some(id) = engine.image_id(&spec.helper_image).await? else {
        return Err(DockerError::MissingImage(spec.helper_image.clone()));
    };
    let short: String = id.trim_start_matches("sha256:").chars().take(16).collect();
    let name = format!("amp-orchestrator-cli-{short}");
    let known = FILLED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .contains(&name);
    // A volume removed by hand is filled again.
    if known && engine.volume_exists(&name).await? {
        return Ok(name);
    }
    engine.create_shared_volume(&name, "cli").await?;
    fill(engine, spec, &name).await?;
    FILLED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(name.clone());
    Ok(name)
}

/// Copy the CLI out of the service's image into `volume`, unless it is there: the copy lands
/// under a name of its own and is renamed, so a reader never finds half a file, and two fills
/// at once (two tasks, two replicas) do not meet.
const FILL: &str = "set -e
[ -x \"$DEST/amp\" ] && exit 0
src=$(command -v amp) || { echo 'the service image has no amp on its PATH' >&2; exit 1; }
src=$(readlink -f \"$src\")
tmp=\"$DEST/.amp.$(cat /proc/sys/kernel/random/uuid)\"
cp \"$src\" \"$tmp\"
chmod 0755 \"$tmp\"
mv \"$tmp\" \"$DEST/amp\"";

async fn fill(engine: &Engine, spec: &ContainerSpec, volume: &str) -> Result<(), DockerError> {
    // A helper container of the service's image with the volume where a workspace would be,
    // and no network.
    let helper = engine
        .start_helper_container(spec, volume, "none", WorkspaceAccess::ReadWrite)
        .await?;
    let result = run(engine, &helper, FILL).await;
    engine.remove(&helper).await;
    match result? {
        (Some(0), _) => Ok(()),
        (code, said) => Err(DockerError::Api {
            action: "copy the Amp CLI out of the service's image".into(),
            message: format!("exit {code:?}: {}", said.trim()),
        }),
    }
}

/// Run `script` in `container`; its exit code and what it printed.
async fn run(
    engine: &Engine,
    container: &TaskContainer,
    script: &str,
) -> Result<(Option<i64>, String), DockerError> {
    let (tx, mut rx) = mpsc::channel(16);
    let exec = Exec {
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![format!("DEST={WORKSPACE}")],
        user: None,
        workdir: Some("/".into()),
    };
    let collect = async {
        let mut said = String::new();
        while let Some(Output::Stdout(s) | Output::Stderr(s)) = rx.recv().await {
            said.push_str(&s);
        }
        said
    };
    let (code, said) = tokio::join!(engine.exec(container, exec, tx), collect);
    Ok((code?, said))
}

/// What a repository's image lacks, found when its container has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lack {
    /// No `sh`: nothing can run in it.
    Shell,
    /// No `git`: the workspace cannot be committed.
    Git,
}

/// Check that the container of a repository's image can run a task.
pub async fn lacks(
    engine: &Engine,
    container: &TaskContainer,
) -> Result<Option<Lack>, DockerError> {
    let script = format!("mkdir -p {FOREIGN_HOME} 2>/dev/null; command -v git >/dev/null 2>&1");
    match run(engine, container, &script).await {
        Ok((Some(0), _)) => Ok(None),
        Ok((_, said)) if no_executable(&said) => Ok(Some(Lack::Shell)),
        Ok(_) => Ok(Some(Lack::Git)),
        Err(DockerError::Api { message, .. }) if no_executable(&message) => Ok(Some(Lack::Shell)),
        Err(e) => Err(e),
    }
}

/// Docker's words for a command (or a container's) whose executable the image does not have.
pub fn no_executable(said: &str) -> bool {
    said.contains("executable file not found")
}
