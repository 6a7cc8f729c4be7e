//! The sandbox around a task's agent on the network: the agent container sits alone on its own
//! task network, whose only other member is the store's egress gateway (an allowlist proxy and a
//! relay to the Amp service holding the real key). The agent reaches nothing else: not the host,
//! not other tasks, not the outside.
//!
//! - [`network`] owns the task networks (internal, no host address, a /28 each out of a pool).
//! - [`gateway`] owns the gateway container (one per store, connected to every task network).
//! - [`image`] owns the gateway's image, built from this program's own binary.
//!
//! [`start_agent`] is what a worker calls to start a task's agent in its sandbox;
//! [`crate::docker::Engine::remove`] removes the agent container with its network, and
//! [`crate::docker::Engine::owned`] finds networks left behind. Git steps that hold a token run in
//! helper containers on the git network, never on a task network
//! ([`crate::docker::Engine::start_helper_container`]).

pub mod gateway;
pub mod image;
pub mod network;
pub mod runtime;

use std::net::Ipv4Addr;

use bollard::errors::Error as BollardError;

use crate::docker::{ContainerSpec, DockerError, Engine, TaskContainer, api};

pub use gateway::{Gateway, GatewaySpec, ensure_gateway, gateway_name};
pub use image::gateway_image;
pub use network::{
    DEFAULT_SUBNET_POOL, GATEWAY_ALIAS, Subnet, SubnetPool, TaskNetwork, create_task_network,
};
pub use runtime::Sandbox;

/// A task's agent container in its sandbox.
#[derive(Debug, Clone)]
pub struct SandboxedAgent {
    /// `container.network` is `network.name`: removing the container removes the network.
    pub container: TaskContainer,
    pub network: TaskNetwork,
    /// The agent's address on its task network, which the gateway sees its requests come from.
    pub ip: Ipv4Addr,
}

/// Start the task's agent container (as [`Engine::start_task_container`], `spec.network` aside)
/// on a new task network with the store's gateway connected (see [`ensure_gateway`], which must
/// have run). Nothing is left behind if a step fails.
pub async fn start_agent(
    engine: &Engine,
    spec: &ContainerSpec,
    pool: &SubnetPool,
) -> Result<SandboxedAgent, DockerError> {
    start_agent_beside(engine, spec, pool, |_| async {})
        .await
        .map(|(agent, ())| agent)
}

/// As [`start_agent`], with `beside` run on the new workspace volume (given its name) while the
/// network is made, the gateway joins it and the container starts: the clone fills the
/// workspace meanwhile. When starting fails, the volume goes once `beside` is done with it.
pub async fn start_agent_beside<T, Fut>(
    engine: &Engine,
    spec: &ContainerSpec,
    pool: &SubnetPool,
    beside: impl FnOnce(String) -> Fut,
) -> Result<(SandboxedAgent, T), DockerError>
where
    Fut: std::future::Future<Output = T>,
{
    // The volume first (it takes milliseconds); then nothing waits for anything else.
    let prepared = engine.prepare_task_container(spec).await?;
    let volume = prepared.volume().to_string();
    let start = async {
        let network = network::new_task_network(engine, spec, pool).await?;
        let (connected, started) = tokio::join!(
            network::connect_gateway(engine, &spec.store, &network.name),
            engine.launch_task_container(spec, prepared, Some(&network.name)),
        );
        let container = match (connected, started) {
            (Ok(()), Ok(container)) => container,
            (Err(e), Ok(container)) => {
                engine.remove(&container).await;
                return Err(e);
            }
            (_, Err(e)) => {
                network::remove_task_network(engine, &network.name).await;
                return Err(e);
            }
        };
        with_address(engine, container, network).await
    };
    let (started, beside) = tokio::join!(start, beside(volume.clone()));
    match started {
        Ok(agent) => Ok((agent, beside)),
        Err(e) => {
            engine.discard_volume(&volume).await;
            Err(e)
        }
    }
}

/// Start the task's agent container on `network`, made beforehand with
/// [`create_task_network`] (so that a worker can make it while it does other things). The
/// network is removed with the container, also if starting it fails.
pub async fn start_agent_on(
    engine: &Engine,
    spec: &ContainerSpec,
    network: TaskNetwork,
) -> Result<SandboxedAgent, DockerError> {
    match engine
        .start_task_container_on(spec, Some(&network.name))
        .await
    {
        Ok(container) => with_address(engine, container, network).await,
        Err(e) => {
            network::remove_task_network(engine, &network.name).await;
            Err(e)
        }
    }
}

/// The started agent with its address; removed if it has none.
async fn with_address(
    engine: &Engine,
    container: TaskContainer,
    network: TaskNetwork,
) -> Result<SandboxedAgent, DockerError> {
    match agent_ip(engine, &container).await {
        Ok(Some(ip)) => Ok(SandboxedAgent {
            container,
            network,
            ip,
        }),
        Ok(None) => {
            engine.remove(&container).await;
            Err(DockerError::Api {
                action: "start the agent container".into(),
                message: format!("it has no address on its network {}", network.name),
            })
        }
        Err(e) => {
            engine.remove(&container).await;
            Err(e)
        }
    }
}

/// The agent's address on its task network (`None` when it is not on one, or has no address):
/// for an agent found running after a restart.
pub async fn agent_ip(
    engine: &Engine,
    container: &TaskContainer,
) -> Result<Option<Ipv4Addr>, DockerError> {
    let Some(network) = &container.network else {
        return Ok(None);
    };
    let inspect = match engine.client().inspect_container(&container.id, None).await {
        Ok(inspect) => inspect,
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(None),
        Err(e) => return Err(api("inspect the agent container")(e)),
    };
    Ok(inspect
        .network_settings
        .and_then(|s| s.networks)
        .and_then(|mut n| n.remove(network))
        .and_then(|e| e.ip_address)
        .and_then(|ip| ip.parse().ok()))
}
