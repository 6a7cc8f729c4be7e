//! Benchmark (not a test: run it with `./scripts/bench-replicas.sh`): a burst of tasks (200 by
//! default, `BENCH_TASKS`) against one `serve` process, then against two on the same
//! PostgreSQL, with the webhooks spread over the replicas in turn. Reports tasks completed per
//! minute and the time from the comment's webhook being sent to the agent starting (p50/p95).
//! Real processes, PostgreSQL, Docker and git, the stub agent; GitHub simulated.

mod common;

use amp_orchestrator::domain::TaskState;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use amp_orchestrator::entities::{task, task_event};
use common::github_sim::GitHubSim;
use common::process::ServiceProcess;
use common::service::SECRET;
use common::story::service_env;
use common::{Backend, TestDb, eventually};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

fn now_ms() -> i64 {
    amp_orchestrator::db::now_ms()
}

struct Run {
    replicas: usize,
    tasks: usize,
    per_minute: f64,
    start_p50: f64,
    start_p95: f64,
    wall: Duration,
}

async fn burst(replicas: usize, tasks: usize, concurrency: &str) -> Run {
    let db = TestDb::new(Backend::Postgres).await;
    let sim = GitHubSim::start(SECRET).await;
    let repo = sim.add_repo("octo-org/widgets", 77, &[("writer", "write")]);
    let mut env = service_env(&db, &sim, &[("MAX_CONCURRENT_TASKS", concurrency)]);
    env.remove("HOST");
    env.remove("PORT");
    let env: Vec<(String, String)> = env.into_iter().collect();
    let mut processes = Vec::new();
    for _ in 0..replicas {
        processes.push(ServiceProcess::start(&env).await);
    }
    let bases: Vec<&str> = processes.iter().map(|p| p.base.as_str()).collect();
    sim.deliver_round_robin(&bases);
    let conn = db.connect().await;

    let started = Instant::now();
    let mut sent: HashMap<i64, i64> = HashMap::new();
    for i in 0..tasks {
        let issue = 1000 + i as i64;
        sent.insert(issue, now_ms());
        sim.comment(&repo, issue, "writer", "/amp report on the readme")
            .await;
    }
    let finished = eventually(1800, "every task is over", || async {
        let all = task::Entity::find().all(&conn).await.unwrap();
        (all.len() == tasks && all.iter().all(|t| t.state == TaskState::Succeeded)).then_some(all)
    })
    .await;
    let wall = started.elapsed();

    let mut to_agent = Vec::new();
    for t in &finished {
        let init = task_event::Entity::find()
            .filter(task_event::Column::TaskId.eq(t.id))
            .all(&conn)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.data.contains("\"type\":\"init\""))
            .map(|e| e.created_at)
            .expect("the agent started");
        to_agent.push((init - sent[&t.issue_number]) as f64);
    }
    to_agent.sort_by(|a, b| a.partial_cmp(b).unwrap());
    drop(processes);
    Run {
        replicas,
        tasks,
        per_minute: tasks as f64 / wall.as_secs_f64() * 60.0,
        start_p50: common::percentile(&to_agent, 50.0),
        start_p95: common::percentile(&to_agent, 95.0),
        wall,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: ./scripts/bench-replicas.sh"]
async fn burst_of_tasks_on_one_and_two_replicas() {
    let tasks: usize = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let concurrency = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "4".into());
    let one = burst(1, tasks, &concurrency).await;
    let two = burst(2, tasks, &concurrency).await;
    println!();
    println!(
        "{tasks} tasks in a burst, MAX_CONCURRENT_TASKS={concurrency} per replica, PostgreSQL, stub agent:"
    );
    println!("| replicas | wall s | tasks/min | comment → agent start p50 s | p95 s |");
    println!("|---:|---:|---:|---:|---:|");
    for run in [&one, &two] {
        println!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.1} |",
            run.replicas,
            run.wall.as_secs_f64(),
            run.per_minute,
            run.start_p50 / 1000.0,
            run.start_p95 / 1000.0
        );
        assert_eq!(run.tasks, tasks);
    }
    println!(
        "scaling 1 → 2 replicas on the same machine: {:.2}×",
        two.per_minute / one.per_minute
    );
}
