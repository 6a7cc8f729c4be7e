//! The store's egress gateway container: the one way out of every task network of a store (an
//! allowlist proxy and a relay to the Amp service that holds the real key, run by the
//! `amp-orchestrator gateway` subcommand). One per store, named [`gateway_name`], shared by the
//! replicas of that store.
//!
//! This module owns the gateway container: creating it locked down (no capabilities, no privilege
//! gain, read-only root, a non-root user, bounded memory and processes), on the egress network,
//! connected to every task network of its store; reusing it while its configuration is unchanged
//! and replacing it when it changed; and waiting until it is ready. Its environment holds the
//! secrets it relays with, so it is never logged.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    HealthConfig, HealthStatusEnum, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptions, LogsOptions, RemoveContainerOptions};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::{info, warn};

use super::network::{connect_as_gateway, task_networks};
use crate::docker::{DockerError, Engine, LABEL_OWNER, LABEL_ROLE, LABEL_STORE, api};

/// What the gateway container runs unless told otherwise.
pub const GATEWAY_CMD: [&str; 2] = ["/amp-orchestrator", "gateway"];
/// How the engine asks the gateway whether it is healthy.
pub const GATEWAY_HEALTHCHECK: [&str; 4] =
    ["CMD", "/amp-orchestrator", "gateway-probe", "/healthz"];
/// `nobody`.
pub const GATEWAY_USER: &str = "65534:65534";
pub const GATEWAY_MEMORY: i64 = 256 * 1024 * 1024;
pub const GATEWAY_PIDS: i64 = 256;
/// The egress network unless told otherwise.
pub const DEFAULT_EGRESS_NETWORK: &str = "bridge";
/// A hash of the gateway's whole configuration (image, command, environment, limits): a gateway
/// whose label differs from what this replica would create is replaced.
pub const LABEL_CONFIG: &str = "io.amp-orchestrator.config";
/// [`crate::docker::LABEL_ROLE`] of the gateway.
pub const GATEWAY_ROLE: &str = "gateway";
/// Scratch space for the gateway process; its root file system is read-only.
const GATEWAY_TMPFS: (&str, &str) = ("/tmp", "rw,noexec,nosuid,nodev,size=16m");
const LOG_LINES: &str = "20";

/// The gateway container a store wants.
#[derive(Clone)]
pub struct GatewaySpec {
    /// See [`crate::docker::LABEL_STORE`].
    pub store: String,
    /// The gateway image (see [`super::image::gateway_image`]).
    pub image: String,
    /// `KEY=value`: `AMP_API_KEY`, `AMP_URL`, `GATEWAY_ALLOW`, `GATEWAY_ALLOW_NETWORKS`. Secret:
    /// never logged (its `Debug` shows the keys only).
    pub env: Vec<String>,
    /// The network the gateway reaches the outside through (`bridge` or a network name).
    pub egress_network: String,
    /// `name:address` lines for the gateway's `/etc/hosts` (`AGENT_EGRESS_HOSTS`).
    pub extra_hosts: Vec<String>,
    /// [`GATEWAY_CMD`]; another command only for a stand-in.
    pub cmd: Vec<String>,
    /// `HEALTHCHECK` test ([`GATEWAY_HEALTHCHECK`]); `None` for none (ready once running).
    pub healthcheck: Option<Vec<String>>,
    /// How long [`ensure_gateway`] waits for it to be ready.
    pub ready_timeout: Duration,
}

impl GatewaySpec {
    /// The gateway as production runs it: [`GATEWAY_CMD`] with [`GATEWAY_HEALTHCHECK`] on
    /// [`DEFAULT_EGRESS_NETWORK`].
    pub fn new(store: impl Into<String>, image: impl Into<String>, env: Vec<String>) -> Self {
        GatewaySpec {
            store: store.into(),
            image: image.into(),
            env,
            egress_network: DEFAULT_EGRESS_NETWORK.into(),
            extra_hosts: Vec::new(),
            cmd: GATEWAY_CMD.map(String::from).to_vec(),
            healthcheck: Some(GATEWAY_HEALTHCHECK.map(String::from).to_vec()),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for GatewaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self
            .env
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k))
            .collect();
        f.debug_struct("GatewaySpec")
            .field("store", &self.store)
            .field("image", &self.image)
            .field("env", &keys)
            .field("egress_network", &self.egress_network)
            .field("extra_hosts", &self.extra_hosts)
            .field("cmd", &self.cmd)
            .field("healthcheck", &self.healthcheck)
            .field("ready_timeout", &self.ready_timeout)
            .finish()
    }
}

/// A running gateway container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub id: String,
    pub name: String,
}

/// `amp-gateway-<store>` (up to 16 of its letters and digits: all of a production store label).
pub fn gateway_name(store: &str) -> String {
    let short: String = store
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    format!("amp-gateway-{short}")
}

/// Make sure the store's gateway runs with `spec`'s configuration and is ready: a running one
/// with the same configuration is kept; any other is removed and a new one created, connected to
/// every existing task network of the store (so running tasks keep their gateway) and started.
/// Replicas racing to create it share the one that wins.
pub async fn ensure_gateway(engine: &Engine, spec: &GatewaySpec) -> Result<Gateway, DockerError> {
    let docker = engine.client();
    let name = gateway_name(&spec.store);
    let image_id = match docker.inspect_image(&spec.image).await {
        Ok(image) => image.id.unwrap_or_default(),
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => return Err(DockerError::MissingGatewayImage(spec.image.clone())),
        Err(e) => return Err(api("inspect the gateway image")(e)),
    };
    let mut body = container_body(spec);
    let config = config_hash(&image_id, &body);
    body.labels = Some(HashMap::from([
        (LABEL_OWNER.to_string(), "true".to_string()),
        (LABEL_STORE.to_string(), spec.store.clone()),
        (LABEL_ROLE.to_string(), GATEWAY_ROLE.to_string()),
        (LABEL_CONFIG.to_string(), config.clone()),
    ]));

    let id = match inspect(engine, &name).await? {
        Some(existing) if label(&existing, LABEL_STORE) != Some(spec.store.as_str()) => {
            return Err(DockerError::Api {
                action: "create the egress gateway".into(),
                message: format!("a container named {name} exists that is not this store's"),
            });
        }
        // Also one just created (by another replica, which is about to start it; or which died
        // before it did: starting it again is harmless).
        Some(existing)
            if label(&existing, LABEL_CONFIG) == Some(config.as_str())
                && matches!(
                    status(&existing),
                    Some(
                        ContainerStateStatusEnum::CREATED
                            | ContainerStateStatusEnum::RUNNING
                            | ContainerStateStatusEnum::RESTARTING
                    )
                ) =>
        {
            let created = status(&existing) == Some(ContainerStateStatusEnum::CREATED);
            let id = existing.id.unwrap_or_default();
            if created {
                start(engine, &id).await?;
            }
            id
        }
        Some(existing) => {
            info!(gateway = %name, "replacing the egress gateway: its configuration changed or it stopped");
            let old = existing.id.unwrap_or_default();
            match docker
                .remove_container(
                    &old,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await
            {
                Ok(())
                | Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(api("remove the old egress gateway")(e)),
            }
            create(engine, spec, &name, body).await?
        }
        None => create(engine, spec, &name, body).await?,
    };
    let ready = wait_ready(engine, &id, &name, spec).await?;
    connect_missing(engine, &spec.store, &id, &ready).await;
    Ok(Gateway { id, name })
}

/// Create and start the gateway; the id of the one another replica created first if it won.
async fn create(
    engine: &Engine,
    spec: &GatewaySpec,
    name: &str,
    body: ContainerCreateBody,
) -> Result<String, DockerError> {
    let docker = engine.client();
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            body,
        )
        .await;
    let id = match created {
        Ok(created) => created.id,
        Err(BollardError::DockerResponseServerError {
            status_code: 409, ..
        }) => {
            // Another replica is creating it: use that one (it connects and starts it). The
            // engine reserves the name before the container can be inspected.
            for _ in 0..50 {
                if let Some(c) = inspect(engine, name).await? {
                    return Ok(c.id.unwrap_or_default());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Err(DockerError::GatewayMissing(name.to_string()));
        }
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => return Err(DockerError::MissingGatewayImage(spec.image.clone())),
        Err(e) => return Err(api("create the egress gateway")(e)),
    };
    info!(gateway = %name, "created the egress gateway");
    // Connected before it starts, so it serves every running task as soon as it is up.
    let bare = ContainerInspectResponse::default();
    connect_missing(engine, &spec.store, &id, &bare).await;
    start(engine, &id).await?;
    Ok(id)
}

/// Start the gateway; already started is fine.
async fn start(engine: &Engine, id: &str) -> Result<(), DockerError> {
    match engine.client().start_container(id, None).await {
        Ok(())
        | Err(BollardError::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(e) => Err(api("start the egress gateway")(e)),
    }
}

/// Connect the gateway to every task network of the store it is not on yet. A network that
/// cannot be joined is logged (its task's agent has no way out) and left for the next call.
async fn connect_missing(
    engine: &Engine,
    store: &str,
    gateway: &str,
    inspected: &ContainerInspectResponse,
) {
    let networks = match task_networks(engine, Some(store), None).await {
        Ok(networks) => networks,
        Err(e) => {
            warn!(error = %e, "listing the task networks for the egress gateway failed");
            return;
        }
    };
    let joined = inspected
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref());
    for network in networks {
        if joined.is_some_and(|j| j.contains_key(&network.name)) {
            continue;
        }
        match connect_as_gateway(engine, gateway, &network.name).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => {
                warn!(network = %network.name, error = %e, "connecting the egress gateway to a task network failed");
            }
        }
    }
}

/// Wait until the gateway runs and, when the engine checks its health, is healthy.
async fn wait_ready(
    engine: &Engine,
    id: &str,
    name: &str,
    spec: &GatewaySpec,
) -> Result<ContainerInspectResponse, DockerError> {
    let started = Instant::now();
    loop {
        let Some(c) = inspect(engine, id).await? else {
            return Err(DockerError::GatewayMissing(name.to_string()));
        };
        let state = c.state.clone().unwrap_or_default();
        let health = state.health.as_ref().and_then(|h| h.status);
        let running = state.running == Some(true) && state.restarting != Some(true);
        let healthy = matches!(
            health,
            None | Some(
                HealthStatusEnum::EMPTY | HealthStatusEnum::NONE | HealthStatusEnum::HEALTHY
            )
        );
        if running && healthy {
            return Ok(c);
        }
        if started.elapsed() >= spec.ready_timeout {
            return Err(DockerError::GatewayNotReady {
                name: name.to_string(),
                waited_secs: started.elapsed().as_secs(),
                state: redact(&describe(&state), &spec.env),
                logs: redact(&last_logs(engine, id).await, &spec.env),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The container's state in a few words, with its last health check's output.
fn describe(state: &ContainerState) -> String {
    let mut words = vec![format!(
        "status {}",
        state
            .status
            .map_or("unknown".to_string(), |s| s.to_string())
    )];
    if let Some(code) = state.exit_code.filter(|c| *c != 0) {
        words.push(format!("exit code {code}"));
    }
    if let Some(error) = state.error.as_ref().filter(|e| !e.is_empty()) {
        words.push(format!("error {error:?}"));
    }
    if let Some(health) = &state.health {
        if let Some(status) = health.status {
            words.push(format!("health {status}"));
        }
        if let Some(output) = health
            .log
            .as_ref()
            .and_then(|l| l.last())
            .and_then(|r| r.output.as_ref())
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
        {
            words.push(format!("last health check: {output:?}"));
        }
    }
    words.join(", ")
}

/// The last lines the container printed (stdout and stderr).
async fn last_logs(engine: &Engine, id: &str) -> String {
    let logs = engine.client().logs(
        id,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: LOG_LINES.into(),
            ..Default::default()
        }),
    );
    let collect = logs
        .take_while(|chunk| std::future::ready(chunk.is_ok()))
        .filter_map(|chunk| std::future::ready(chunk.ok()))
        .map(|chunk| String::from_utf8_lossy(&chunk.into_bytes()).into_owned())
        .collect::<Vec<String>>();
    match tokio::time::timeout(Duration::from_secs(2), collect).await {
        Ok(lines) if lines.is_empty() => "(none)".into(),
        Ok(lines) => lines.concat().trim_end().to_string(),
        Err(_) => "(reading them timed out)".into(),
    }
}

/// `text` with every value of `env` long enough to be a secret masked.
fn redact(text: &str, env: &[String]) -> String {
    let mut text = text.to_string();
    for value in env.iter().filter_map(|e| e.split_once('=').map(|(_, v)| v)) {
        if value.len() >= 8 {
            text = text.replace(value, "[redacted]");
        }
    }
    text
}

async fn inspect(
    engine: &Engine,
    name: &str,
) -> Result<Option<ContainerInspectResponse>, DockerError> {
    match engine.client().inspect_container(name, None).await {
        Ok(c) => Ok(Some(c)),
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(api("inspect the egress gateway")(e)),
    }
}

fn label<'a>(c: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    c.config
        .as_ref()?
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn status(c: &ContainerInspectResponse) -> Option<ContainerStateStatusEnum> {
    c.state.as_ref()?.status
}

/// The gateway's container, its labels aside.
fn container_body(spec: &GatewaySpec) -> ContainerCreateBody {
    const SECOND: i64 = 1_000_000_000;
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.cmd.clone()),
        env: Some(spec.env.clone()),
        user: Some(GATEWAY_USER.into()),
        healthcheck: spec.healthcheck.as_ref().map(|test| HealthConfig {
            test: Some(test.clone()),
            interval: Some(2 * SECOND),
            timeout: Some(2 * SECOND),
            retries: Some(3),
            start_period: Some(SECOND),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            memory: Some(GATEWAY_MEMORY),
            memory_swap: Some(GATEWAY_MEMORY),
            pids_limit: Some(GATEWAY_PIDS),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                GATEWAY_TMPFS.0.to_string(),
                GATEWAY_TMPFS.1.to_string(),
            )])),
            // It relays at the application level only: never as a router between the task
            // networks and the egress network, whatever route an agent might find.
            sysctls: Some(HashMap::from([(
                "net.ipv4.ip_forward".to_string(),
                "0".to_string(),
            )])),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(spec.egress_network.clone()),
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// 16 hex digits of a hash of the image (by id, so a rebuilt tag counts as a change) and the
/// container's whole configuration.
fn config_hash(image_id: &str, body: &ContainerCreateBody) -> String {
    let mut hasher = Sha256::new();
    hasher.update(image_id.as_bytes());
    hasher.update(b"\n");
    // Through a `Value`, whose maps are sorted: the same settings always hash the same.
    let canonical = serde_json::to_value(body).expect("a container body serializes");
    hasher.update(canonical.to_string().as_bytes());
    hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_shows_no_secret() {
        let spec = GatewaySpec::new(
            "0123456789abcdef",
            "img",
            vec!["AMP_API_KEY=sgamp_secret_value".into(), "AMP_URL=x".into()],
        );
        let shown = format!("{spec:?}");
        assert!(!shown.contains("sgamp_secret_value"), "{shown}");
        assert!(shown.contains("AMP_API_KEY"), "{shown}");
        assert_eq!(
            redact("key sgamp_secret_value here", &spec.env),
            "key [redacted] here"
        );
    }

    #[test]
    fn the_config_hash_follows_every_setting() {
        let spec = GatewaySpec::new("s", "img", vec!["A=1".into()]);
        let base = config_hash("sha256:1", &container_body(&spec));
        assert_eq!(base, config_hash("sha256:1", &container_body(&spec)));
        assert_ne!(base, config_hash("sha256:2", &container_body(&spec)));
        let mut other = spec.clone();
        other.env = vec!["A=2".into()];
        assert_ne!(base, config_hash("sha256:1", &container_body(&other)));
        let mut other = spec.clone();
        other.egress_network = "egress".into();
        assert_ne!(base, config_hash("sha256:1", &container_body(&other)));
    }

    #[test]
    fn gateway_names_are_short_and_safe() {
        assert_eq!(
            gateway_name("0123456789abcdef"),
            "amp-gateway-0123456789abcdef"
        );
        assert_eq!(gateway_name("a/b c-d"), "amp-gateway-abcd");
    }
}
