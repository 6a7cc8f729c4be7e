//! Missed-webhook recovery against the simulator: a delivery that failed while the service was
//! down is redelivered once when it starts, and not again.

mod common;

use std::time::Duration;

use amp_orchestrator::entities::{delivery, task};
use common::github_sim::GitHubSim;
use common::service::{SECRET, test_env};
use common::{TestDb, TestService, eventually};
use sea_orm::EntityTrait;

fn tunables() -> amp_orchestrator::context::Tunables {
    amp_orchestrator::context::Tunables::default()
}

both_backends!(
    a_delivery_missed_while_down_is_redelivered_once,
    |db: TestDb| async move {
        let sim = GitHubSim::start(SECRET).await;
        let repo = sim.add_repo("octo-org/widgets", 77, &[("writer", "write")]);
        let mut env = test_env(&db);
        env.extend(sim.service_env());
        let conn = db.connect().await;

        // The service is down: GitHub's attempt fails, and GitHub will not try again by itself.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        sim.deliver_to(&dead_url);
        let (_, guid) = sim
            .comment(&repo, 61, "writer", "/amp add a json flag")
            .await;
        let attempts = |guid: &str| {
            sim.hook_deliveries()
                .into_iter()
                .filter(|d| d.guid == guid)
                .collect::<Vec<_>>()
        };
        assert_eq!(attempts(&guid).len(), 1);
        assert_eq!(attempts(&guid)[0].status_code, 0);

        // On start the service finds it and asks for it again.
        let first = TestService::start_full(env.clone(), tunables()).await;
        sim.deliver_to(&first.base);
        let stored = eventually(30, "the missed delivery is stored", || async {
            delivery::Entity::find()
                .all(&conn)
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.delivery_id == guid)
        })
        .await;
        assert_eq!(stored.event, "issue_comment");
        let task = eventually(30, "its task is created", || async {
            task::Entity::find().one(&conn).await.unwrap()
        })
        .await;
        assert_eq!(task.issue_number, 61);
        let tried = attempts(&guid);
        assert_eq!(tried.len(), 2);
        assert!(tried[1].redelivery, "{tried:?}");
        assert!((200..300).contains(&tried[1].status_code), "{tried:?}");
        assert_eq!(sim.requests("POST", "/app/hook/deliveries/").len(), 1);

        // Another start (or another sweep) does not ask again.
        drop(first);
        let second = TestService::start_full(env, tunables()).await;
        sim.deliver_to(&second.base);
        eventually(10, "the second start has looked", || async {
            (sim.requests("GET", "/app/hook/deliveries").len() >= 2).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sim.requests("POST", "/app/hook/deliveries/").len(), 1);
        assert_eq!(attempts(&guid).len(), 2);
        assert_eq!(task::Entity::find().all(&conn).await.unwrap().len(), 1);
    }
);
