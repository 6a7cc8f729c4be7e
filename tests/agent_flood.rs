//! An agent that prints without end cannot take the service down: the real service and worker,
//! the real Docker engine and the stub agent told by its repository (`.amp-stub/flood`) to flood
//! its output: one endless line on stdout, the same on stderr, and a million lines. The
//! process's memory stays within a bound, the task's log stays within its bounds, and the task
//! ends saying why.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use amp_orchestrator::domain::{AgentLine, EventKind, EventPayload};
use amp_orchestrator::entities::task_event;
use common::TestDb;
use common::story::{Story, story_with};

/// The task's log keeps at most this many lines and bytes of the agent's output (the defaults
/// of `OutputLimits`).
const TASK_LINES: usize = 20_000;
const TASK_BYTES: u64 = 16 * 1024 * 1024;
/// Lines the status page shows.
const PAGE_LINES: usize = 500;
/// How much the test process (the service, the test's own clients and the simulator) may grow
/// while an agent floods. Several flooding tasks run at once in this file.
const MEMORY_BOUND_KIB: u64 = 400 * 1024;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Watches the process's resident memory until dropped: the most it grew above where it began.
struct MemoryWatch {
    peak_growth: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl MemoryWatch {
    fn start() -> MemoryWatch {
        let peak_growth = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (peak, stop) = (peak_growth.clone(), done.clone());
        let base = rss_kib();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let growth = rss_kib().saturating_sub(base);
                peak.fetch_max(growth, Ordering::Relaxed);
                // Fail long before the machine runs out (a panic here would only end this
                // thread).
                if growth > 4 * MEMORY_BOUND_KIB {
                    eprintln!("the process grew by {growth} KiB while the agent flooded");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        MemoryWatch { peak_growth, done }
    }

    fn peak_growth_kib(&self) -> u64 {
        self.peak_growth.load(Ordering::Relaxed)
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

async fn flooding(db: TestDb, how: &str) -> Story {
    let flood = format!("{how}\n");
    story_with(
        db,
        &[],
        &[("README.md", "# widgets\n"), (".amp-stub/flood", &flood)],
    )
    .await
}

/// The agent's output the log keeps (everything but the turns' results): lines and bytes.
fn droppable(events: &[task_event::Model]) -> (usize, u64) {
    let kept: Vec<&task_event::Model> = events
        .iter()
        .filter(|e| e.kind == EventKind::Agent && !e.data.starts_with(AgentLine::RESULT_PREFIX))
        .collect();
    (kept.len(), kept.iter().map(|e| e.data.len() as u64).sum())
}

both_backends!(
    an_agent_printing_one_endless_line_is_stopped_with_the_reason,
    |db: TestDb| async move {
        let watch = MemoryWatch::start();
        let s = flooding(db, "nonewline").await;
        s.sim
            .comment(&s.repo, 31, "writer", "/amp print forever")
            .await;
        let task = s.wait_for_state("failed", 120).await;
        let reason = task.error_message.clone().unwrap();
        assert!(
            reason.contains("Amp printed more than 256 MiB of output in one turn"),
            "{reason}"
        );
        s.status_saying(31, "printed more than 256 MiB").await;

        // The endless line is in the log once, cut and marked; nothing else grew.
        let events = s.events(task.id).await;
        let cut: Vec<String> = events
            .iter()
            .filter_map(|e| match e.payload() {
                EventPayload::Agent(AgentLine::Raw { text }) if text.contains("[line cut:") => {
                    Some(text)
                }
                _ => None,
            })
            .collect();
        assert_eq!(cut.len(), 1, "{:?}", events.len());
        assert!(cut[0].starts_with("yyyy"), "{}", &cut[0][..64]);
        assert!(cut[0].len() < 64 * 1024 + 100, "{}", cut[0].len());
        let (lines, bytes) = droppable(&events);
        assert!(lines < 20, "{lines}");
        assert!(bytes < 128 * 1024, "{bytes}");
        s.assert_no_containers_for(&task).await;
        let growth = watch.peak_growth_kib();
        assert!(
            growth < MEMORY_BOUND_KIB,
            "the process grew by {growth} KiB while the agent flooded"
        );
    }
);

both_backends!(
    an_agent_flooding_stderr_is_stopped_too,
    |db: TestDb| async move {
        let watch = MemoryWatch::start();
        let s = flooding(db, "stderr").await;
        s.sim
            .comment(&s.repo, 33, "writer", "/amp complain forever")
            .await;
        let task = s.wait_for_state("failed", 120).await;
        let reason = task.error_message.clone().unwrap();
        assert!(reason.contains("printed more than 256 MiB"), "{reason}");
        let events = s.events(task.id).await;
        let cut: Vec<String> = events
            .iter()
            .filter_map(|e| match e.payload() {
                EventPayload::Agent(AgentLine::Stderr { text }) => Some(text),
                _ => None,
            })
            .collect();
        assert_eq!(cut.len(), 1, "{}", events.len());
        assert!(cut[0].starts_with("eeee") && cut[0].contains("[line cut:"));
        s.assert_no_containers_for(&task).await;
        let growth = watch.peak_growth_kib();
        assert!(
            growth < MEMORY_BOUND_KIB,
            "the process grew by {growth} KiB while the agent flooded"
        );
    }
);

both_backends!(
    an_agent_printing_a_million_lines_leaves_the_newest_within_bounds,
    |db: TestDb| async move {
        let watch = MemoryWatch::start();
        let s = flooding(db, "lines").await;
        s.sim
            .comment(&s.repo, 32, "writer", "/amp count to a million")
            .await;
        // The agent goes on after its lines and ends as usual: no change was asked for.
        let task = s.wait_for_state("succeeded", 300).await;

        let events = s.events(task.id).await;
        let (lines, bytes) = droppable(&events);
        assert!(lines <= TASK_LINES, "{lines} lines kept");
        assert!(bytes <= TASK_BYTES, "{bytes} bytes kept");
        // One marker, where the dropped lines were, counting them.
        let markers: Vec<(usize, u64)> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e.payload() {
                EventPayload::Agent(AgentLine::Dropped { lines, .. }) => Some((i, lines)),
                _ => None,
            })
            .collect();
        assert_eq!(markers.len(), 1, "{markers:?}");
        let (at, dropped) = markers[0];
        // The numbers after the marker are the newest, in order and without a gap, up to the
        // millionth.
        let numbers: Vec<u64> = events[at + 1..]
            .iter()
            .filter_map(|e| match e.payload() {
                EventPayload::Agent(AgentLine::Raw { text }) => text.parse().ok(),
                _ => None,
            })
            .collect();
        assert_eq!(numbers.last(), Some(&1_000_000));
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(numbers.len() > TASK_LINES / 2, "{}", numbers.len());
        // Every line is either kept or counted by the marker (the agent's own messages before
        // the flood are dropped too).
        let first_kept = numbers[0];
        assert!(dropped >= first_kept - 1, "{dropped} < {first_kept}");
        // Lifecycle events and the turn's result are all there.
        let states = events.iter().filter(|e| e.kind == EventKind::State).count();
        assert!(states >= 4, "{states}");
        assert!(
            events
                .iter()
                .any(|e| e.data.starts_with(AgentLine::RESULT_PREFIX))
        );

        // The page shows the newest lines and links to older ones; the older page links back.
        let page_url = s.service.url(&format!("/tasks/{}", task.public_id));
        let html = s.service.http.get(&page_url).send().await.unwrap();
        assert_eq!(html.status(), 200);
        let html = html.text().await.unwrap();
        let log = html.split("<ol id=\"log\"").nth(1).unwrap();
        assert_eq!(log.matches("<li ").count(), PAGE_LINES, "{}", html.len());
        assert!(log.contains(">1000000</li>"));
        assert!(html.contains("3 turns"), "the usage is shown");
        let older = html
            .split("<p id=\"older\" class=\"older\"><a href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a link to older lines");
        assert!(older.contains("?before="), "{older}");
        let older_html = s
            .service
            .http
            .get(s.service.url(&older.replace("&amp;", "&")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let older_log = older_html.split("<ol id=\"log\"").nth(1).unwrap();
        assert_eq!(older_log.matches("<li ").count(), PAGE_LINES);
        assert!(!older_log.contains(">1000000</li>"));
        assert!(older_html.contains("data-live=\"false\""));
        assert!(older_html.contains("Newest lines"));
        s.assert_no_containers_for(&task).await;
        let growth = watch.peak_growth_kib();
        assert!(
            growth < MEMORY_BOUND_KIB,
            "the process grew by {growth} KiB while the agent printed"
        );
    }
);

both_backends!(
    a_secret_written_in_two_pieces_is_masked_in_the_log,
    |db: TestDb| async move {
        let s = flooding(db, "split-secret").await;
        s.sim
            .comment(&s.repo, 33, "writer", "/amp print something")
            .await;
        let task = s.wait_for_state("succeeded", 120).await;
        let events = s.events(task.id).await;
        let texts: Vec<String> = events
            .iter()
            .filter_map(|e| match e.payload() {
                EventPayload::Agent(AgentLine::Raw { text }) if text.starts_with("stdout ") => {
                    Some(text)
                }
                EventPayload::Agent(AgentLine::Stderr { text }) => Some(text),
                _ => None,
            })
            .collect();
        // Each stream's two pieces make one line, masked as a whole.
        assert_eq!(
            texts,
            ["stdout token=[REDACTED] end", "stderr token=[REDACTED] end"],
            "{events:#?}"
        );
        assert!(events.iter().all(|e| !e.data.contains("ABCDEFGHIJklmnop")));
    }
);
