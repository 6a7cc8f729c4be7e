//! The sandbox on the real Docker engine (`src/sandbox`): task networks, the store's egress
//! gateway and its image. The stand-in gateway is the test agent image
//! (`scripts/build-test-agent-image.sh`) running `git daemon`; the only servers probed are the
//! test's own (containers, and a listener on the host side of a network the test creates).
//!
//! Every test works in a store of its own (a random store label) and removes what it made, also
//! when it fails (see [`Cleanup`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amp_orchestrator::docker::{
    ContainerSpec, DockerError, Engine, Exec, LABEL_OWNER, LABEL_STORE, LABEL_TASK, Output,
    TaskContainer,
};
use amp_orchestrator::sandbox::gateway::{
    GATEWAY_MEMORY, GATEWAY_PIDS, GATEWAY_USER, LABEL_CONFIG,
};
use amp_orchestrator::sandbox::{
    GATEWAY_ALIAS, Gateway, GatewaySpec, Subnet, SubnetPool, TaskNetwork, create_task_network,
    ensure_gateway, gateway_image, gateway_name, start_agent, start_agent_on,
};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Networks a test makes for itself (not the service's) carry this label, with the test's store.
const LABEL_TEST: &str = "io.amp-orchestrator.test";
/// What the test's host server says to whoever connects ...
const GREETING: &str = "amp-sandbox-test-server";
/// ... and what git makes of it.
const GREETING_SEEN: &str = "bad line length character: amp-";

fn test_image() -> String {
    std::env::var("TEST_AGENT_IMAGE").unwrap_or_else(|_| {
        panic!("TEST_AGENT_IMAGE is not set: run ./scripts/test.sh, which builds the test image")
    })
}

async fn engine() -> Engine {
    Engine::connect(None)
        .await
        .expect("the Docker engine is needed (./scripts/test.sh starts it)")
}

fn docker() -> Docker {
    Docker::connect_with_defaults().expect("the Docker engine")
}

/// A store label of its own, as production's (16 hex digits).
fn new_store() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A /24 of 10.215.0.0/16 for one test's task networks, so tests running at once rarely meet.
fn new_pool() -> SubnetPool {
    format!("10.215.{}.0/24", rand::random::<u8>())
        .parse()
        .unwrap()
}

fn agent_spec(store: &str, task: &str) -> ContainerSpec {
    ContainerSpec {
        image: test_image(),
        helper_image: test_image(),
        cli_volume: None,
        task: task.to_string(),
        instance_id: "sandbox-test".into(),
        store: store.to_string(),
        network: "none".into(),
        git_network: "none".into(),
        memory_bytes: 512 * 1024 * 1024,
        nano_cpus: 1_000_000_000,
        pids_limit: 256,
        user: "1000:1000".into(),
    }
}

fn new_task() -> String {
    format!("sandbox-test-{:016x}", rand::random::<u64>())
}

/// Removes every container and network of the test's store (and the networks the test made
/// itself), however the test ends.
struct Cleanup {
    stores: Vec<String>,
}

impl Cleanup {
    fn new(stores: &[&str]) -> Cleanup {
        Cleanup {
            stores: stores.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for store in &self.stores {
            let script = format!(
                "docker ps -aq --filter label={LABEL_STORE}={store} | xargs -r docker rm -fv >/dev/null; \
                 docker volume ls -q --filter label={LABEL_STORE}={store} | xargs -r docker volume rm -f >/dev/null; \
                 docker network ls -q --filter label={LABEL_STORE}={store} | xargs -r docker network rm >/dev/null; \
                 docker network ls -q --filter label={LABEL_TEST}={store} | xargs -r docker network rm >/dev/null; true"
            );
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .status();
        }
    }
}

/// A stand-in for the gateway: the test agent image serving a repository `r` over `git://` on
/// port 9418, locked down as the real one is.
fn stand_in(store: &str, egress: &str) -> GatewaySpec {
    let mut spec = GatewaySpec::new(
        store,
        test_image(),
        vec!["AMP_API_KEY=sgamp_stand_in_secret".into()],
    );
    spec.egress_network = egress.to_string();
    spec.cmd = vec![
        "sh".into(),
        "-c".into(),
        "set -e; export HOME=/tmp; git init -q /tmp/r; cd /tmp/r; \
         git -c user.name=t -c user.email=t@example.invalid commit -q --allow-empty -m first; \
         exec git daemon --export-all --base-path=/tmp --reuseaddr --listen=0.0.0.0 --port=9418"
            .into(),
    ];
    // Healthy once the daemon answers.
    spec.healthcheck = Some(
        ["CMD", "git", "ls-remote", "git://127.0.0.1/r"]
            .map(String::from)
            .to_vec(),
    );
    spec
}

/// An ordinary bridge network made by the test (labelled [`LABEL_TEST`]), with the host's address
/// on it (its `.1`).
async fn test_bridge(store: &str) -> (String, Ipv4Addr) {
    let docker = docker();
    let name = format!("amp-sandbox-test-egress-{:08x}", rand::random::<u32>());
    for _ in 0..32 {
        let subnet: Subnet = format!(
            "10.216.{}.{}/28",
            rand::random::<u8>(),
            rand::random::<u8>() & 0xf0
        )
        .parse()
        .unwrap();
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some([(LABEL_TEST.to_string(), store.to_string())].into()),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => {
                let host = Ipv4Addr::from(u32::from(subnet.addr) + 1);
                return (name, host);
            }
            Err(e) if e.to_string().contains("overlaps") => continue,
            Err(e) => panic!("creating the test's bridge failed: {e}"),
        }
    }
    panic!("no free subnet for the test's bridge")
}

/// A TCP server on `ip` that greets whoever connects and remembers who did.
async fn host_server(ip: Ipv4Addr) -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    // The bridge's address can lag its creation by a moment.
    let mut listener = None;
    for _ in 0..50 {
        match tokio::net::TcpListener::bind((ip, 0)).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let listener = listener.expect("binding on the test bridge's host address");
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = listener.accept().await {
            record.lock().unwrap().push(peer);
            tokio::spawn(async move {
                // Git's request first, so that git is reading when the greeting comes.
                let mut request = [0u8; 512];
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), stream.read(&mut request)).await;
                let _ = stream.write_all(format!("{GREETING}\n").as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn container(id: &str) -> TaskContainer {
    TaskContainer {
        id: id.to_string(),
        volume: String::new(),
        network: None,
    }
}

/// Run a shell script in a container; its exit code and all it printed.
async fn sh(engine: &Engine, c: &TaskContainer, script: &str) -> (Option<i64>, String) {
    let (tx, mut rx) = mpsc::channel(1024);
    let collect = tokio::spawn(async move {
        let mut all = String::new();
        while let Some(o) = rx.recv().await {
            match o {
                Output::Stdout(s) | Output::Stderr(s) => all.push_str(&s),
            }
        }
        all
    });
    let exec = Exec {
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    let code = engine.exec(c, exec, tx).await.unwrap();
    (code, collect.await.unwrap())
}

/// `git ls-remote url` from the container, given up after five seconds: what git printed.
async fn ls_remote(engine: &Engine, c: &TaskContainer, url: &str) -> String {
    let script = format!(
        "out=/tmp/probe.$$; git ls-remote '{url}' >$out 2>&1 & pid=$!; i=0; \
         while kill -0 $pid 2>/dev/null; do \
           i=$((i+1)); if [ $i -gt 50 ]; then kill -9 $pid; echo 'probe: no answer in 5s' >>$out; break; fi; \
           sleep 0.1; \
         done; cat $out; rm -f $out"
    );
    sh(engine, c, &script).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reaches_its_gateway_and_nothing_else() {
    let engine = engine().await;
    let store = new_store();
    let _cleanup = Cleanup::new(&[&store]);
    let (egress, host_ip) = test_bridge(&store).await;
    let (server, seen) = host_server(host_ip).await;
    let gateway = ensure_gateway(&engine, &stand_in(&store, &egress))
        .await
        .unwrap();
    let gateway_c = container(&gateway.id);
    let pool = new_pool();

    let a = start_agent(&engine, &agent_spec(&store, &new_task()), &pool)
        .await
        .unwrap();
    let b = start_agent(&engine, &agent_spec(&store, &new_task()), &pool)
        .await
        .unwrap();
    assert_ne!(a.network.subnet, b.network.subnet);
    assert!(a.network.subnet.contains(a.ip), "{a:?}");
    assert_eq!(
        a.container.network.as_deref(),
        Some(a.network.name.as_str())
    );

    // Another task's agent serves a repository of its own on its network.
    let (code, out) = sh(
        &engine,
        &b.container,
        "set -e; export HOME=/tmp; git init -q /workspace/b; cd /workspace/b; \
         git -c user.name=t -c user.email=t@example.invalid commit -q --allow-empty -m b; \
         git daemon --detach --export-all --base-path=/workspace --reuseaddr --listen=0.0.0.0 --port=9418",
    )
    .await;
    assert_eq!(code, Some(0), "{out}");

    // The agent reaches its gateway by name.
    let out = ls_remote(&engine, &a.container, &format!("git://{GATEWAY_ALIAS}/r")).await;
    assert!(out.contains("refs/heads/"), "the gateway answers: {out}");

    // It does not reach the host: not on the egress network's host address (where the test's
    // server listens) ...
    let url = format!("git://{server}/x");
    let out = ls_remote(&engine, &a.container, &url).await;
    assert!(
        !out.contains(GREETING_SEEN) && !out.contains("refs/"),
        "{out}"
    );
    // ... nor on its own network's gateway address, which the host does not hold.
    let own_gateway = Ipv4Addr::from(u32::from(a.network.subnet.addr) + 1);
    let out = ls_remote(
        &engine,
        &a.container,
        &format!("git://{own_gateway}:{}/x", server.port()),
    )
    .await;
    assert!(!out.contains(GREETING_SEEN), "{out}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the agent reached the host"
    );

    // It does not reach the other task's agent ...
    let b_repo = format!("git://{}/b", b.ip);
    let out = ls_remote(&engine, &a.container, &b_repo).await;
    assert!(!out.contains("refs/heads/"), "reached another task: {out}");
    // ... which the gateway, on both networks, does reach.
    let out = ls_remote(&engine, &gateway_c, &b_repo).await;
    assert!(out.contains("refs/heads/"), "{out}");

    // The gateway reaches the host's server on the egress network: the server works.
    let out = ls_remote(&engine, &gateway_c, &url).await;
    assert!(out.contains(GREETING_SEEN), "{out}");
    assert_eq!(seen.lock().unwrap().len(), 1);

    engine.remove(&a.container).await;
    engine.remove(&b.container).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_networks_take_free_subnets_from_the_pool() {
    let engine = engine().await;
    let store = new_store();
    let _cleanup = Cleanup::new(&[&store]);
    let mut spec = stand_in(&store, "bridge");
    spec.cmd = vec!["sleep".into(), "infinity".into()];
    spec.healthcheck = None;
    ensure_gateway(&engine, &spec).await.unwrap();
    let pool = new_pool();

    let one = create_task_network(&engine, &agent_spec(&store, &new_task()), &pool)
        .await
        .unwrap();
    let two = create_task_network(&engine, &agent_spec(&store, &new_task()), &pool)
        .await
        .unwrap();
    assert_ne!(one.subnet, two.subnet);
    for n in [&one, &two] {
        assert!(pool.range().contains(n.subnet.addr), "{n:?} in {pool}");
        assert_eq!(n.subnet.prefix, 28);
    }
    let inspect = docker().inspect_network(&one.name, None).await.unwrap();
    assert_eq!(inspect.internal, Some(true));
    assert_eq!(
        inspect
            .options
            .unwrap_or_default()
            .get("com.docker.network.bridge.inhibit_ipv4")
            .map(String::as_str),
        Some("true")
    );
    let labels = inspect.labels.unwrap_or_default();
    assert_eq!(labels.get(LABEL_STORE), Some(&store));
    assert_eq!(labels.get(LABEL_OWNER).map(String::as_str), Some("true"));
    assert!(labels.contains_key(LABEL_TASK));
    let gateway = gateway_name(&store);
    let attached = inspect.containers.unwrap_or_default();
    assert!(
        attached
            .values()
            .any(|e| e.name.as_deref() == Some(gateway.as_str())),
        "{attached:?}"
    );

    // The subnet a task would take first is in use: it takes the next (a task is picked whose
    // first two are free before the test takes the first).
    let in_use = subnets_in_use().await;
    let (task, first) = loop {
        let task = new_task();
        let first = pool.first_for(&task);
        if !in_use.contains(&pool.nth(first)) && !in_use.contains(&pool.nth(first + 1)) {
            break (task, first);
        }
    };
    let squatter = pool.nth(first);
    squat(&store, squatter).await;
    let moved = create_task_network(&engine, &agent_spec(&store, &task), &pool)
        .await
        .unwrap();
    assert_ne!(moved.subnet, squatter);
    assert_eq!(moved.subnet, pool.nth(first + 1), "{moved:?}");

    // A pool with no free /28 is a clear error, and leaves nothing.
    let full: SubnetPool = squatter.to_string().parse().unwrap();
    match create_task_network(&engine, &agent_spec(&store, &new_task()), &full).await {
        Err(e @ DockerError::NoFreeSubnet { .. }) => {
            assert!(e.to_string().contains(&squatter.to_string()), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let owned = engine.owned(Some(&store)).await.unwrap();
    assert_eq!(owned.len(), 3, "{owned:?}");
}

/// A network of the test's on `subnet`.
async fn squat(store: &str, subnet: Subnet) {
    let request = NetworkCreateRequest {
        name: format!("amp-sandbox-test-squat-{:08x}", rand::random::<u32>()),
        internal: Some(true),
        ipam: Some(Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        labels: Some([(LABEL_TEST.to_string(), store.to_string())].into()),
        ..Default::default()
    };
    docker().create_network(request).await.unwrap();
}

/// The subnets of every network on the engine.
async fn subnets_in_use() -> Vec<Subnet> {
    docker()
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
        .filter_map(|c| c.subnet?.parse().ok())
        .collect()
}

async fn network_exists(name: &str) -> bool {
    docker().inspect_network(name, None).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_network_goes_with_it_and_orphans_are_swept_per_store() {
    let engine = engine().await;
    let (store, other_store) = (new_store(), new_store());
    let _cleanup = Cleanup::new(&[&store, &other_store]);
    for s in [&store, &other_store] {
        let mut spec = stand_in(s, "bridge");
        spec.cmd = vec!["sleep".into(), "infinity".into()];
        spec.healthcheck = None;
        ensure_gateway(&engine, &spec).await.unwrap();
    }
    let pool = new_pool();

    let agent = start_agent(&engine, &agent_spec(&store, &new_task()), &pool)
        .await
        .unwrap();
    let owned = engine.owned(Some(&store)).await.unwrap();
    assert!(
        owned.iter().any(|(_, c)| *c == agent.container),
        "the agent with its volume and network: {owned:?}"
    );
    engine.remove(&agent.container).await;
    assert!(!network_exists(&agent.network.name).await);
    assert!(
        docker()
            .inspect_container(&agent.container.id, None)
            .await
            .is_err()
    );
    assert!(
        docker()
            .inspect_volume(&agent.container.volume)
            .await
            .is_err()
    );
    assert!(engine.owned(Some(&store)).await.unwrap().is_empty());

    // An agent started on a network made beforehand: the same; and one that cannot start
    // leaves no network behind.
    let task = agent_spec(&store, &new_task());
    let network = create_task_network(&engine, &task, &pool).await.unwrap();
    let agent = start_agent_on(&engine, &task, network.clone())
        .await
        .unwrap();
    assert!(network.subnet.contains(agent.ip));
    engine.remove(&agent.container).await;
    assert!(!network_exists(&network.name).await);
    let mut missing = agent_spec(&store, &new_task());
    missing.image = "amp-orchestrator-no-such-image:never".into();
    let network = create_task_network(&engine, &missing, &pool).await.unwrap();
    match start_agent_on(&engine, &missing, network.clone()).await {
        Err(DockerError::MissingImage(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(!network_exists(&network.name).await);
    match start_agent(&engine, &missing, &pool).await {
        Err(DockerError::MissingImage(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(engine.owned(Some(&store)).await.unwrap().is_empty());

    // A network left without its container (a crash between the two), in each store.
    let orphan_task = new_task();
    let orphan = create_task_network(&engine, &agent_spec(&store, &orphan_task), &pool)
        .await
        .unwrap();
    let other = create_task_network(&engine, &agent_spec(&other_store, &new_task()), &pool)
        .await
        .unwrap();
    let owned = engine.owned(Some(&store)).await.unwrap();
    assert_eq!(
        owned,
        vec![(
            orphan_task.clone(),
            TaskContainer {
                id: String::new(),
                volume: String::new(),
                network: Some(orphan.name.clone()),
            }
        )]
    );
    // What the reconciliation does with a task that is gone.
    for (_, c) in owned {
        engine.remove(&c).await;
    }
    assert!(!network_exists(&orphan.name).await);
    assert!(
        network_exists(&other.name).await,
        "another store's network stays"
    );
    let gateway = docker()
        .inspect_container(&gateway_name(&store), None)
        .await
        .unwrap();
    assert_eq!(
        gateway.state.unwrap().running,
        Some(true),
        "the gateway stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_is_reused_replaced_and_locked_down() {
    let engine = engine().await;
    let store = new_store();
    let _cleanup = Cleanup::new(&[&store]);
    let spec = stand_in(&store, "bridge");

    let first = ensure_gateway(&engine, &spec).await.unwrap();
    assert_eq!(first.name, gateway_name(&store));
    let again = ensure_gateway(&engine, &spec).await.unwrap();
    assert_eq!(first, again, "the same configuration keeps the container");

    let task_network = create_task_network(&engine, &agent_spec(&store, &new_task()), &new_pool())
        .await
        .unwrap();
    let mut changed = spec.clone();
    changed.env = vec!["AMP_API_KEY=sgamp_another_secret".into()];
    let replaced = ensure_gateway(&engine, &changed).await.unwrap();
    assert_ne!(replaced.id, first.id, "a new configuration replaces it");
    assert!(
        docker().inspect_container(&first.id, None).await.is_err(),
        "the old one is gone"
    );
    assert_joined(&replaced, &task_network).await;

    let c = docker()
        .inspect_container(&replaced.id, None)
        .await
        .unwrap();
    let config = c.config.unwrap();
    assert_eq!(config.user.as_deref(), Some(GATEWAY_USER));
    let labels = config.labels.unwrap();
    assert_eq!(labels.get(LABEL_STORE), Some(&store));
    assert!(labels.contains_key(LABEL_CONFIG));
    let host = c.host_config.unwrap();
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(
        host.security_opt
            .unwrap_or_default()
            .iter()
            .any(|o| o.starts_with("no-new-privileges"))
    );
    assert_eq!(host.memory, Some(GATEWAY_MEMORY));
    assert_eq!(host.pids_limit, Some(GATEWAY_PIDS));
    assert_eq!(
        host.restart_policy
            .and_then(|r| r.name)
            .map(|n| n.to_string()),
        Some("unless-stopped".to_string())
    );
    assert_eq!(host.network_mode.as_deref(), Some("bridge"));
    let (code, out) = sh(
        &engine,
        &container(&replaced.id),
        "id -u; cat /proc/sys/net/ipv4/ip_forward; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
         touch /x 2>&1 || echo read-only",
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("65534\n0\n"),
        "not root, not a router: {out}"
    );
    assert!(
        out.contains("0000000000000000") && out.contains("read-only"),
        "{out}"
    );
}

async fn assert_joined(gateway: &Gateway, network: &TaskNetwork) {
    let c = docker().inspect_container(&gateway.id, None).await.unwrap();
    let networks = c.network_settings.unwrap().networks.unwrap();
    let endpoint = networks
        .get(&network.name)
        .unwrap_or_else(|| panic!("the gateway is not on {}: {networks:?}", network.name));
    assert!(
        endpoint
            .aliases
            .as_ref()
            .is_some_and(|a| a.iter().any(|a| a == GATEWAY_ALIAS)),
        "{endpoint:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_share_one_gateway_and_a_broken_one_is_a_clear_error() {
    let engine = engine().await;
    let (store, broken_store) = (new_store(), new_store());
    let _cleanup = Cleanup::new(&[&store, &broken_store]);
    let spec = stand_in(&store, "bridge");
    let (one, two) = tokio::join!(
        ensure_gateway(&engine, &spec),
        ensure_gateway(&engine, &spec)
    );
    assert_eq!(one.unwrap(), two.unwrap());

    let mut broken = stand_in(&broken_store, "bridge");
    broken.cmd = vec![
        "sh".into(),
        "-c".into(),
        "echo starting with $AMP_API_KEY; echo cannot listen >&2; exit 3".into(),
    ];
    broken.ready_timeout = Duration::from_secs(3);
    match ensure_gateway(&engine, &broken).await {
        Err(e @ DockerError::GatewayNotReady { .. }) => {
            let text = e.to_string();
            assert!(text.contains("cannot listen"), "{text}");
            assert!(text.contains("starting with [redacted]"), "{text}");
            assert!(!text.contains("sgamp_stand_in_secret"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    match ensure_gateway(
        &engine,
        &GatewaySpec::new(
            &broken_store,
            "amp-orchestrator-no-such-image:never",
            vec![],
        ),
    )
    .await
    {
        Err(DockerError::MissingGatewayImage(image)) => {
            assert_eq!(image, "amp-orchestrator-no-such-image:never")
        }
        other => panic!("{other:?}"),
    }
}

/// The image built from the service's binary, once for all tests of this file.
async fn built_gateway_image(engine: &Engine) -> String {
    static IMAGE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    IMAGE
        .get_or_init(|| async {
            gateway_image(
                engine,
                Path::new(env!("CARGO_BIN_EXE_amp-orchestrator")),
                None,
            )
            .await
            .unwrap()
        })
        .await
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_image_runs_this_binary() {
    let engine = engine().await;
    let started = Instant::now();
    let image = built_gateway_image(&engine).await;
    eprintln!("gateway image {image} ready in {:?}", started.elapsed());
    assert!(image.starts_with("amp-orchestrator-gateway:"), "{image}");
    let id = docker().inspect_image(&image).await.unwrap().id;

    let out = run_once(&image, &["/amp-orchestrator", "--version"]).await;
    assert!(
        out.contains(&format!("amp-orchestrator {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );

    // Asked again: the same tag, not built again.
    let started = Instant::now();
    let binary = Path::new(env!("CARGO_BIN_EXE_amp-orchestrator"));
    let again = gateway_image(&engine, binary, None).await.unwrap();
    eprintln!("asked again: {:?}", started.elapsed());
    assert_eq!(again, image);
    assert_eq!(docker().inspect_image(&image).await.unwrap().id, id);

    // An image named by configuration is used as it is, and must exist.
    assert_eq!(
        gateway_image(&engine, binary, Some(&image)).await.unwrap(),
        image
    );
    match gateway_image(
        &engine,
        binary,
        Some("amp-orchestrator-no-such-image:never"),
    )
    .await
    {
        Err(DockerError::MissingGatewayImage(_)) => {}
        other => panic!("{other:?}"),
    }
}

/// Run `cmd` in a throwaway container of `image` (its own user, no network); what it printed.
async fn run_once(image: &str, cmd: &[&str]) -> String {
    let docker = docker();
    let name = format!("amp-sandbox-test-run-{:08x}", rand::random::<u32>());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        network_disabled: Some(true),
        host_config: Some(bollard::models::HostConfig {
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name),
                ..Default::default()
            }),
            body,
        )
        .await
        .unwrap()
        .id;
    docker.start_container(&id, None).await.unwrap();
    let _ = docker
        .wait_container(&id, None::<WaitContainerOptions>)
        .collect::<Vec<_>>()
        .await;
    let out: Vec<String> = docker
        .logs(
            &id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        )
        .map(|chunk| chunk.map(|c| c.to_string()).unwrap_or_default())
        .collect()
        .await;
    docker
        .remove_container(
            &id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    out.concat()
}
