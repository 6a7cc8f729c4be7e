//! Benchmark (not a test: run it with `./scripts/bench-ci-round.sh`): time from a failing
//! `check_suite` webhook's arrival to the agent process starting on the failure report, in the
//! task's container. Real service, Docker and git; GitHub (and its CI) simulated. The job log
//! download from the simulator is measured and reported apart.

mod common;

use amp_orchestrator::domain::TaskState;
use std::time::Duration;

use amp_orchestrator::entities::{delivery, task, task_round};
use common::github_sim::GitHubSim;
use common::service::{SECRET, test_env};
use common::{Backend, TestDb, TestService, eventually};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

/// CI takes a second (as real CI takes longer still: the webhook finds the task waiting for it)
/// and fails on the agent's first change; on the report, the agent holds (so it is still running
/// when measured).
const FILES: &[(&str, &str)] = &[
    ("README.md", "# widgets\n"),
    (
        "ci.sh",
        "sleep 1; if [ -f count.txt ]; then echo '::error file=count.txt,line=1::count-is-wrong'; \
         for i in $(seq 1 2000); do echo \"log line $i\"; done; exit 1; fi\n",
    ),
    (".amp-stub/counter.sh", "echo 2 > count.txt\n"),
    (".amp-stub/count-is-wrong.sh", "sleep 600\n"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: ./scripts/bench-ci-round.sh"]
async fn ci_failure_to_agent_latency() {
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
    env.insert("AGENT_NETWORK".into(), "host".into());
    env.insert("GIT_NETWORK".into(), "host".into());
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

    let mut total = Vec::new();
    let mut decision = Vec::new();
    let mut download = Vec::new();
    let mut to_agent = Vec::new();
    let mut own = Vec::new();
    for i in 0..tasks {
        let issue = 200 + i as i64;
        sim.comment(&repo, issue, "writer", "/amp add the counter")
            .await;
        let (t, round) = eventually(120, "the round's agent starts", || async {
            let t = task::Entity::find()
                .filter(task::Column::IssueNumber.eq(issue))
                .one(&conn)
                .await
                .unwrap()?;
            let round = task_round::Entity::find()
                .filter(task_round::Column::TaskId.eq(t.id))
                .one(&conn)
                .await
                .unwrap()?;
            let inits = common::task_events(&conn, t.id)
                .await
                .into_iter()
                .filter(|e| e.data.contains("\"type\":\"init\""))
                .count();
            (inits == 2).then_some((t, round))
        })
        .await;
        // The failing suite's webhook: the one for the commit the round is about.
        let suite = sim
            .check_suites()
            .into_iter()
            .find(|s| Some(s.head_sha.as_str()) == round.head_sha.as_ref().map(|h| h.as_str()))
            .unwrap();
        let received = delivery::Entity::find()
            .filter(delivery::Column::Event.eq("check_suite"))
            .all(&conn)
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.status == "done")
            .map(|d| d.received_at)
            .filter(|at| *at >= t.created_at)
            .min()
            .unwrap();
        let events = common::task_events(&conn, t.id).await;
        let agent = events
            .iter()
            .filter(|e| e.data.contains("\"type\":\"init\""))
            .nth(1)
            .unwrap()
            .created_at;
        let timing: serde_json::Value = events
            .iter()
            .find(|e| e.data.contains("log_download_ms"))
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .unwrap();
        let log_ms = timing["log_download_ms"].as_f64().unwrap();
        total.push((agent - received) as f64);
        download.push(log_ms);
        own.push((agent - received) as f64 - log_ms);
        decision.push((round.created_at - received) as f64);
        to_agent.push((agent - round.created_at) as f64);
        assert!(suite.conclusion == "failure");
    }
    for s in [
        &mut total,
        &mut download,
        &mut own,
        &mut decision,
        &mut to_agent,
    ] {
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!();
    println!("CI failure → agent, {tasks} tasks, one at a time, a 2,000-line failing job log:");
    println!("| | p50 ms | p95 ms |");
    println!("|---|---:|---:|");
    for (name, s) in [
        (
            "failing check_suite webhook received → agent process started",
            &total,
        ),
        ("of which: job log download from the simulator", &download),
        (
            "service's own part (the above minus the log download)",
            &own,
        ),
        ("webhook → decision made and round stored", &decision),
        (
            "round stored → agent process started (claim, exec in the same container)",
            &to_agent,
        ),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} |",
            common::percentile(s, 50.0),
            common::percentile(s, 95.0)
        );
    }
    for i in 0..tasks {
        sim.comment(&repo, 200 + i as i64, "writer", "/amp stop")
            .await;
    }
    eventually(120, "all tasks stopped", || async {
        let all = task::Entity::find().all(&conn).await.unwrap();
        all.iter()
            .all(|t| t.state == TaskState::Cancelled)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(service);
}
