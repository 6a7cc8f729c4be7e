//! The sandbox as the service runs it (`AGENT_EGRESS` `proxy` or `none`): the store's gateway
//! kept running with the service's settings, agents started on their task networks, the
//! credentials a turn's processes get in place of the Amp key, and what the gateway refused.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::{Gateway, GatewaySpec, SandboxedAgent, SubnetPool, ensure_gateway, gateway_image};
use crate::config::{Config, EgressMode};
use crate::docker::{ContainerSpec, DockerError, Engine, api};
use crate::domain::BlockedEgress;
use crate::gateway::credential;
use crate::sandbox::GATEWAY_ALIAS;

/// The port the gateway serves agents on (relay and proxy).
const GATEWAY_PORT: u16 = 3128;
/// A gateway found running is trusted for this long before it is looked at again.
const GATEWAY_CHECKED_FOR: Duration = Duration::from_secs(5);

/// The sandbox's settings and the store's gateway, shared by every run of this replica.
pub struct Sandbox {
    mode: EgressMode,
    store: String,
    amp_key: SecretString,
    /// `KEY=value` for the gateway container (with the real Amp key).
    gateway_env: Vec<String>,
    gateway_image: Option<String>,
    egress_network: String,
    /// `name:address` for the gateway's `/etc/hosts`.
    extra_hosts: Vec<String>,
    pool: SubnetPool,
    /// The gateway last found ready, and when.
    ready: Mutex<Option<(Instant, Gateway)>>,
}

impl Sandbox {
    /// The sandbox `config` asks for; `None` with `AGENT_EGRESS=open` or without an Amp key (no
    /// task runs without one).
    pub fn new(config: &Config, store: &str) -> Option<Arc<Sandbox>> {
        let egress = &config.egress;
        if !egress.mode.is_sandboxed() {
            return None;
        }
        let amp_key = config.amp_api_key.clone()?;
        let mut gateway_env = vec![
            format!("AMP_API_KEY={}", amp_key.expose_secret()),
            format!("GATEWAY_ALLOW={}", egress.allow.join(",")),
            format!("GATEWAY_ALLOW_NETWORKS={}", egress.allow_networks.join(",")),
            "LOG_FORMAT=json".to_string(),
        ];
        if let Some(url) = &config.amp_url {
            gateway_env.push(format!("AMP_URL={url}"));
        }
        let pool = egress.subnets;
        Some(Arc::new(Sandbox {
            mode: egress.mode,
            store: store.to_string(),
            amp_key,
            gateway_env,
            gateway_image: egress.gateway_image.clone(),
            egress_network: egress.gateway_network.clone(),
            extra_hosts: egress
                .hosts
                .iter()
                .map(|(name, addr)| format!("{name}:{addr}"))
                .collect(),
            pool,
            ready: Mutex::new(None),
        }))
    }

    /// The store's gateway, running with this service's settings (created or replaced when it
    /// is not; its image built from this binary when missing).
    pub async fn gateway(&self, engine: &Engine) -> Result<Gateway, DockerError> {
        let mut ready = self.ready.lock().await;
        if let Some((at, gateway)) = ready.as_ref()
            && at.elapsed() < GATEWAY_CHECKED_FOR
        {
            return Ok(gateway.clone());
        }
        let image = gateway_image(
            engine,
            Path::new("/proc/self/exe"),
            self.gateway_image.as_deref(),
        )
        .await?;
        let mut spec = GatewaySpec::new(&self.store, image, self.gateway_env.clone());
        spec.egress_network = self.egress_network.clone();
        spec.extra_hosts = self.extra_hosts.clone();
        let gateway = ensure_gateway(engine, &spec).await?;
        *ready = Some((Instant::now(), gateway.clone()));
        Ok(gateway)
    }

    /// Start a task's agent container on its own network, the gateway its only neighbour, with
    /// `beside` run on the new workspace volume meanwhile (see [`super::start_agent_beside`]).
    pub async fn start_agent_beside<T, Fut>(
        &self,
        engine: &Engine,
        spec: &ContainerSpec,
        beside: impl FnOnce(String) -> Fut,
    ) -> Result<(SandboxedAgent, T), DockerError>
    where
        Fut: std::future::Future<Output = T>,
    {
        self.gateway(engine).await?;
        super::start_agent_beside(engine, spec, &self.pool, beside).await
    }

    /// The environment of a turn of the agent at `ip`: a credential for `task` valid until
    /// `until` in place of the Amp key (carrying `allow`, the hosts the task's repository adds
    /// to the proxy's allowlist), the relay as the Amp server and, in `proxy` mode, the gateway
    /// as the HTTP(S) proxy.
    pub fn agent_env(
        &self,
        task: &str,
        ip: Ipv4Addr,
        until: SystemTime,
        allow: &[String],
    ) -> Vec<String> {
        let token =
            credential::mint_allowing(self.amp_key.expose_secret(), task, until, ip.into(), allow);
        let gateway = format!("{GATEWAY_ALIAS}:{GATEWAY_PORT}");
        let mut env = vec![
            format!("AMP_API_KEY={token}"),
            format!("AMP_URL=http://{gateway}"),
            format!("NO_PROXY={GATEWAY_ALIAS}"),
            format!("no_proxy={GATEWAY_ALIAS}"),
        ];
        if self.mode == EgressMode::Proxy {
            let proxy = format!("http://amp:{token}@{gateway}");
            for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                env.push(format!("{name}={proxy}"));
            }
        }
        env
    }

    /// The connections the gateway refused for `task` so far (empty when it cannot say).
    pub async fn blocked(&self, engine: &Engine, task: &str) -> Vec<BlockedEgress> {
        match self.ask_gateway(engine, &format!("/blocked?task={task}")).await {
            Ok(body) => serde_json::from_str(&body).unwrap_or_else(|e| {
                tracing::warn!(task, error = %e, "the gateway's list of refused connections is unreadable");
                Vec::new()
            }),
            Err(e) => {
                tracing::warn!(task, error = %e, "asking the gateway what it refused failed");
                Vec::new()
            }
        }
    }

    /// `GET path` on the gateway's control port, from inside its container.
    async fn ask_gateway(&self, engine: &Engine, path: &str) -> Result<String, DockerError> {
        let gateway = self.gateway(engine).await?;
        let docker = engine.client();
        let exec = docker
            .create_exec(
                &gateway.id,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(vec![
                        super::image::IMAGE_BINARY.to_string(),
                        "gateway-probe".into(),
                        path.into(),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .map_err(api("ask the gateway"))?;
        let mut out = String::new();
        if let StartExecResults::Attached { mut output, .. } = docker
            .start_exec(&exec.id, None)
            .await
            .map_err(api("ask the gateway"))?
        {
            while let Some(chunk) = output.next().await {
                if let Ok(LogOutput::StdOut { message }) = chunk {
                    out.push_str(&String::from_utf8_lossy(&message));
                }
                if out.len() > 1 << 20 {
                    break;
                }
            }
        }
        Ok(out)
    }
}
