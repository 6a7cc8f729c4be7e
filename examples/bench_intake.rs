//! Webhook intake benchmark: signed `issue_comment` deliveries against the release binary.
//!
//! Run it with `./scripts/bench-intake.sh` (which builds the release binary and this example and
//! starts PostgreSQL). For each target it starts a fresh server process on a loopback port, sends
//! `--warmup` deliveries, then `--deliveries` more over `--concurrency` keep-alive connections, and
//! reports deliveries/s and latency percentiles. The targets are the service on SQLite, the service
//! on PostgreSQL, and a bare axum endpoint that answers 200 to the same requests (the ceiling of
//! this machine's HTTP stack and load generator). Afterwards it checks in the database that every
//! delivery was stored exactly once and waits for the inbox to drain.
//!
//! The payload is the real `issue_comment.created` example from octokit/webhooks, unchanged; only
//! the `X-GitHub-Delivery` header differs between requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sea_orm::ConnectionTrait;

const SECRET: &str = "bench-webhook-secret";
const FIXTURE: &str =
    "tests/fixtures/github/webhooks/issue_comment/created.with-installation.payload.json";

struct Args {
    deliveries: usize,
    warmup: usize,
    concurrency: usize,
    targets: Vec<String>,
    postgres_url: Option<String>,
    binary: PathBuf,
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let mut args = Args {
        deliveries: 20_000,
        warmup: 1_000,
        concurrency: 64,
        targets: [
            "bare",
            "sqlite",
            "postgres",
            "sqlite-prompt",
            "postgres-prompt",
        ]
        .map(String::from)
        .to_vec(),
        postgres_url: std::env::var("TEST_POSTGRES_URL").ok(),
        binary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/amp-orchestrator"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--deliveries" => args.deliveries = value("--deliveries")?.parse()?,
            "--warmup" => args.warmup = value("--warmup")?.parse()?,
            "--concurrency" => args.concurrency = value("--concurrency")?.parse()?,
            "--targets" => {
                args.targets = value("--targets")?.split(',').map(str::to_string).collect()
            }
            "--postgres-url" => args.postgres_url = Some(value("--postgres-url")?),
            "--binary" => args.binary = value("--binary")?.into(),
            "--serve-bare" => {
                serve_bare(value("--serve-bare")?.parse()?)?;
                return Ok(None);
            }
            other => bail!(
                "unknown argument {other:?} (expected --deliveries, --warmup, --concurrency, \
                 --targets bare,sqlite,postgres,sqlite-prompt,postgres-prompt, --postgres-url, \
                 --binary)"
            ),
        }
    }
    Ok(Some(args))
}

/// The ceiling: an axum server that reads the body and answers 200, nothing else.
fn serve_bare(port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let app = axum::Router::new().route(
            "/api/github/webhooks",
            axum::routing::post(|_body: Bytes| async { "ok" }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A server process that is stopped (SIGTERM, then waited for) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

async fn wait_until_up(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("http://{addr}{path}")).send().await
            && (r.status().is_success() || path.is_empty() || r.status().as_u16() == 405)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server on {addr} did not come up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_service(binary: &PathBuf, database_url: &str) -> anyhow::Result<Server> {
    let port = free_port()?;
    let child = Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WEBHOOK_SECRET", SECRET)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database_url)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} (run cargo build --release)", binary.display()))?;
    let server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    wait_until_up(server.addr, "/readyz").await?;
    Ok(server)
}

async fn start_bare() -> anyhow::Result<Server> {
    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["--serve-bare", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    wait_until_up(server.addr, "/api/github/webhooks").await?;
    Ok(server)
}

struct Load {
    elapsed: Duration,
    latencies_us: Vec<u32>,
    failures: usize,
    first_failure: Option<String>,
}

/// What each delivery carries: the same body, or (for prompts) the same body on its own issue,
/// so that each prompt becomes a task rather than meeting the task already active on one issue.
#[derive(Clone)]
enum Payload {
    Same {
        body: Bytes,
        signature: String,
    },
    /// `body` holds a nine-digit issue number at `at`, overwritten per delivery (and signed).
    PerIssue {
        body: Bytes,
        at: usize,
        first: usize,
    },
}

/// The placeholder issue number a per-issue body is serialized with.
const ISSUE_PLACEHOLDER: u64 = 987_654_321;

impl Payload {
    fn nth(&self, i: usize) -> (Bytes, String) {
        match self {
            Payload::Same { body, signature } => (body.clone(), signature.clone()),
            Payload::PerIssue { body, at, first } => {
                let mut bytes = body.to_vec();
                let number = format!("{:09}", 100_000_000 + first + i);
                bytes[*at..*at + 9].copy_from_slice(number.as_bytes());
                let signature = amp_orchestrator::webhook::signature::sign(SECRET, &bytes);
                (Bytes::from(bytes), signature)
            }
        }
    }
}

/// Send deliveries `prefix-0 .. prefix-(count-1)` over `concurrency` keep-alive connections.
async fn fire(
    addr: SocketAddr,
    payload: Payload,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Load> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let payload = payload.clone();
        let prefix = prefix.to_string();
        workers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut latencies = Vec::new();
            let mut failures = 0;
            let mut first_failure = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let (body, signature) = payload.nth(i);
                let request = http::Request::post("/api/github/webhooks")
                    .header("host", addr.to_string())
                    .header("content-type", "application/json")
                    .header("user-agent", "GitHub-Hookshot/bench")
                    .header("x-github-event", "issue_comment")
                    .header("x-github-delivery", format!("{prefix}-{i}"))
                    .header("x-hub-signature-256", &signature)
                    .body(Full::new(body))?;
                let t = Instant::now();
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let response_body = response.into_body().collect().await?.to_bytes();
                latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !status.is_success() {
                    failures += 1;
                    first_failure.get_or_insert_with(|| {
                        format!("{status}: {}", String::from_utf8_lossy(&response_body))
                    });
                }
            }
            anyhow::Ok((latencies, failures, first_failure))
        }));
    }
    let mut load = Load {
        elapsed: Duration::ZERO,
        latencies_us: Vec::with_capacity(count),
        failures: 0,
        first_failure: None,
    };
    for worker in workers {
        let (latencies, failures, first_failure) = worker.await??;
        load.latencies_us.extend(latencies);
        load.failures += failures;
        if load.first_failure.is_none() {
            load.first_failure = first_failure;
        }
    }
    load.elapsed = started.elapsed();
    Ok(load)
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

struct Row {
    target: String,
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    check: String,
}

/// Check that every delivery was stored exactly once, then wait for the inbox to drain.
async fn verify(
    database_url: &str,
    prefix: &str,
    expected: usize,
    expected_tasks: usize,
) -> anyhow::Result<String> {
    let db = amp_orchestrator::db::connect(database_url).await?;
    let like = format!("{prefix}-%");
    let row = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            if amp_orchestrator::db::is_postgres(&db) {
                "SELECT COUNT(*), COUNT(DISTINCT delivery_id) FROM deliveries WHERE delivery_id LIKE $1"
            } else {
                "SELECT COUNT(*), COUNT(DISTINCT delivery_id) FROM deliveries WHERE delivery_id LIKE ?1"
            },
            [like.into()],
        ))
        .await?
        .context("no count row")?;
    let (rows, distinct): (i64, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    if rows as usize != expected || distinct as usize != expected {
        bail!("expected {expected} stored deliveries, found {rows} rows ({distinct} distinct)");
    }
    let started = Instant::now();
    loop {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'processing')",
            ))
            .await?
            .context("no count row")?;
        let pending: i64 = row.try_get_by_index(0)?;
        if pending == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("{pending} deliveries still unprocessed after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = started.elapsed();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM tasks",
        ))
        .await?
        .context("no count row")?;
    let tasks: i64 = row.try_get_by_index(0)?;
    if tasks as usize != expected_tasks {
        bail!("expected {expected_tasks} tasks, found {tasks}");
    }
    db.close().await.ok();
    Ok(format!(
        "{expected} stored once each, {tasks} tasks; inbox drained {:.1} s after the load",
        drained.as_secs_f64()
    ))
}

async fn run_target(args: &Args, target: &str, fixture: &Bytes) -> anyhow::Result<Row> {
    // `-prompt`: the comment is an `/amp` prompt, so every delivery goes through the inbox and
    // becomes a task. Otherwise the fixture is sent unchanged: a comment without a command, which
    // is recorded (so a redelivery is recognised) and needs no further work.
    let (backend, prompt) = match target.strip_suffix("-prompt") {
        Some(backend) => (backend, true),
        None => (target, false),
    };
    let payload_for = |first: usize| -> anyhow::Result<Payload> {
        if !prompt {
            let signature = amp_orchestrator::webhook::signature::sign(SECRET, fixture);
            return Ok(Payload::Same {
                body: fixture.clone(),
                signature,
            });
        }
        let mut payload: serde_json::Value = serde_json::from_slice(fixture)?;
        payload["comment"]["body"] = "/amp add a --json flag to the export command".into();
        payload["issue"]["number"] = ISSUE_PLACEHOLDER.into();
        let body = serde_json::to_vec(&payload)?;
        let placeholder = ISSUE_PLACEHOLDER.to_string();
        let at = body
            .windows(placeholder.len())
            .position(|w| w == placeholder.as_bytes())
            .context("the placeholder issue number is not in the body")?;
        Ok(Payload::PerIssue {
            body: Bytes::from(body),
            at,
            first,
        })
    };
    let dir = tempfile::tempdir()?;
    let mut pg_cleanup = None;
    let (server, database_url) = match backend {
        "bare" => (start_bare().await?, None),
        "sqlite" => {
            let url = format!("sqlite://{}/bench.sqlite", dir.path().display());
            (start_service(&args.binary, &url).await?, Some(url))
        }
        "postgres" => {
            let admin = args
                .postgres_url
                .clone()
                .context("the postgres target needs --postgres-url or TEST_POSTGRES_URL")?;
            let name = format!("amp_bench_{}", uuid::Uuid::new_v4().simple());
            let conn = sea_orm::Database::connect(&admin).await?;
            conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            let (base, _) = admin.rsplit_once('/').context("postgres URL has no path")?;
            let url = format!("{base}/{name}");
            pg_cleanup = Some((conn, name));
            (start_service(&args.binary, &url).await?, Some(url))
        }
        other => bail!("unknown target {other:?} (bare, sqlite or postgres, optionally -prompt)"),
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let warm_prefix = format!("warm-{run}");
    let prefix = format!("bench-{run}");
    let warm = fire(
        server.addr,
        payload_for(0)?,
        &warm_prefix,
        args.warmup,
        args.concurrency,
    )
    .await?;
    if warm.failures > 0 {
        bail!(
            "{target}: {} warm-up deliveries failed, first: {}",
            warm.failures,
            warm.first_failure.unwrap_or_default()
        );
    }
    let mut load = fire(
        server.addr,
        payload_for(args.warmup)?,
        &prefix,
        args.deliveries,
        args.concurrency,
    )
    .await?;
    if load.failures > 0 {
        bail!(
            "{target}: {} of {} deliveries failed, first: {}",
            load.failures,
            args.deliveries,
            load.first_failure.unwrap_or_default()
        );
    }
    let check = match &database_url {
        Some(url) => {
            let tasks = if prompt {
                args.warmup + args.deliveries
            } else {
                0
            };
            verify(url, &prefix, args.deliveries, tasks).await?
        }
        None => "(no storage)".into(),
    };
    drop(server);
    if let Some((conn, name)) = pg_cleanup {
        conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
    }
    load.latencies_us.sort_unstable();
    Ok(Row {
        target: target.to_string(),
        rate: args.deliveries as f64 / load.elapsed.as_secs_f64(),
        p50: percentile_ms(&load.latencies_us, 50.0),
        p99: percentile_ms(&load.latencies_us, 99.0),
        max: percentile_ms(&load.latencies_us, 100.0),
        check,
    })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let body = Bytes::from(
            std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FIXTURE))
                .context("reading the fixture")?,
        );
        println!(
            "intake benchmark: {} deliveries ({} warm-up) of {} bytes, {} connections; {}",
            args.deliveries,
            args.warmup,
            body.len(),
            args.concurrency,
            machine()
        );
        println!();
        println!("| target | deliveries/s | p50 ms | p99 ms | max ms | check |");
        println!("|---|---:|---:|---:|---:|---|");
        for target in &args.targets {
            let row = run_target(&args, target, &body).await?;
            println!(
                "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                row.target, row.rate, row.p50, row.p99, row.max, row.check
            );
        }
        anyhow::Ok(())
    })
}
