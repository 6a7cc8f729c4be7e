//! Benchmark (not a test: run it with `./scripts/bench-task-start.sh`): time from a webhook's
//! arrival to the agent process starting, split into the service's own time and Docker's, and the
//! memory the service holds per running task. Real service, Docker and git; GitHub simulated.

mod common;

use amp_orchestrator::domain::TaskState;
use std::time::Duration;

use amp_orchestrator::entities::{delivery, task};
use common::github_sim::GitHubSim;
use common::service::{SECRET, test_env};
use common::{Backend, TestDb, TestService, eventually};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

const FILES: &[(&str, &str)] = &[
    ("README.md", "# widgets\n"),
    (".amp-stub/hold.sh", "sleep 600\n"),
];

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn event_at(
    conn: &sea_orm::DatabaseConnection,
    task_id: amp_orchestrator::domain::TaskId,
    needle: &str,
) -> Option<i64> {
    common::task_events(conn, task_id)
        .await
        .into_iter()
        .find(|e| e.data.contains(needle))
        .map(|e| e.created_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: ./scripts/bench-task-start.sh"]
async fn task_start_latency_and_memory() {
    let tasks: usize = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let db = TestDb::new(Backend::Sqlite).await;
    let sim = GitHubSim::start(SECRET).await;
    let repo = sim.add_repo_with_files("octo-org/widgets", 77, &[("writer", "write")], FILES);
    let mut env = test_env(&db);
    env.extend(sim.service_env());
    env.insert(
        "AGENT_IMAGE".into(),
        std::env::var("TEST_AGENT_IMAGE").unwrap(),
    );
    // The agent in the sandbox (the default) unless BENCH_EGRESS=open; the git helpers (and an
    // agent without the sandbox) reach the simulator on loopback.
    env.insert("AGENT_NETWORK".into(), "host".into());
    env.insert("GIT_NETWORK".into(), "host".into());
    env.insert(
        "AGENT_EGRESS".into(),
        std::env::var("BENCH_EGRESS").unwrap_or_else(|_| "proxy".into()),
    );
    env.insert(
        "GATEWAY_IMAGE".into(),
        std::env::var("TEST_GATEWAY_IMAGE").unwrap(),
    );
    env.insert("AMP_API_KEY".into(), "sgamp_bench_key_0123456789".into());
    env.insert("MAX_CONCURRENT_TASKS".into(), tasks.to_string());
    let service =
        TestService::start_full(env, amp_orchestrator::context::Tunables::default()).await;
    sim.deliver_to(&service.base);
    let conn = db.connect().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kib();

    let mut total = Vec::new();
    let mut service_ms = Vec::new();
    let mut docker_ms = Vec::new();
    for i in 0..tasks {
        let issue = 100 + i as i64;
        let (_, delivery_id) = sim.comment(&repo, issue, "writer", "/amp hold").await;
        let t = eventually(60, "the agent starts", || async {
            let t = task::Entity::find()
                .filter(task::Column::IssueNumber.eq(issue))
                .one(&conn)
                .await
                .unwrap()?;
            event_at(&conn, t.id, "\"type\":\"init\"").await.map(|_| t)
        })
        .await;
        let received = delivery::Entity::find()
            .filter(delivery::Column::DeliveryId.eq(delivery_id.as_str()))
            .one(&conn)
            .await
            .unwrap()
            .unwrap()
            .received_at;
        let container = event_at(&conn, t.id, "Starting the agent container")
            .await
            .unwrap();
        let agent = event_at(&conn, t.id, "\"type\":\"init\"").await.unwrap();
        total.push((agent - received) as f64);
        docker_ms.push((agent - container) as f64);
        service_ms.push((container - received) as f64);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_running = rss_kib();
    for s in [&mut total, &mut service_ms, &mut docker_ms] {
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!();
    println!("task start, {tasks} tasks, one at a time, small repository, image present:");
    println!("| | p50 ms | p95 ms |");
    println!("|---|---:|---:|");
    for (name, s) in [
        ("webhook received → agent process started", &total),
        ("service: webhook → container requested", &service_ms),
        (
            "Docker and git: container start, clone, agent exec",
            &docker_ms,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} |",
            common::percentile(s, 50.0),
            common::percentile(s, 95.0)
        );
    }
    println!(
        "memory: {} KiB idle, {} KiB with {tasks} tasks running: {:.0} KiB per running task",
        rss_idle,
        rss_running,
        (rss_running.saturating_sub(rss_idle)) as f64 / tasks as f64
    );
    for issue in 0..tasks {
        sim.comment(&repo, 100 + issue as i64, "writer", "/amp stop")
            .await;
    }
    eventually(120, "all tasks stopped", || async {
        let all = task::Entity::find().all(&conn).await.unwrap();
        all.iter()
            .all(|t| t.state == TaskState::Cancelled)
            .then_some(())
    })
    .await;
    drop(service);
}
