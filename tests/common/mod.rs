//! Test support shared by the integration tests: a fresh database per test on either backend, the
//! real service started on a loopback port, and the real GitHub webhook examples.
#![allow(dead_code, unused_imports)]

pub mod db;
pub mod fixtures;
pub mod github_sim;
pub mod process;
pub mod service;
pub mod sse;
pub mod story;
pub mod webdriver;

pub use db::{Backend, TestDb};
pub use fixtures::{fixture, fixture_bytes};
pub use service::TestService;

/// Define a test once and run it on SQLite and on PostgreSQL:
/// `both_backends!(name, |db: TestDb| async move { ... });`
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::common::TestDb::new($crate::common::Backend::Sqlite).await;
                ($body)(db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::common::TestDb::new($crate::common::Backend::Postgres).await;
                ($body)(db).await;
            }
        }
    };
}

/// Poll `check` until it returns `Some`, or panic after `secs` seconds with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for: {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A task's stored events, in order.
pub async fn task_events(
    conn: &sea_orm::DatabaseConnection,
    task_id: amp_orchestrator::domain::TaskId,
) -> Vec<amp_orchestrator::entities::task_event::Model> {
    use amp_orchestrator::entities::task_event;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    task_event::Entity::find()
        .filter(task_event::Column::TaskId.eq(task_id))
        .order_by_asc(task_event::Column::Seq)
        .all(conn)
        .await
        .unwrap()
}

/// The `p`th percentile of sorted samples (nearest rank), for the benchmarks.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
