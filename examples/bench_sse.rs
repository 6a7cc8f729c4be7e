//! Live log benchmark: one task, many SSE subscribers, many log lines.
//!
//! Run it with `./scripts/bench-sse.sh`. The program runs twice: as the parent it starts itself
//! again as the server (the real service on a SQLite file, running no tasks, in a process of its
//! own so its memory can be read apart), connects `--subscribers` clients to the task's
//! `/tasks/{id}/events`, and then has the server store and publish `--lines` log lines at
//! `--rate` lines per second. Each line carries the time it was published; each client records
//! the delay to its arrival, follows `resync` by reconnecting with `Last-Event-ID` (as a browser
//! does), and checks that it got every line exactly once, in order. Reported: lines delivered
//! per second over all clients, latency percentiles from publish to receipt, resyncs, and the
//! server's resident memory per subscriber.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use tokio::sync::Mutex;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// CPU seconds this process has used (user and system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Args {
    subscribers: usize,
    lines: usize,
    rate: u64,
}

fn args() -> anyhow::Result<(bool, Args)> {
    let mut server = false;
    let mut a = Args {
        subscribers: 1000,
        lines: 10_000,
        rate: 500,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |n: &str| -> anyhow::Result<u64> {
            it.next()
                .with_context(|| format!("{n} needs a value"))?
                .parse()
                .with_context(|| format!("{n} needs a number"))
        };
        match arg.as_str() {
            "--server" => server = true,
            "--subscribers" => a.subscribers = value("--subscribers")? as usize,
            "--lines" => a.lines = value("--lines")? as usize,
            "--rate" => a.rate = value("--rate")?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok((server, a))
}

fn main() -> anyhow::Result<()> {
    let (server, a) = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if server {
        rt.block_on(run_server(a))
    } else {
        rt.block_on(run_clients(a))
    }
}

/// The server side: the service, one task, and the publisher, driven over stdin/stdout.
async fn run_server(a: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let env = [
        ("WEBHOOK_SECRET", "bench-webhook-secret-0123456789"),
        ("DATABASE_URL", db_url.as_str()),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("LOG_LEVEL", "error"),
        ("MAX_CONCURRENT_TASKS", "0"),
    ];
    let config = amp_orchestrator::config::Config::from_lookup(|name| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let running = amp_orchestrator::app::start_with(
        config,
        listener,
        amp_orchestrator::context::Tunables::default(),
    )
    .await?;
    let ctx = running.ctx.clone();
    let task = amp_orchestrator::store::tasks::create(
        &ctx.db,
        amp_orchestrator::store::tasks::NewTask {
            installation_id: 1,
            repo_id: 1,
            repo_full_name: "octo-org/widgets".into(),
            clone_url: "https://github.com/octo-org/widgets.git".into(),
            default_branch: "main".into(),
            issue_number: 1,
            is_pull_request: false,
            issue_title: "Bench".into(),
            issue_body: String::new(),
            requester_login: "octocat".into(),
            requester_id: 1,
            comment_id: 1,
            delivery_id: None,
            prompt: "bench".into(),
            repo_config: None,
        },
    )
    .await?
    .context("no task")?
    .0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("ready {port} {} {}", task.public_id, rss_kib());
    let mut stdin = std::io::stdin().lock().lines();
    // "go" once every client is connected.
    let _ = stdin.next();
    let connected = rss_kib();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let interval = Duration::from_micros(1_000_000 / a.rate.max(1));
    let mut last = 0;
    for i in 0..a.lines {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let text = format!("line {i} sent {}", now_us());
        last = ctx
            .lifecycle
            .log(task.id, amp_orchestrator::domain::LogLine::info(text))
            .await
            .context("storing a line")?;
    }
    let peak = rss_kib();
    // The task ends: every stream gets the last state change and `end`.
    let over =
        amp_orchestrator::lifecycle::Move::to(amp_orchestrator::domain::TaskState::Cancelled)
            .saying("benchmark over");
    let applied = ctx
        .lifecycle
        .transition(&task, over)
        .await?
        .context("the task had moved on")?;
    let _ = last;
    let last = applied.event.seq;
    println!(
        "done {last} {connected} {peak} {:.1}",
        cpu_seconds() - cpu_before
    );
    std::io::stdout().flush()?;
    let _ = stdin.next();
    Ok(())
}

#[derive(Default)]
struct ClientStats {
    latencies_us: Vec<u32>,
    resyncs: usize,
    last: i64,
    complete: bool,
}

/// The sent time in a line's payload (`… sent <micros>…`).
fn sent_at(data: &str) -> Option<u64> {
    let at = data.find(" sent ")? + 6;
    let digits: String = data[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One subscriber until it has seen `until` (read from the shared cell once known).
async fn subscriber(
    url: String,
    connected: Arc<tokio::sync::Semaphore>,
    _until: Arc<std::sync::atomic::AtomicI64>,
) -> anyhow::Result<ClientStats> {
    let http = reqwest::Client::new();
    let mut stats = ClientStats::default();
    let mut first = true;
    loop {
        let mut request = http.get(&url).header("accept", "text/event-stream");
        if stats.last > 0 {
            request = request.header("last-event-id", stats.last.to_string());
        }
        let response = request.send().await?;
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut resynced = false;
        'stream: while let Some(chunk) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message", "");
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse::<i64>().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v;
                    }
                }
                match event {
                    "line" | "state" => {
                        let id = id.context("an event without id")?;
                        if id != stats.last + 1 {
                            bail!("expected {} after {}, got {id}", stats.last + 1, stats.last);
                        }
                        stats.last = id;
                        if let Some(sent) = sent_at(data) {
                            stats
                                .latencies_us
                                .push(now_us().saturating_sub(sent) as u32);
                        }
                        if first {
                            first = false;
                            connected.add_permits(1);
                        }
                    }
                    "end" => {
                        stats.complete = true;
                        return Ok(stats);
                    }
                    "resync" => {
                        stats.resyncs += 1;
                        resynced = true;
                        break 'stream;
                    }
                    _ => {}
                }
            }
        }
        if !resynced {
            bail!("the stream ended after {}", stats.last);
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn run_clients(a: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "--server",
            "--lines",
            &a.lines.to_string(),
            "--rate",
            &a.rate.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdin = child.stdin.take().unwrap();
    let ready = out.next().context("the server said nothing")??;
    let parts: Vec<&str> = ready.split_whitespace().collect();
    let (port, public_id, idle_kib) = (parts[1], parts[2].to_string(), parts[3].parse::<u64>()?);
    let url = format!("http://127.0.0.1:{port}/tasks/{public_id}/events");
    let connected = Arc::new(tokio::sync::Semaphore::new(0));
    let until = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..a.subscribers {
        let (url, connected, until, results) = (
            url.clone(),
            connected.clone(),
            until.clone(),
            results.clone(),
        );
        handles.push(tokio::spawn(async move {
            let r = subscriber(url, connected, until).await;
            results.lock().await.push(r);
        }));
    }
    let _all = connected
        .acquire_many(a.subscribers as u32)
        .await
        .context("clients failed to connect")?;
    let start = Instant::now();
    let cpu_before = cpu_seconds();
    writeln!(stdin, "go")?;
    let done = tokio::task::spawn_blocking(move || out.next())
        .await?
        .context("the server stopped")??;
    let parts: Vec<&str> = done.split_whitespace().collect();
    let last: i64 = parts[1].parse()?;
    let connected_kib: u64 = parts[2].parse()?;
    let peak_kib: u64 = parts[3].parse()?;
    let server_cpu: f64 = parts[4].parse()?;
    until.store(last, std::sync::atomic::Ordering::Release);
    for h in handles {
        h.await?;
    }
    let elapsed = start.elapsed();
    let client_cpu = cpu_seconds() - cpu_before;
    writeln!(stdin, "stop")?;
    let _ = child.wait();

    let results = results.lock().await;
    let mut latencies = Vec::new();
    let mut resyncs = 0;
    let mut complete = 0;
    for r in results.iter() {
        match r {
            Ok(s) => {
                latencies.extend_from_slice(&s.latencies_us);
                resyncs += s.resyncs;
                complete += usize::from(s.complete && s.last == last);
            }
            Err(e) => println!("a subscriber failed: {e:#}"),
        }
    }
    latencies.sort_unstable();
    println!(
        "{} subscribers, {} lines at {} lines/s, one task:",
        a.subscribers, a.lines, a.rate
    );
    println!("| | |");
    println!("|---|---:|");
    println!(
        "| subscribers that got every line once, in order | {complete} of {} |",
        a.subscribers
    );
    println!(
        "| lines delivered per second (all subscribers) | {:.0} |",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        println!(
            "| publish → receipt, {name} | {:.1} ms |",
            percentile(&latencies, p)
        );
    }
    println!("| resyncs (client fell behind, reconnected) | {resyncs} |");
    println!(
        "| CPU while publishing: server {server_cpu:.1} s, clients {client_cpu:.1} s, over {:.1} s |  |",
        elapsed.as_secs_f64()
    );
    println!(
        "| server memory: {idle_kib} KiB idle, {connected_kib} KiB with the subscribers, {peak_kib} KiB at the end | {:.1} KiB per subscriber |",
        connected_kib.saturating_sub(idle_kib) as f64 / a.subscribers as f64
    );
    Ok(())
}
