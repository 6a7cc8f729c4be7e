//! Several `serve` processes on one PostgreSQL, as a team scales out: webhooks arrive at the
//! replicas in turn, every task runs exactly once, a status page on one replica streams a task
//! running on another, a replica killed mid-task has its task taken over once its lease runs
//! out, and a replica told to stop (SIGTERM) lets its tasks finish or hands them over.

mod common;

use amp_orchestrator::domain::TaskState;
use std::collections::HashSet;
use std::time::Duration;

use amp_orchestrator::entities::{delivery, task, task_event};
use common::github_sim::{GitHubSim, Repo};
use common::process::ServiceProcess;
use common::service::SECRET;
use common::sse::SseClient;
use common::story::{assert_no_containers_for, service_env};
use common::{Backend, TestDb, eventually};

const REPLICA_ADMIN_TOKEN: &str = "replica-admin-token-0123456789";
use nix::sys::signal::Signal;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

const FILES: &[(&str, &str)] = &[
    ("README.md", "# widgets\n"),
    // A step of work that takes a moment, so a run has a middle.
    (".amp-stub/step.sh", "sleep 1\necho one step done\n"),
    // Stalls the first time only (the marker lives in the container's /tmp).
    (
        ".amp-stub/stall.sh",
        "[ -f /tmp/stalled ] && exit 0\ntouch /tmp/stalled\nsleep 60\n",
    ),
];

struct Cluster {
    sim: GitHubSim,
    repo: Repo,
    conn: DatabaseConnection,
    db: TestDb,
}

impl Cluster {
    async fn new() -> Cluster {
        let db = TestDb::new(Backend::Postgres).await;
        let sim = GitHubSim::start(SECRET).await;
        let repo = sim.add_repo_with_files("octo-org/widgets", 77, &[("writer", "write")], FILES);
        let conn = db.connect().await;
        Cluster {
            sim,
            repo,
            conn,
            db,
        }
    }

    /// A replica with this cluster's database and simulator; `extra` adds to its environment.
    async fn replica(&self, extra: &[(&str, &str)]) -> Replica {
        let mut env = service_env(&self.db, &self.sim, extra);
        env.remove("HOST");
        env.remove("PORT");
        env.insert("LOG_LEVEL".into(), "info".into());
        env.insert("ADMIN_TOKEN".into(), REPLICA_ADMIN_TOKEN.into());
        let env: Vec<(String, String)> = env.into_iter().collect();
        let process = ServiceProcess::start(&env).await;
        // Which instance answers is told to the admin only.
        let ready: serde_json::Value = reqwest::Client::new()
            .get(process.url("/readyz"))
            .bearer_auth(REPLICA_ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let instance = ready["instance"].as_str().unwrap().to_string();
        Replica { process, instance }
    }

    async fn task_on(&self, issue: i64) -> Option<task::Model> {
        task::Entity::find()
            .filter(task::Column::IssueNumber.eq(issue))
            .one(&self.conn)
            .await
            .unwrap()
    }

    async fn wait_for(
        &self,
        issue: i64,
        what: &str,
        secs: u64,
        check: impl Fn(&task::Model) -> bool,
    ) -> task::Model {
        eventually(secs, &format!("the task on #{issue} {what}"), || async {
            self.task_on(issue).await.filter(|t| check(t))
        })
        .await
    }

    async fn events(&self, task_id: amp_orchestrator::domain::TaskId) -> Vec<task_event::Model> {
        common::task_events(&self.conn, task_id).await
    }

    /// The replicas that picked the task up, in order.
    async fn picked_up_by(&self, task_id: amp_orchestrator::domain::TaskId) -> Vec<String> {
        self.events(task_id)
            .await
            .iter()
            .filter_map(|e| {
                let data: serde_json::Value = serde_json::from_str(&e.data).ok()?;
                data["text"]
                    .as_str()?
                    .strip_prefix("Picked up by replica ")
                    .map(str::to_string)
            })
            .collect()
    }

    async fn logged(&self, task_id: amp_orchestrator::domain::TaskId, text: &str) -> bool {
        self.events(task_id)
            .await
            .iter()
            .any(|e| e.data.contains(text))
    }
}

struct Replica {
    process: ServiceProcess,
    instance: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_work_and_stream_each_others_tasks() {
    let c = Cluster::new().await;
    let a = c.replica(&[("MAX_CONCURRENT_TASKS", "1")]).await;
    let b = c.replica(&[("MAX_CONCURRENT_TASKS", "1")]).await;
    assert_ne!(a.instance, b.instance);
    c.sim
        .deliver_round_robin(&[&a.process.base, &b.process.base]);

    let issues: Vec<i64> = (41..=44).collect();
    for issue in &issues {
        c.sim
            .comment(&c.repo, *issue, "writer", "/amp step then report")
            .await;
    }
    let mut ran_on = HashSet::new();
    for issue in &issues {
        let t = c
            .wait_for(*issue, "succeeds", 120, |t| t.state == TaskState::Succeeded)
            .await;
        let picked = c.picked_up_by(t.id).await;
        assert_eq!(picked.len(), 1, "#{issue} ran more than once: {picked:?}");
        ran_on.insert(picked[0].clone());
        let claims = c
            .events(t.id)
            .await
            .iter()
            .filter(|e| {
                e.kind == amp_orchestrator::domain::EventKind::State
                    && e.data.contains("\"to\":\"preparing\"")
            })
            .count();
        assert_eq!(claims, 1, "#{issue} was claimed {claims} times");
        assert_eq!(
            c.sim.app_comments(&c.repo, *issue).len(),
            1,
            "one status comment on #{issue}"
        );
    }
    assert_eq!(
        ran_on,
        HashSet::from([a.instance.clone(), b.instance.clone()]),
        "both replicas ran tasks"
    );
    // Every delivery was stored once and handled once, whichever replica received it.
    let deliveries = delivery::Entity::find().all(&c.conn).await.unwrap();
    assert_eq!(deliveries.len(), issues.len());
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == "done" && d.attempts == 1),
        "{deliveries:?}"
    );

    // A status page on one replica streams a task that runs on the other.
    c.sim
        .comment(
            &c.repo,
            45,
            "writer",
            "/amp step step step step then report",
        )
        .await;
    let t = c
        .wait_for(45, "runs", 60, |t| t.state == TaskState::Running)
        .await;
    let owner = t.lease_owner.clone().unwrap();
    let viewer = if owner == a.instance { &b } else { &a };
    assert_ne!(owner, viewer.instance);
    let stored_at_connect = c.events(t.id).await.last().map(|e| e.seq).unwrap_or(0);
    let mut client = SseClient::connect(
        &viewer
            .process
            .url(&format!("/tasks/{}/events", t.public_id)),
        None,
    )
    .await;
    let mut seqs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, client.next(Duration::from_secs(60)))
            .await
            .expect("the other replica's events reach this replica's stream")
            .expect("the stream ends with `end`");
        if event.event == "end" {
            break;
        }
        seqs.push(event.seq());
    }
    let expected: Vec<i64> = (1..=*seqs.last().unwrap()).collect();
    assert_eq!(seqs, expected, "every event once, in order");
    assert!(
        *seqs.last().unwrap() > stored_at_connect + 3,
        "events stored by the other replica after the page connected arrived live ({stored_at_connect} at connect, {seqs:?})"
    );
    let t = c.task_on(45).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded);
    assert_eq!(c.picked_up_by(t.id).await, vec![owner]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_task_is_taken_over_after_its_lease() {
    let c = Cluster::new().await;
    let lease = [("TASK_LEASE", "3s")];
    let mut a = c.replica(&lease).await;
    c.sim.deliver_to(&a.process.base);
    c.sim
        .comment(&c.repo, 51, "writer", "/amp stall then report")
        .await;
    let t = c
        .wait_for(51, "is in its stalled step", 60, |t| {
            t.state == TaskState::Running
        })
        .await;
    eventually(30, "the agent is inside the stalled step", || async {
        c.logged(t.id, ".amp-stub/stall.sh").await.then_some(())
    })
    .await;
    let b = c.replica(&lease).await;
    c.sim.deliver_to(&b.process.base);

    a.process.signal(Signal::SIGKILL);
    assert_eq!(a.process.wait_exit(10).await, None, "killed by the signal");
    // Not taken over while the lease still holds; then taken over by the survivor, in the
    // container the killed replica left, and finished.
    let still = c.task_on(51).await.unwrap();
    assert_eq!(still.lease_owner.as_deref(), Some(a.instance.as_str()));
    let done = c
        .wait_for(51, "finishes on the survivor", 90, |t| {
            t.state == TaskState::Succeeded
        })
        .await;
    assert_eq!(
        c.picked_up_by(done.id).await,
        vec![a.instance.clone(), b.instance.clone()]
    );
    assert!(c.logged(done.id, "resuming it in its container").await);
    assert_no_containers_for(&done).await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_tasks_finish_or_hands_them_to_another_replica() {
    let c = Cluster::new().await;

    // A task that finishes within the drain time: the replica waits for it, then exits 0.
    let mut patient = c.replica(&[("DRAIN_TIMEOUT", "60s")]).await;
    c.sim.deliver_to(&patient.process.base);
    c.sim
        .comment(&c.repo, 61, "writer", "/amp step step step then report")
        .await;
    c.wait_for(61, "runs", 60, |t| t.state == TaskState::Running)
        .await;
    patient.process.signal(Signal::SIGTERM);
    assert_eq!(
        patient.process.wait_exit(60).await,
        Some(0),
        "{}",
        patient.process.output()
    );
    let finished = c.task_on(61).await.unwrap();
    assert_eq!(
        finished.state,
        TaskState::Succeeded,
        "finished before the replica exited"
    );
    assert!(
        patient
            .process
            .output()
            .contains("every running task finished")
    );

    // A task that would outlast the drain time is handed back at once (the default two-minute
    // lease never runs out here) and resumes on another replica.
    let mut hasty = c.replica(&[("DRAIN_TIMEOUT", "1s")]).await;
    c.sim.deliver_to(&hasty.process.base);
    c.sim
        .comment(&c.repo, 62, "writer", "/amp stall then report")
        .await;
    let t = c
        .wait_for(62, "runs", 60, |t| t.state == TaskState::Running)
        .await;
    eventually(30, "the agent is inside the stalled step", || async {
        c.logged(t.id, ".amp-stub/stall.sh").await.then_some(())
    })
    .await;
    let other = c.replica(&[]).await;
    c.sim.deliver_to(&other.process.base);
    hasty.process.signal(Signal::SIGTERM);
    assert_eq!(
        hasty.process.wait_exit(60).await,
        Some(0),
        "{}",
        hasty.process.output()
    );
    assert!(
        hasty
            .process
            .output()
            .contains("handing back the tasks still running")
    );
    let done = c
        .wait_for(62, "finishes on the other replica", 60, |t| {
            t.state == TaskState::Succeeded
        })
        .await;
    assert_eq!(
        c.picked_up_by(done.id).await,
        vec![hasty.instance.clone(), other.instance.clone()]
    );
    assert!(c.logged(done.id, "handed to another replica").await);
    assert_no_containers_for(&done).await;
}

/// Two tasks queued on one issue (a prompt, then a retry of an older task, say) never run at
/// once, even with two replicas claiming at the same moment: claims take turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_on_one_issue_never_run_at_once() {
    let c = Cluster::new().await;
    let mut ids = Vec::new();
    for prompt in ["step then report", "step step then report"] {
        let t = amp_orchestrator::store::tasks::create(
            &c.conn,
            amp_orchestrator::store::tasks::NewTask {
                installation_id: c.repo.installation_id,
                repo_id: c.repo.id,
                repo_full_name: c.repo.full_name(),
                clone_url: c.sim.clone_url(&c.repo),
                default_branch: "main".into(),
                issue_number: 81,
                is_pull_request: false,
                issue_title: "Two at once".into(),
                issue_body: String::new(),
                requester_login: "writer".into(),
                requester_id: 1,
                comment_id: 1,
                delivery_id: None,
                prompt: prompt.into(),
                repo_config: None,
            },
        )
        .await
        .unwrap()
        .unwrap()
        .0;
        ids.push(t.id);
    }
    // Both replicas start (and claim) at once.
    let (a, b) = tokio::join!(c.replica(&[]), c.replica(&[]));
    c.sim
        .deliver_round_robin(&[&a.process.base, &b.process.base]);
    let mut spans = Vec::new();
    for id in &ids {
        let done = eventually(120, "both tasks finish", || async {
            task::Entity::find_by_id(*id)
                .one(&c.conn)
                .await
                .unwrap()
                .filter(|t| t.state == TaskState::Succeeded)
        })
        .await;
        let events = c.events(done.id).await;
        let claimed = events
            .iter()
            .find(|e| {
                e.kind == amp_orchestrator::domain::EventKind::State
                    && e.data.contains("\"to\":\"preparing\"")
            })
            .unwrap()
            .created_at;
        let ended = events
            .iter()
            .find(|e| {
                e.kind == amp_orchestrator::domain::EventKind::State
                    && e.data.contains("\"to\":\"succeeded\"")
            })
            .unwrap()
            .created_at;
        spans.push((claimed, ended));
    }
    spans.sort();
    assert!(
        spans[0].1 <= spans[1].0,
        "the second task was claimed while the first ran: {spans:?}"
    );
}
