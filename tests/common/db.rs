//! A fresh, empty database per test: a SQLite file in a temporary directory, or a new PostgreSQL
//! database (`amp_test_<uuid>`) on the server named by `TEST_POSTGRES_URL`, dropped afterwards.
//! A missing PostgreSQL is a failure, never a skip: `scripts/test.sh` starts one.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// Keeps the SQLite directory alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_POSTGRES_URL is not set: PostgreSQL tests need a server \
             (run ./scripts/test.sh, which starts one)"
        )
    })
}

fn database_url(admin_url: &str, name: &str) -> String {
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("TEST_POSTGRES_URL has a path");
    format!("{base}/{name}")
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/test.sqlite", dir.path().display());
                TestDb {
                    backend,
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("amp_test_{}", uuid::Uuid::new_v4().simple());
                let conn = Database::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("cannot connect to PostgreSQL at TEST_POSTGRES_URL: {e}")
                });
                conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap();
                conn.close().await.ok();
                TestDb {
                    backend,
                    url: database_url(&admin, &name),
                    _dir: None,
                    pg: Some((admin, name)),
                }
            }
        }
    }

    /// A connection of the test's own (not the service's), migrated.
    pub async fn connect(&self) -> DatabaseConnection {
        let db = amp_orchestrator::db::connect(&self.url).await.unwrap();
        amp_orchestrator::db::migrate(&db).await.unwrap();
        db
    }

    /// Drop a PostgreSQL test database now, even while the service still holds connections.
    pub async fn drop_now(&self) {
        if let Some((admin, name)) = &self.pg {
            let conn = Database::connect(admin.as_str()).await.unwrap();
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .unwrap();
            conn.close().await.ok();
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The store's egress gateway, which a service started for its tasks and which outlives
        // them by design.
        let gateway =
            amp_orchestrator::sandbox::gateway_name(&amp_orchestrator::app::store_label(&self.url));
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &gateway])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Some((admin, name)) = self.pg.take() {
            // Drop runs outside async; use a runtime of its own on another thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(conn) = Database::connect(admin.as_str()).await {
                        let _ = conn
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join();
        }
    }
}
