//! Benchmark (not a test: run it with `./scripts/bench-sandbox-start.sh`): what the sandbox adds
//! to a task's start on the real Docker engine. Per task, BENCH_TASKS times (default 10): a task
//! network with the gateway connected ([`create_task_network`]) and an agent started on it
//! ([`start_agent_on`]); a sandboxed agent, network,
//! gateway and container ([`start_agent`]); an agent in the open placement for comparison
//! ([`Engine::start_task_container`]); and removing a sandboxed agent with its network.

use std::time::{Duration, Instant};

use amp_orchestrator::docker::{ContainerSpec, Engine, LABEL_STORE};
use amp_orchestrator::sandbox::{
    GatewaySpec, SubnetPool, create_task_network, ensure_gateway, start_agent, start_agent_on,
};

fn spec(store: &str, network: &str) -> ContainerSpec {
    ContainerSpec {
        image: std::env::var("TEST_AGENT_IMAGE").expect("TEST_AGENT_IMAGE (the script sets it)"),
        helper_image: std::env::var("TEST_AGENT_IMAGE")
            .expect("TEST_AGENT_IMAGE (the script sets it)"),
        cli_volume: None,
        task: format!("bench-{:016x}", rand::random::<u64>()),
        instance_id: "bench".into(),
        store: store.to_string(),
        network: network.to_string(),
        git_network: "bridge".into(),
        memory_bytes: 512 * 1024 * 1024,
        nano_cpus: 1_000_000_000,
        pids_limit: 256,
        user: "1000:1000".into(),
    }
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = samples[(samples.len() - 1) / 2];
    let p95 = samples[((samples.len() as f64 * 0.95).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "{what:<58} p50 {:>6.1} ms  p95 {:>6.1} ms  max {:>6.1} ms  (n={})",
        ms(p50),
        ms(p95),
        ms(*samples.last().unwrap()),
        samples.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: ./scripts/bench-sandbox-start.sh"]
async fn bench_sandbox_start() {
    let tasks: usize = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let engine = Engine::connect(None).await.unwrap();
    let store = format!("{:016x}", rand::random::<u64>());
    let mut gateway = GatewaySpec::new(&store, std::env::var("TEST_AGENT_IMAGE").unwrap(), vec![]);
    gateway.cmd = vec!["sleep".into(), "infinity".into()];
    gateway.healthcheck = None;
    ensure_gateway(&engine, &gateway).await.unwrap();
    let pool: SubnetPool = "10.217.0.0/16".parse().unwrap();

    let (mut networks, mut agents, mut open, mut removals) = (vec![], vec![], vec![], vec![]);
    let mut on_network = vec![];
    for _ in 0..tasks {
        let started = Instant::now();
        let task = spec(&store, "none");
        let network = create_task_network(&engine, &task, &pool).await.unwrap();
        networks.push(started.elapsed());
        let started = Instant::now();
        let agent = start_agent_on(&engine, &task, network).await.unwrap();
        on_network.push(started.elapsed());
        engine.remove(&agent.container).await;

        let started = Instant::now();
        let agent = start_agent(&engine, &spec(&store, "none"), &pool)
            .await
            .unwrap();
        agents.push(started.elapsed());

        let started = Instant::now();
        let plain = engine
            .start_task_container(&spec(&store, "bridge"))
            .await
            .unwrap();
        open.push(started.elapsed());

        let started = Instant::now();
        engine.remove(&agent.container).await;
        removals.push(started.elapsed());
        engine.remove(&plain).await;
    }
    report("task network + gateway connected", networks);
    report(
        "agent on a task network made beforehand (+ its address)",
        on_network,
    );
    report(
        "sandboxed agent (network, gateway, container, its address)",
        agents,
    );
    report("agent in the open placement (bridge), for comparison", open);
    report("removing a sandboxed agent with its network", removals);

    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker ps -aq --filter label={LABEL_STORE}={store} | xargs -r docker rm -fv >/dev/null; \
             docker volume ls -q --filter label={LABEL_STORE}={store} | xargs -r docker volume rm -f >/dev/null; \
             docker network ls -q --filter label={LABEL_STORE}={store} | xargs -r docker network rm >/dev/null"
        ))
        .status();
}
