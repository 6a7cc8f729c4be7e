//! Task networks: one Docker network per task, on which the task's agent container sits alone
//! with the store's egress gateway (reachable as [`GATEWAY_ALIAS`]).
//!
//! A task network is `internal` (no route out) with `com.docker.network.bridge.inhibit_ipv4`
//! (the host's side of the bridge gets no address, so the agent cannot reach the host either:
//! neither the bridge's gateway address nor any other address of the host). Containers on it still
//! reach each other and Docker's embedded DNS. Docker's default address pools hold only about 30
//! bridge networks, so every task network gets an explicit /28 out of a [`SubnetPool`].
//!
//! This module owns creating such a network, connecting the gateway to it, finding the networks
//! of a store and removing one (the gateway disconnected first). [`crate::docker::Engine::remove`]
//! and [`crate::docker::Engine::owned`] use it, so a task's network goes with its container and
//! orphaned networks are swept with orphaned containers.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest,
};
use bollard::query_parameters::ListNetworksOptions;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::gateway::gateway_name;
use crate::docker::{
    ContainerSpec, DockerError, Engine, LABEL_OWNER, LABEL_STORE, LABEL_TASK, api,
    container_name_base, labels,
};

/// The name the gateway answers to on every task network.
pub const GATEWAY_ALIAS: &str = "amp-gateway";
/// Where task networks' subnets come from unless configured otherwise.
pub const DEFAULT_SUBNET_POOL: &str = "10.213.0.0/16";
/// Every task network is a /28: room for the agent, the gateway and a few spare addresses.
pub const TASK_SUBNET_PREFIX: u8 = 28;
/// How many consecutive /28s are tried before giving up.
const SUBNET_ATTEMPTS: u32 = 32;
const INHIBIT_IPV4: &str = "com.docker.network.bridge.inhibit_ipv4";
/// How long connecting the gateway waits for it to exist again (another replica replacing it).
const GATEWAY_PATIENCE: Duration = Duration::from_secs(3);

/// An IPv4 subnet, `a.b.c.d/n` with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Subnet {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a subnet like 10.213.0.0/16"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        if network != addr {
            return Err(format!(
                "{s:?} has host bits set (the subnet is {network}/{prefix})"
            ));
        }
        Ok(Subnet { addr, prefix })
    }
}

/// The range the /28 subnets of task networks are taken from (by default
/// [`DEFAULT_SUBNET_POOL`]). It must not overlap the host's own networks: traffic to a task
/// network's addresses goes to the task network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetPool(Subnet);

impl SubnetPool {
    pub fn new(range: Subnet) -> Result<SubnetPool, String> {
        if range.prefix > TASK_SUBNET_PREFIX {
            return Err(format!(
                "the task subnet pool {range} is smaller than one /{TASK_SUBNET_PREFIX}"
            ));
        }
        Ok(SubnetPool(range))
    }

    pub fn range(&self) -> Subnet {
        self.0
    }

    /// How many /28s the pool holds.
    pub fn slots(&self) -> u32 {
        1 << (TASK_SUBNET_PREFIX - self.0.prefix)
    }

    /// The `index`th /28 of the pool (counting round).
    pub fn nth(&self, index: u32) -> Subnet {
        let offset = (index % self.slots()) << (32 - u32::from(TASK_SUBNET_PREFIX));
        Subnet {
            addr: Ipv4Addr::from(u32::from(self.0.addr) + offset),
            prefix: TASK_SUBNET_PREFIX,
        }
    }

    /// The /28 a task tries first: spread by a hash of its id, so concurrent tasks (on any
    /// replica) rarely try the same one.
    pub fn first_for(&self, task: &str) -> u32 {
        let digest = Sha256::digest(task.as_bytes());
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % self.slots()
    }
}

impl Default for SubnetPool {
    fn default() -> SubnetPool {
        DEFAULT_SUBNET_POOL
            .parse()
            .expect("the default pool is valid")
    }
}

impl FromStr for SubnetPool {
    type Err = String;

    fn from_str(s: &str) -> Result<SubnetPool, String> {
        SubnetPool::new(s.parse()?)
    }
}

impl fmt::Display for SubnetPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A task's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskNetwork {
    pub name: String,
    pub id: String,
    pub subnet: Subnet,
}

/// A task network found on the engine.
#[derive(Debug, Clone)]
pub(crate) struct OwnedNetwork {
    pub name: String,
    pub id: String,
    pub task: String,
}

/// Create the task's network (labelled as the task's container is, see
/// [`crate::docker::LABEL_TASK`]) and connect the store's gateway to it as [`GATEWAY_ALIAS`].
/// Nothing is left behind if a step fails.
pub async fn create_task_network(
    engine: &Engine,
    spec: &ContainerSpec,
    pool: &SubnetPool,
) -> Result<TaskNetwork, DockerError> {
    let network = new_task_network(engine, spec, pool).await?;
    if let Err(e) = connect_gateway(engine, &spec.store, &network.name).await {
        remove_task_network(engine, &network.name).await;
        return Err(e);
    }
    Ok(network)
}

/// Create the network alone: the first free /28 from the task's place in the pool on.
pub(crate) async fn new_task_network(
    engine: &Engine,
    spec: &ContainerSpec,
    pool: &SubnetPool,
) -> Result<TaskNetwork, DockerError> {
    let name = format!(
        "{}-net-{:08x}",
        container_name_base(spec),
        rand::random::<u32>()
    );
    let first = pool.first_for(&spec.task);
    let attempts = SUBNET_ATTEMPTS.min(pool.slots());
    for i in 0..attempts {
        let subnet = pool.nth(first.wrapping_add(i));
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            internal: Some(true),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            options: Some(HashMap::from([(INHIBIT_IPV4.into(), "true".into())])),
            labels: Some(labels(spec)),
            ..Default::default()
        };
        match engine.client().create_network(request).await {
            Ok(created) => {
                return Ok(TaskNetwork {
                    name,
                    id: created.id,
                    subnet,
                });
            }
            Err(BollardError::DockerResponseServerError { message, .. })
                if message.contains("overlaps") => {}
            Err(e) => return Err(api("create the task network")(e)),
        }
    }
    Err(DockerError::NoFreeSubnet {
        pool: pool.to_string(),
        attempts,
    })
}

/// Connect the store's gateway container to `network` as [`GATEWAY_ALIAS`]. A gateway that is
/// missing or restarting for a moment (another replica replacing it) is waited for briefly; the
/// new one connects itself to every task network it finds.
pub(crate) async fn connect_gateway(
    engine: &Engine,
    store: &str,
    network: &str,
) -> Result<(), DockerError> {
    let gateway = gateway_name(store);
    let deadline = Instant::now() + GATEWAY_PATIENCE;
    loop {
        match connect_as_gateway(engine, &gateway, network).await {
            Ok(()) => return Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code,
                message,
            }) if (status_code == 409 || (status_code == 404 && message.contains("container")))
                && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) if message.contains("container") => {
                return Err(DockerError::GatewayMissing(gateway));
            }
            Err(e) => return Err(api("connect the egress gateway to the task network")(e)),
        }
    }
}

/// Attach `container` to `network` under [`GATEWAY_ALIAS`]; already attached is fine.
pub(crate) async fn connect_as_gateway(
    engine: &Engine,
    container: &str,
    network: &str,
) -> Result<(), BollardError> {
    let request = NetworkConnectRequest {
        container: container.to_string(),
        endpoint_config: Some(EndpointSettings {
            aliases: Some(vec![GATEWAY_ALIAS.into()]),
            ..Default::default()
        }),
    };
    match engine.client().connect_network(network, request).await {
        Err(BollardError::DockerResponseServerError { message, .. })
            if message.contains("already exists") =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The task networks of `store` (all stores when `None`), of `task` when given.
pub(crate) async fn task_networks(
    engine: &Engine,
    store: Option<&str>,
    task: Option<&str>,
) -> Result<Vec<OwnedNetwork>, DockerError> {
    let mut labels = vec![format!("{LABEL_OWNER}=true")];
    if let Some(store) = store {
        labels.push(format!("{LABEL_STORE}={store}"));
    }
    labels.push(match task {
        Some(task) => format!("{LABEL_TASK}={task}"),
        None => LABEL_TASK.to_string(),
    });
    let networks = engine
        .client()
        .list_networks(Some(ListNetworksOptions {
            filters: Some(HashMap::from([("label".to_string(), labels)])),
        }))
        .await
        .map_err(api("list networks"))?;
    Ok(networks
        .into_iter()
        .filter_map(|n| {
            let task = n.labels.as_ref()?.get(LABEL_TASK)?.clone();
            Some(OwnedNetwork {
                name: n.name?,
                id: n.id.unwrap_or_default(),
                task,
            })
        })
        .collect())
}

/// Remove a task network, disconnecting whatever is still attached (the gateway) first. Errors
/// are logged: a leftover is found again by [`crate::docker::Engine::owned`].
pub(crate) async fn remove_task_network(engine: &Engine, network: &str) {
    let docker = engine.client();
    for attempt in 1..=5 {
        let inspect = match docker.inspect_network(network, None).await {
            Ok(inspect) => inspect,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => return,
            Err(e) => {
                tracing::warn!(%network, error = %e, "inspecting the task network failed");
                return;
            }
        };
        for container in inspect.containers.unwrap_or_default().into_keys() {
            let request = NetworkDisconnectRequest {
                container,
                force: Some(true),
            };
            if let Err(e) = docker.disconnect_network(network, request).await {
                tracing::debug!(%network, error = %e, "disconnecting from the task network failed");
            }
        }
        match docker.remove_network(network).await {
            Ok(()) => return,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => return,
            // Something attached meanwhile (the gateway connecting itself): once more.
            Err(_) if attempt < 5 => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => tracing::warn!(%network, error = %e, "removing the task network failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_parse_and_hand_out_28s() {
        let pool: SubnetPool = "10.213.0.0/16".parse().unwrap();
        assert_eq!(pool.slots(), 4096);
        assert_eq!(pool.nth(0).to_string(), "10.213.0.0/28");
        assert_eq!(pool.nth(1).to_string(), "10.213.0.16/28");
        assert_eq!(pool.nth(4095).to_string(), "10.213.255.240/28");
        assert_eq!(pool.nth(4096), pool.nth(0), "counting round");
        assert_eq!(SubnetPool::default(), pool);
        let first = pool.first_for("task-a");
        assert_eq!(first, pool.first_for("task-a"));
        assert!(first < pool.slots());
        assert!(pool.nth(first).addr.octets()[..2] == [10, 213]);

        let one: SubnetPool = "192.168.7.32/28".parse().unwrap();
        assert_eq!(one.slots(), 1);
        assert_eq!(one.nth(5).to_string(), "192.168.7.32/28");

        for bad in [
            "10.213.0.1/16",
            "10.213.0.0/29",
            "10.213.0.0",
            "10.213.0/16",
            "x/8",
            "10.0.0.0/33",
        ] {
            assert!(bad.parse::<SubnetPool>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_subnet_contains_its_addresses_only() {
        let s: Subnet = "10.213.0.16/28".parse().unwrap();
        assert!(s.contains("10.213.0.16".parse().unwrap()));
        assert!(s.contains("10.213.0.31".parse().unwrap()));
        assert!(!s.contains("10.213.0.32".parse().unwrap()));
        assert!(!s.contains("10.213.0.15".parse().unwrap()));
    }
}
