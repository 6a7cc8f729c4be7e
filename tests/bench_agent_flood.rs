//! Benchmark (not a test: run it with `./scripts/bench-agent-flood.sh`): the service's peak
//! resident memory (`VmHWM`) while a task's agent floods its output, as one endless line on
//! stdout, on stderr, or as a million lines, one task at a time and four at once; with how the
//! task ended, how long the flood took and what its log kept. A quiet task (no flood) gives the
//! baseline. The real binary (release) as its own process, Docker, git and the stub agent;
//! GitHub simulated; SQLite, and PostgreSQL with `BENCH_BACKENDS=sqlite,postgres`.

mod common;

use std::time::{Duration, Instant};

use amp_orchestrator::domain::{AgentLine, EventKind, TaskState};
use amp_orchestrator::entities::task;
use common::github_sim::GitHubSim;
use common::process::ServiceProcess;
use common::service::SECRET;
use common::story::{assert_no_containers_for, service_env};
use common::{Backend, TestDb, eventually};
use sea_orm::EntityTrait;

/// A line of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Outcome {
    idle_kib: u64,
    peak_kib: u64,
    /// From the first task's start to the last one's end.
    took: Duration,
    states: Vec<String>,
    lines: usize,
    bytes: u64,
}

async fn run(backend: Backend, flood: Option<&str>, tasks: usize) -> Outcome {
    let db = TestDb::new(backend).await;
    let sim = GitHubSim::start(SECRET).await;
    let mut files = vec![("README.md", "# widgets\n".to_string())];
    if let Some(flood) = flood {
        files.push((".amp-stub/flood", format!("{flood}\n")));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let repo = sim.add_repo_with_files("octo-org/widgets", 77, &[("writer", "write")], &files);
    let mut env = service_env(&db, &sim, &[("MAX_CONCURRENT_TASKS", "4")]);
    env.remove("HOST");
    env.remove("PORT");
    let env: Vec<(String, String)> = env.into_iter().collect();
    let service = ServiceProcess::start(&env).await;
    sim.deliver_to(&service.base);
    let conn = db.connect().await;
    let pid = service.child.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kib = status_kib(pid, "VmRSS:");

    let started = Instant::now();
    for i in 0..tasks {
        sim.comment(&repo, 40 + i as i64, "writer", "/amp go on")
            .await;
    }
    let all = eventually(900, "every task is over", || async {
        let all = task::Entity::find().all(&conn).await.unwrap();
        (all.len() == tasks && all.iter().all(|t| t.state.is_terminal())).then_some(all)
    })
    .await;
    let took = started.elapsed();
    // The service removes a finished task's container (and with it the flooding process); it
    // runs on until it has.
    for t in &all {
        assert_no_containers_for(t).await;
    }
    let peak_kib = status_kib(pid, "VmHWM:");
    let mut lines = 0;
    let mut bytes = 0;
    for t in &all {
        for e in common::task_events(&conn, t.id).await {
            if e.kind == EventKind::Agent && !e.data.starts_with(AgentLine::RESULT_PREFIX) {
                lines += 1;
                bytes += e.data.len() as u64;
            }
        }
    }
    let states = all
        .iter()
        .map(|t: &task::Model| match t.state {
            TaskState::Failed => format!(
                "failed: {}",
                t.error_message
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .next()
                    .unwrap_or_default()
            ),
            other => other.as_str().to_string(),
        })
        .collect();
    drop(service);
    Outcome {
        idle_kib,
        peak_kib,
        took,
        states,
        lines: lines / tasks,
        bytes: bytes / tasks as u64,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: ./scripts/bench-agent-flood.sh"]
async fn peak_memory_while_agents_flood() {
    let backends: Vec<Backend> = std::env::var("BENCH_BACKENDS")
        .unwrap_or_else(|_| "sqlite".into())
        .split(',')
        .map(|b| match b.trim() {
            "postgres" => Backend::Postgres,
            _ => Backend::Sqlite,
        })
        .collect();
    let scenarios: [(&str, Option<&str>, usize); 5] = [
        ("quiet (no flood)", None, 1),
        ("one endless line on stdout", Some("nonewline"), 1),
        ("one endless line on stderr", Some("stderr"), 1),
        ("a million lines", Some("lines"), 1),
        (
            "4 tasks at once, each one endless line",
            Some("nonewline"),
            4,
        ),
    ];
    println!();
    println!(
        "| agent output | database | service RSS idle | service peak RSS (VmHWM) | task ended | \
         comment → over | agent lines kept (per task) | bytes kept (per task) |"
    );
    println!("|---|---|---:|---:|---|---:|---:|---:|");
    for backend in backends {
        for (name, flood, tasks) in scenarios {
            let o = run(backend, flood, tasks).await;
            let mut states = o.states.clone();
            states.dedup();
            println!(
                "| {name} | {} | {:.1} MiB | {:.1} MiB | {} | {:.1} s | {} | {:.1} MiB |",
                match backend {
                    Backend::Sqlite => "SQLite",
                    Backend::Postgres => "PostgreSQL",
                },
                o.idle_kib as f64 / 1024.0,
                o.peak_kib as f64 / 1024.0,
                states.join("; "),
                o.took.as_secs_f64(),
                o.lines,
                o.bytes as f64 / 1_048_576.0,
            );
        }
    }
}
