//! The Docker engine, through bollard: one long-lived, locked-down container per task with its own
//! workspace volume, commands run in it with `exec`, and everything labelled so orphans can be
//! found and removed. What isolates a task's agent on the network (its own network, the egress
//! gateway) is [`crate::sandbox`]'s; this module only places a container on the network it names
//! and removes a task's network with the task's container.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, Mount, MountType, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, CreateImageOptions, ListContainersOptions,
    ListVolumesOptions, RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
};
use futures::StreamExt;
use tokio::sync::mpsc;

/// Labels on everything the service creates.
pub const LABEL_OWNER: &str = "io.amp-orchestrator.owned";
pub const LABEL_TASK: &str = "io.amp-orchestrator.task";
pub const LABEL_INSTANCE: &str = "io.amp-orchestrator.instance";
/// Which task store the container belongs to: replicas sharing a database share containers,
/// and services on other databases (other deployments on the same engine) are left alone.
pub const LABEL_STORE: &str = "io.amp-orchestrator.store";
/// `git` on the short-lived helper containers (see [`Engine::start_helper_container`]),
/// `gateway` on the store's egress gateway (see [`crate::sandbox::gateway`]).
pub const LABEL_ROLE: &str = "io.amp-orchestrator.role";
/// Where the workspace volume is mounted in the agent container.
pub const WORKSPACE: &str = "/workspace";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("the Docker engine cannot be reached: {0}")]
    Unreachable(String),
    #[error("the agent image {0} is not present on the Docker engine (build or pull it first)")]
    MissingImage(String),
    #[error("Docker refused to {action}: {message}")]
    Api { action: String, message: String },
    #[error("the gateway image {0} is not present on the Docker engine (build or load it first)")]
    MissingGatewayImage(String),
    #[error("building the gateway image failed: {0}")]
    GatewayImage(String),
    #[error(
        "no free /28 for a task network in {pool}: the {attempts} subnets tried all overlap networks on the engine"
    )]
    NoFreeSubnet { pool: String, attempts: u32 },
    #[error(
        "the egress gateway container {0} does not exist: start it (ensure_gateway) before tasks"
    )]
    GatewayMissing(String),
    #[error(
        "the egress gateway container {name} was not ready after {waited_secs}s ({state}); its last log lines:\n{logs}"
    )]
    GatewayNotReady {
        name: String,
        waited_secs: u64,
        state: String,
        logs: String,
    },
}

pub(crate) fn api(action: &str) -> impl Fn(bollard::errors::Error) -> DockerError + '_ {
    move |e| DockerError::Api {
        action: action.to_string(),
        message: e.to_string(),
    }
}

/// An image reference with a tag: `latest` when it names neither a tag nor a digest (as the
/// docker CLI does; the engine's API would take every tag).
pub fn with_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The home of the agent's user in a repository's image (made when its container starts).
pub const FOREIGN_HOME: &str = "/tmp/home";

/// Where a container whose image is not the service's finds the service's Amp CLI (`amp`),
/// mounted read-only.
pub const CLI_DIR: &str = "/opt/amp-orchestrator";

/// Resource limits and placement of an agent container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The agent's image: the service's `AGENT_IMAGE`, or the repository's `image`.
    pub image: String,
    /// The image of the git helper containers: always the service's (it has git, whatever the
    /// repository's image has).
    pub helper_image: String,
    /// The volume holding the service's Amp CLI, mounted at [`CLI_DIR`]: for a repository's
    /// image, which need not have one.
    pub cli_volume: Option<String>,
    /// The task's public id (unique across databases and replicas).
    pub task: String,
    pub instance_id: String,
    /// See [`LABEL_STORE`].
    pub store: String,
    /// `bridge`, `none`, `host` or a network name: the "open" placement. A sandboxed agent is
    /// placed on its task network instead (see [`crate::sandbox::start_agent`]).
    pub network: String,
    /// The network of the short-lived git containers that hold the installation token
    /// (`GIT_NETWORK`).
    pub git_network: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    /// `uid:gid` the agent runs as.
    pub user: String,
}

/// A task's container, its volume and, for a sandboxed agent, its task network. Any of them may
/// be empty (`""`/`None`) in what [`Engine::owned`] finds: a volume or network left without its
/// container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContainer {
    pub id: String,
    pub volume: String,
    /// The task network (see [`crate::sandbox::network`]) the agent sits on alone; removed with
    /// the container.
    pub network: Option<String>,
}

/// A task container not created yet: its name and its workspace volume.
#[derive(Debug)]
pub(crate) struct PreparedContainer {
    name: String,
    volume: String,
}

impl PreparedContainer {
    /// The workspace volume's name.
    pub(crate) fn volume(&self) -> &str {
        &self.volume
    }
}

/// How a git helper container mounts the task's workspace volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceAccess {
    /// Reading the agent's work (the push).
    ReadOnly,
    /// Writing it (the clone, before the agent has run).
    ReadWrite,
}

/// A chunk of a command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(String),
    Stderr(String),
}

/// A command to run in a task's container.
#[derive(Debug, Clone, Default)]
pub struct Exec {
    pub cmd: Vec<String>,
    /// `KEY=value`; only this exec's process sees them.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
}

/// The labels of everything a task owns: its containers, volume and network.
pub(crate) fn labels(spec: &ContainerSpec) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_OWNER.to_string(), "true".to_string()),
        (LABEL_TASK.to_string(), spec.task.clone()),
        (LABEL_INSTANCE.to_string(), spec.instance_id.clone()),
        (LABEL_STORE.to_string(), spec.store.clone()),
    ])
}

/// `amp-task-<start of the task id>`.
pub(crate) fn container_name_base(spec: &ContainerSpec) -> String {
    let short: String = spec
        .task
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("amp-task-{short}")
}

/// Limits and privileges of every container the service starts for a task: no privileges, no
/// capabilities, no privilege gain, bounded memory, CPU and processes, on `network`.
fn locked_down(spec: &ContainerSpec, network: &str) -> HostConfig {
    HostConfig {
        memory: Some(spec.memory_bytes),
        memory_swap: Some(spec.memory_bytes),
        nano_cpus: Some(spec.nano_cpus),
        pids_limit: Some(spec.pids_limit),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        network_mode: Some(network.to_string()),
        ..Default::default()
    }
}

/// The resolver a sandboxed agent's embedded DNS forwards names it does not know to. Docker's
/// embedded resolver answers the names of the task network (`amp-gateway`) itself and forwards
/// every other name; when the host's resolver is a loopback address, Docker 20.10 forwards from
/// the host's network namespace (CVE-2024-29018), a way out of an internal network. An explicit,
/// non-loopback server is forwarded to from the agent's own namespace, where it leads nowhere:
/// names outside the task network do not resolve (the gateway resolves for the agent).
const SANDBOX_DNS: &str = "0.0.0.0";

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connect to `host` (`unix:///…`, `tcp://…`; the local socket or the process's
    /// `DOCKER_HOST` when `None`) and agree on an API version the engine speaks.
    pub async fn connect(host: Option<&str>) -> Result<Engine, DockerError> {
        let docker = match host {
            None => Docker::connect_with_defaults(),
            Some(h) if h.starts_with("unix://") => {
                Docker::connect_with_socket(h, 120, bollard::API_DEFAULT_VERSION)
            }
            Some(h) => Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION),
        }
        .map_err(|e| DockerError::Unreachable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| DockerError::Unreachable(e.to_string()))?;
        Ok(Engine { docker })
    }

    pub async fn ping(&self) -> Result<(), DockerError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| DockerError::Unreachable(e.to_string()))
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(DockerError::Unreachable(e.to_string())),
        }
    }

    /// The image's id (`sha256:…`), `None` when the engine does not have it.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => Ok(inspect.id),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(DockerError::Unreachable(e.to_string())),
        }
    }

    /// Pull `image` (a name with its tag or digest) from its registry, within `limit`.
    pub async fn pull_image(&self, image: &str, limit: Duration) -> Result<(), DockerError> {
        // Without a tag the engine would pull every tag of the repository.
        let options = CreateImageOptions {
            from_image: Some(with_tag(image)),
            ..Default::default()
        };
        let pull = async {
            let mut progress = self.docker.create_image(Some(options), None, None);
            while let Some(step) = progress.next().await {
                let step = step.map_err(api(&format!("pull {image}")))?;
                if let Some(detail) = step.error_detail {
                    return Err(DockerError::Api {
                        action: format!("pull {image}"),
                        message: detail.message.unwrap_or_default(),
                    });
                }
            }
            Ok(())
        };
        match tokio::time::timeout(limit, pull).await {
            Ok(pulled) => pulled,
            Err(_) => Err(DockerError::Api {
                action: format!("pull {image}"),
                message: format!("it took longer than {} s", limit.as_secs()),
            }),
        }
    }

    /// Save the container's file system (not its volumes) as the image `repo:tag` with
    /// `labels`; the image's size in bytes.
    pub async fn commit(
        &self,
        container: &TaskContainer,
        repo: &str,
        tag: &str,
        labels: HashMap<String, String>,
    ) -> Result<i64, DockerError> {
        let options = CommitContainerOptions {
            container: Some(container.id.clone()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            pause: true,
            ..Default::default()
        };
        let config = bollard::models::ContainerConfig {
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .commit_container(options, config)
            .await
            .map_err(api("save the container as an image"))?;
        let image = format!("{repo}:{tag}");
        let inspect = self
            .docker
            .inspect_image(&image)
            .await
            .map_err(api("inspect the saved image"))?;
        Ok(inspect.size.unwrap_or(0))
    }

    /// Remove the image `name` (its tag, even while a container runs from it). Errors are
    /// logged; an image already gone is no error.
    pub async fn remove_image(&self, name: &str) {
        let options = RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_image(name, Some(options), None).await {
            Ok(_)
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => tracing::warn!(image = name, error = %e, "removing an image failed"),
        }
    }

    /// Whether a volume named `name` exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(DockerError::Unreachable(e.to_string())),
        }
    }

    /// Create the volume `name` (nothing happens when it exists), labelled `role` (and not as a
    /// task's: it outlives tasks).
    pub async fn create_shared_volume(&self, name: &str, role: &str) -> Result<(), DockerError> {
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(HashMap::from([(LABEL_ROLE.to_string(), role.to_string())])),
                ..Default::default()
            })
            .await
            .map(drop)
            .map_err(api("create a volume"))
    }

    /// The bollard client, for the modules that own other kinds of Docker objects
    /// ([`crate::sandbox`]).
    pub(crate) fn client(&self) -> &Docker {
        &self.docker
    }

    /// Create and start the task's container with a fresh workspace volume, on `spec.network`
    /// (the "open" placement). Nothing is left behind if a step fails.
    pub async fn start_task_container(
        &self,
        spec: &ContainerSpec,
    ) -> Result<TaskContainer, DockerError> {
        self.start_task_container_on(spec, None).await
    }

    /// As [`Engine::start_task_container`], on `task_network` (a network of
    /// [`crate::sandbox::network`]) when given: the container is attached to it alone, and
    /// removing the container removes the network.
    pub(crate) async fn start_task_container_on(
        &self,
        spec: &ContainerSpec,
        task_network: Option<&str>,
    ) -> Result<TaskContainer, DockerError> {
        let prepared = self.prepare_task_container(spec).await?;
        self.launch_task_container(spec, prepared, task_network)
            .await
    }

    /// As [`Engine::start_task_container`], with `beside` run on the new workspace volume (given
    /// its name) while the container is created and started: a clone into the workspace need
    /// not wait for the container. What `beside` gives is returned with the container; when
    /// starting fails, the volume goes once `beside` is done with it.
    pub async fn start_task_container_beside<T, Fut>(
        &self,
        spec: &ContainerSpec,
        beside: impl FnOnce(String) -> Fut,
    ) -> Result<(TaskContainer, T), DockerError>
    where
        Fut: std::future::Future<Output = T>,
    {
        let prepared = self.prepare_task_container(spec).await?;
        let volume = prepared.volume.clone();
        let (started, beside) = tokio::join!(
            self.launch_task_container(spec, prepared, None),
            beside(volume.clone())
        );
        match started {
            Ok(container) => Ok((container, beside)),
            Err(e) => {
                // Launching removed the volume when `beside` may still have used it: again now.
                self.discard_volume(&volume).await;
                Err(e)
            }
        }
    }

    /// The first steps of starting a task's container, which need no network: the image is
    /// there, and a fresh workspace volume.
    pub(crate) async fn prepare_task_container(
        &self,
        spec: &ContainerSpec,
    ) -> Result<PreparedContainer, DockerError> {
        if !self.image_exists(&spec.image).await? {
            return Err(DockerError::MissingImage(spec.image.clone()));
        }
        let name = format!(
            "{}-{:08x}",
            container_name_base(spec),
            rand::random::<u32>()
        );
        let volume = self
            .docker
            .create_volume(VolumeCreateRequest {
                name: Some(format!("{name}-workspace")),
                labels: Some(labels(spec)),
                ..Default::default()
            })
            .await
            .map_err(api("create the workspace volume"))?
            .name;
        Ok(PreparedContainer { name, volume })
    }

    /// Give up a prepared container's volume (when starting it failed; a no-op if it is gone).
    pub(crate) async fn discard_volume(&self, volume: &str) {
        self.remove_volume(volume).await;
    }

    /// Create and start the prepared container. Nothing is left behind if a step fails (the
    /// task network is removed too once the container exists).
    pub(crate) async fn launch_task_container(
        &self,
        spec: &ContainerSpec,
        prepared: PreparedContainer,
        task_network: Option<&str>,
    ) -> Result<TaskContainer, DockerError> {
        let PreparedContainer { name, volume } = prepared;
        let labels = labels(spec);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // Whatever the image's entrypoint, the container only waits for commands.
            entrypoint: Some(vec![String::new()]),
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            user: Some(spec.user.clone()),
            // A repository's image may have no home for the agent's user: one in /tmp.
            env: spec
                .cli_volume
                .as_ref()
                .map(|_| vec![format!("HOME={FOREIGN_HOME}")]),
            working_dir: Some(WORKSPACE.into()),
            labels: Some(labels),
            network_disabled: Some(task_network.is_none() && spec.network == "none"),
            host_config: Some(HostConfig {
                mounts: Some(
                    std::iter::once(Mount {
                        target: Some(WORKSPACE.into()),
                        source: Some(volume.clone()),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    })
                    .chain(spec.cli_volume.as_ref().map(|cli| Mount {
                        target: Some(CLI_DIR.into()),
                        source: Some(cli.clone()),
                        typ: Some(MountType::VOLUME),
                        read_only: Some(true),
                        ..Default::default()
                    }))
                    .collect(),
                ),
                dns: task_network.map(|_| vec![SANDBOX_DNS.to_string()]),
                ..locked_down(spec, task_network.unwrap_or(&spec.network))
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await;
        let id = match created {
            Ok(c) => c.id,
            Err(e) => {
                self.remove_volume(&volume).await;
                return Err(api("create the agent container")(e));
            }
        };
        let handle = TaskContainer {
            id,
            volume,
            network: task_network.map(str::to_string),
        };
        if let Err(e) = self.docker.start_container(&handle.id, None).await {
            self.remove(&handle).await;
            return Err(api("start the agent container")(e));
        }
        Ok(handle)
    }

    /// Start a short-lived helper container beside the task's: the service's image, the same user and labels,
    /// the task's workspace volume mounted as `workspace` says, on `network` (the git network:
    /// `bridge`, `host`, `none` or a network name, never the agent's task network), and nothing
    /// else shared (its own processes, `/tmp` and environment). Git steps that hold the
    /// installation token run here, out of reach of anything the agent left running.
    /// [`Engine::remove`] removes it (and leaves the workspace volume and the task network alone).
    pub async fn start_helper_container(
        &self,
        spec: &ContainerSpec,
        volume: &str,
        network: &str,
        workspace: WorkspaceAccess,
    ) -> Result<TaskContainer, DockerError> {
        let name = format!(
            "{}-git-{:08x}",
            container_name_base(spec),
            rand::random::<u32>()
        );
        let body = ContainerCreateBody {
            image: Some(spec.helper_image.clone()),
            entrypoint: Some(vec![String::new()]),
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            user: Some(spec.user.clone()),
            working_dir: Some("/tmp".into()),
            labels: Some({
                let mut labels = labels(spec);
                labels.insert(LABEL_ROLE.into(), "git".into());
                labels
            }),
            network_disabled: Some(network == "none"),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some(WORKSPACE.into()),
                    source: Some(volume.to_string()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(workspace == WorkspaceAccess::ReadOnly),
                    ..Default::default()
                }]),
                ..locked_down(spec, network)
            }),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(api("create the git helper container"))?
            .id;
        let helper = TaskContainer {
            id,
            volume: String::new(),
            network: None,
        };
        if let Err(e) = self.docker.start_container(&helper.id, None).await {
            self.remove(&helper).await;
            return Err(api("start the git helper container")(e));
        }
        Ok(helper)
    }

    /// Run a command in the container, sending its output line by line to `output`, and return
    /// its exit code. Dropping the future abandons the command (removing the container stops it).
    pub async fn exec(
        &self,
        container: &TaskContainer,
        exec: Exec,
        output: mpsc::Sender<Output>,
    ) -> Result<Option<i64>, DockerError> {
        let created = self
            .docker
            .create_exec(
                &container.id,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(exec.cmd),
                    env: Some(exec.env),
                    user: exec.user,
                    working_dir: exec.workdir,
                    ..Default::default()
                },
            )
            .await
            .map_err(api("run a command in the agent container"))?;
        match self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(api("start a command in the agent container"))?
        {
            StartExecResults::Attached {
                output: mut stream, ..
            } => {
                while let Some(chunk) = stream.next().await {
                    let line = match chunk {
                        Ok(LogOutput::StdOut { message }) => {
                            Output::Stdout(String::from_utf8_lossy(&message).into_owned())
                        }
                        Ok(LogOutput::StdErr { message }) => {
                            Output::Stderr(String::from_utf8_lossy(&message).into_owned())
                        }
                        Ok(_) => continue,
                        Err(e) => return Err(api("read a command's output")(e)),
                    };
                    if output.send(line).await.is_err() {
                        break;
                    }
                }
            }
            StartExecResults::Detached => {}
        }
        // The exit code can lag the end of the stream by a moment.
        for _ in 0..50 {
            let inspect = self
                .docker
                .inspect_exec(&created.id)
                .await
                .map_err(api("inspect a command"))?;
            if inspect.running != Some(true) {
                return Ok(inspect.exit_code);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(None)
    }

    /// Remove the container (killing whatever runs in it), its volume and its task network (the
    /// gateway disconnected first). Errors are logged: a leftover is found again by
    /// [`Engine::owned`] and removed later.
    pub async fn remove(&self, container: &TaskContainer) {
        if !container.id.is_empty()
            && let Err(e) = self
                .docker
                .remove_container(
                    &container.id,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await
            && !matches!(
                e,
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                }
            )
        {
            tracing::warn!(container = %container.id, error = %e, "removing the agent container failed");
        }
        self.remove_volume(&container.volume).await;
        if let Some(network) = &container.network {
            crate::sandbox::network::remove_task_network(self, network).await;
        }
    }

    async fn remove_volume(&self, volume: &str) {
        if volume.is_empty() {
            return;
        }
        // Right after its container is removed, the engine may still count the volume as in use
        // for a moment (409): try again briefly. A volume left anyway is found and removed by
        // the next reconciliation.
        for attempt in 1..=10 {
            match self
                .docker
                .remove_volume(volume, Some(RemoveVolumeOptions { force: true }))
                .await
            {
                Ok(()) => return,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) if attempt < 10 => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    tracing::warn!(%volume, error = %e, "removing the workspace volume failed");
                    return;
                }
            }
        }
    }

    /// The task's agent container, if it is still running (after a restart of the service).
    pub async fn running_agent_container(
        &self,
        store: &str,
        task: &str,
    ) -> Result<Option<TaskContainer>, DockerError> {
        let filters = HashMap::from([
            (
                "label".to_string(),
                vec![
                    format!("{LABEL_OWNER}=true"),
                    format!("{LABEL_STORE}={store}"),
                    format!("{LABEL_TASK}={task}"),
                ],
            ),
            ("status".to_string(), vec!["running".to_string()]),
        ]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(api("list containers"))?;
        let Some(agent) = containers
            .into_iter()
            .find(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_ROLE)).is_none())
        else {
            return Ok(None);
        };
        let networks =
            crate::sandbox::network::task_networks(self, Some(store), Some(task)).await?;
        Ok(agent_container(agent, &networks).filter(|c| !c.volume.is_empty()))
    }

    /// Containers, volumes and task networks the service created for `store` (all stores when
    /// `None`), with the task (public id) each belongs to. An agent container comes with its
    /// volume and task network; what is left of a task without its container comes alone.
    pub async fn owned(
        &self,
        store: Option<&str>,
    ) -> Result<Vec<(String, TaskContainer)>, DockerError> {
        let mut labels = vec![format!("{LABEL_OWNER}=true")];
        if let Some(store) = store {
            labels.push(format!("{LABEL_STORE}={store}"));
        }
        let filters = HashMap::from([("label".to_string(), labels)]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .map_err(api("list containers"))?;
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(api("list volumes"))?
            .volumes
            .unwrap_or_default();
        let networks = crate::sandbox::network::task_networks(self, store, None).await?;
        let task_of = |labels: Option<&HashMap<String, String>>| {
            labels.and_then(|l| l.get(LABEL_TASK)).cloned()
        };
        let mut owned: Vec<(String, TaskContainer)> = Vec::new();
        for c in containers {
            let Some(task) = task_of(c.labels.as_ref()) else {
                continue;
            };
            let helper = c.labels.as_ref().and_then(|l| l.get(LABEL_ROLE)).is_some();
            let container = if helper {
                // A helper never owns the task network, even if it were placed on it.
                TaskContainer {
                    id: c.id.unwrap_or_default(),
                    volume: String::new(),
                    network: None,
                }
            } else {
                match agent_container(c, &networks) {
                    Some(container) => container,
                    None => continue,
                }
            };
            owned.push((task, container));
        }
        for v in volumes {
            if owned.iter().any(|(_, c)| c.volume == v.name) {
                continue;
            }
            if let Some(task) = task_of(Some(&v.labels)) {
                owned.push((
                    task,
                    TaskContainer {
                        id: String::new(),
                        volume: v.name,
                        network: None,
                    },
                ));
            }
        }
        for n in networks {
            if owned
                .iter()
                .any(|(_, c)| c.network.as_deref() == Some(n.name.as_str()))
            {
                continue;
            }
            owned.push((
                n.task,
                TaskContainer {
                    id: String::new(),
                    volume: String::new(),
                    network: Some(n.name),
                },
            ));
        }
        Ok(owned)
    }
}

/// An agent container as listed: its workspace volume, and its task network when it sits on one
/// of `networks`.
fn agent_container(
    c: bollard::models::ContainerSummary,
    networks: &[crate::sandbox::network::OwnedNetwork],
) -> Option<TaskContainer> {
    let id = c.id?;
    let volume = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.destination.as_deref() == Some(WORKSPACE))
        .and_then(|m| m.name)
        .unwrap_or_default();
    let mode = c.host_config.and_then(|h| h.network_mode);
    let network = mode.and_then(|mode| {
        networks
            .iter()
            .find(|n| n.name == mode || n.id == mode)
            .map(|n| n.name.clone())
    });
    Some(TaskContainer {
        id,
        volume,
        network,
    })
}

#[cfg(test)]
mod tests {
    use super::with_tag;

    #[test]
    fn an_image_without_a_tag_is_pulled_as_latest() {
        assert_eq!(with_tag("rust"), "rust:latest");
        assert_eq!(with_tag("ghcr.io/o/i"), "ghcr.io/o/i:latest");
        assert_eq!(with_tag("127.0.0.1:5000/o/i"), "127.0.0.1:5000/o/i:latest");
        assert_eq!(with_tag("127.0.0.1:5000/o/i:2"), "127.0.0.1:5000/o/i:2");
        assert_eq!(with_tag("rust:1-bookworm"), "rust:1-bookworm");
        assert_eq!(with_tag("o/i@sha256:abc"), "o/i@sha256:abc");
    }
}
