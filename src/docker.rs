//! The Docker engine, through bollard: one long-lived, locked-down container per task with its own
//! workspace volume, commands run in it with `exec`, and everything labelled so orphans can be
//! found and removed.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, Mount, MountType, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions,
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
/// `git` on the short-lived helper containers that push (see [`Engine::start_helper_container`]).
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
}

fn api(action: &str) -> impl Fn(bollard::errors::Error) -> DockerError + '_ {
    move |e| DockerError::Api {
        action: action.to_string(),
        message: e.to_string(),
    }
}

/// Resource limits and placement of an agent container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub image: String,
    /// The task's public id (unique across databases and replicas).
    pub task: String,
    pub instance_id: String,
    /// See [`LABEL_STORE`].
    pub store: String,
    /// `bridge`, `none`, `host` or a network name.
    pub network: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    /// `uid:gid` the agent runs as.
    pub user: String,
}

/// A task's container and its volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContainer {
    pub id: String,
    pub volume: String,
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

fn labels(spec: &ContainerSpec) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_OWNER.to_string(), "true".to_string()),
        (LABEL_TASK.to_string(), spec.task.clone()),
        (LABEL_INSTANCE.to_string(), spec.instance_id.clone()),
        (LABEL_STORE.to_string(), spec.store.clone()),
    ])
}

/// `amp-task-<start of the task id>`.
fn container_name_base(spec: &ContainerSpec) -> String {
    let short: String = spec
        .task
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("amp-task-{short}")
}

/// Limits and privileges of every container the service starts: no privileges, no capabilities,
/// no privilege gain, bounded memory, CPU and processes.
fn locked_down(spec: &ContainerSpec) -> HostConfig {
    HostConfig {
        memory: Some(spec.memory_bytes),
        memory_swap: Some(spec.memory_bytes),
        nano_cpus: Some(spec.nano_cpus),
        pids_limit: Some(spec.pids_limit),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        network_mode: Some(spec.network.clone()),
        ..Default::default()
    }
}

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

    /// Create and start the task's container with a fresh workspace volume. Nothing is left
    /// behind if a step fails.
    pub async fn start_task_container(
        &self,
        spec: &ContainerSpec,
    ) -> Result<TaskContainer, DockerError> {
        if !self.image_exists(&spec.image).await? {
            return Err(DockerError::MissingImage(spec.image.clone()));
        }
        let labels = labels(spec);
        let name = format!(
            "{}-{:08x}",
            container_name_base(spec),
            rand::random::<u32>()
        );
        let volume = self
            .docker
            .create_volume(VolumeCreateRequest {
                name: Some(format!("{name}-workspace")),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(api("create the workspace volume"))?
            .name;
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            user: Some(spec.user.clone()),
            working_dir: Some(WORKSPACE.into()),
            labels: Some(labels),
            network_disabled: Some(spec.network == "none"),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some(WORKSPACE.into()),
                    source: Some(volume.clone()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                }]),
                ..locked_down(spec)
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
        let handle = TaskContainer { id, volume };
        if let Err(e) = self.docker.start_container(&handle.id, None).await {
            self.remove(&handle).await;
            return Err(api("start the agent container")(e));
        }
        Ok(handle)
    }

    /// Start a short-lived helper container beside the task's: the same image, user, network and
    /// labels, the task's workspace volume mounted read-only, and nothing else shared (its own
    /// processes, `/tmp` and environment). Git steps that hold the installation token run here,
    /// out of reach of anything the agent left running. [`Engine::remove`] removes it (and leaves
    /// the workspace volume alone).
    pub async fn start_helper_container(
        &self,
        spec: &ContainerSpec,
        task: &TaskContainer,
    ) -> Result<TaskContainer, DockerError> {
        let name = format!(
            "{}-git-{:08x}",
            container_name_base(spec),
            rand::random::<u32>()
        );
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            user: Some(spec.user.clone()),
            working_dir: Some("/tmp".into()),
            labels: Some({
                let mut labels = labels(spec);
                labels.insert(LABEL_ROLE.into(), "git".into());
                labels
            }),
            network_disabled: Some(spec.network == "none"),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some(WORKSPACE.into()),
                    source: Some(task.volume.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(true),
                    ..Default::default()
                }]),
                ..locked_down(spec)
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

    /// Remove the container (killing whatever runs in it) and its volume. Errors are logged: a
    /// leftover is found again by [`Engine::owned`] and removed later.
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
        Ok(containers
            .into_iter()
            .filter(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_ROLE)).is_none())
            .find_map(|c| {
                let volume = c
                    .mounts
                    .unwrap_or_default()
                    .into_iter()
                    .find(|m| m.destination.as_deref() == Some(WORKSPACE))
                    .and_then(|m| m.name)?;
                Some(TaskContainer { id: c.id?, volume })
            }))
    }

    /// Containers and volumes the service created for `store` (all stores when `None`), with
    /// the task (public id) each belongs to.
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
        let task_of = |labels: Option<&HashMap<String, String>>| {
            labels.and_then(|l| l.get(LABEL_TASK)).cloned()
        };
        let mut owned: Vec<(String, TaskContainer)> = Vec::new();
        for c in containers {
            let Some(task) = task_of(c.labels.as_ref()) else {
                continue;
            };
            let volume = c
                .mounts
                .unwrap_or_default()
                .into_iter()
                .find(|m| m.destination.as_deref() == Some(WORKSPACE))
                .and_then(|m| m.name)
                .unwrap_or_default();
            owned.push((
                task,
                TaskContainer {
                    id: c.id.unwrap_or_default(),
                    volume,
                },
            ));
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
                    },
                ));
            }
        }
        Ok(owned)
    }
}
