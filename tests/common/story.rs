//! A story for end-to-end task tests: the GitHub simulator with one repository, the full
//! service (worker included) running tasks in the locally built agent image, and a connection to
//! the service's database.

use std::time::Duration;

use amp_orchestrator::docker::Engine;
use amp_orchestrator::entities::{task, task_event};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use super::github_sim::{GitHubSim, Repo};
use super::service::{SECRET, test_env};
use super::{TestDb, TestService, eventually};

pub struct Story {
    pub sim: GitHubSim,
    pub service: TestService,
    pub conn: DatabaseConnection,
    pub repo: Repo,
    pub db: TestDb,
}

/// Wait until the task's containers and volumes are gone.
pub async fn assert_no_containers_for(task: &task::Model) {
    let public_id = task.public_id.clone();
    let engine = Engine::connect(None).await.unwrap();
    eventually(
        20,
        "the task's container and volume are removed",
        || async {
            let owned = engine.owned(None).await.unwrap();
            (!owned.iter().any(|(t, _)| *t == public_id)).then_some(())
        },
    )
    .await;
}

pub fn tunables() -> amp_orchestrator::context::Tunables {
    amp_orchestrator::context::Tunables {
        github: amp_orchestrator::github::Options {
            backoff: Duration::from_millis(20),
            ..Default::default()
        },
        inbox_retry_base: Duration::from_millis(20),
        ..Default::default()
    }
}

pub fn service_env(
    db: &TestDb,
    sim: &GitHubSim,
    extra: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let mut env = test_env(db);
    env.extend(sim.service_env());
    let image = std::env::var("TEST_AGENT_IMAGE")
        .expect("TEST_AGENT_IMAGE is not set: run ./scripts/test.sh, which builds it");
    let gateway_image = std::env::var("TEST_GATEWAY_IMAGE")
        .expect("TEST_GATEWAY_IMAGE is not set: run ./scripts/test.sh, which builds it");
    for (k, v) in [
        ("AGENT_IMAGE", image.as_str()),
        // The agent container reaches the simulator's git on 127.0.0.1.
        ("AGENT_NETWORK", "host"),
        // So do the git helpers that clone and push.
        ("GIT_NETWORK", "host"),
        ("GATEWAY_IMAGE", gateway_image.as_str()),
        ("AMP_API_KEY", "sgamp_test_key_0123456789"),
        ("MAX_CONCURRENT_TASKS", "4"),
        ("TASK_LEASE", "6s"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        env.insert(k.to_string(), v.to_string());
    }
    env.retain(|_, v| !v.is_empty());
    env
}

/// A story whose repository holds `files`; `extra` adds to or overrides the service's environment.
pub async fn story_with(db: TestDb, extra: &[(&str, &str)], files: &[(&str, &str)]) -> Story {
    let sim = GitHubSim::start(SECRET).await;
    let repo = sim.add_repo_with_files("octo-org/widgets", 77, &[("writer", "write")], files);
    let env = service_env(&db, &sim, extra);
    let service = TestService::start_full(env, tunables()).await;
    sim.deliver_to(&service.base);
    let conn = db.connect().await;
    Story {
        sim,
        service,
        conn,
        repo,
        db,
    }
}

impl Story {
    /// The newest task, once it is in `state`. After `secs` seconds it panics saying where the
    /// task is instead, with the end of its log.
    pub async fn wait_for_state(&self, state: &str, secs: u64) -> task::Model {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let newest = task::Entity::find()
                .order_by_desc(task::Column::Id)
                .one(&self.conn)
                .await
                .unwrap();
            if let Some(t) = &newest
                && t.state.as_str() == state
            {
                return newest.unwrap();
            }
            if tokio::time::Instant::now() > deadline {
                let Some(t) = newest else {
                    panic!(
                        "timed out after {secs}s waiting for the task to reach {state}: there is no task"
                    );
                };
                let events = self.events(t.id).await;
                let tail: Vec<String> = events
                    .iter()
                    .rev()
                    .take(30)
                    .rev()
                    .map(|e| {
                        format!(
                            "  {} {:?} {}",
                            e.seq,
                            e.kind,
                            e.data.chars().take(300).collect::<String>()
                        )
                    })
                    .collect();
                panic!(
                    "timed out after {secs}s waiting for the task to reach {state}: it is {} ({} events); its log ends:\n{}",
                    t.state.as_str(),
                    events.len(),
                    tail.join("\n")
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn events(
        &self,
        task_id: amp_orchestrator::domain::TaskId,
    ) -> Vec<task_event::Model> {
        super::task_events(&self.conn, task_id).await
    }

    pub async fn assert_no_containers_for(&self, task: &task::Model) {
        assert_no_containers_for(task).await
    }

    /// The status comment, once it says `text`.
    pub async fn status_saying(&self, issue: i64, text: &str) -> super::github_sim::Comment {
        eventually(20, &format!("the status comment says {text:?}"), || async {
            let c = self
                .sim
                .app_comments(&self.repo, issue)
                .into_iter()
                .next()?;
            c.body.contains(text).then_some(c)
        })
        .await
    }
}

/// Run `sh -c script` in the task's agent container as the agent's user, with `env`.
pub async fn exec_in_agent_container(task: &task::Model, script: &str, env: &[&str]) -> String {
    let engine = Engine::connect(None).await.unwrap();
    let owned = engine.owned(None).await.unwrap();
    let (_, container) = owned
        .iter()
        .find(|(t, c)| *t == task.public_id && !c.id.is_empty())
        .expect("the task's container is alive");
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let exec = amp_orchestrator::docker::Exec {
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        env: env.iter().map(|e| e.to_string()).collect(),
        user: Some("1000:1000".into()),
        workdir: None,
    };
    let (code, out) = tokio::join!(engine.exec(container, exec, tx), async {
        let mut out = String::new();
        while let Some(o) = rx.recv().await {
            if let amp_orchestrator::docker::Output::Stdout(s) = o {
                out.push_str(&s);
            }
        }
        out
    });
    assert_eq!(code.unwrap(), Some(0), "{script}: {out}");
    out
}
