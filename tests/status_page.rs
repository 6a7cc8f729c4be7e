//! The status page and its live stream over the real router and database: replay, live events,
//! resuming after `Last-Event-ID` without gaps or duplicates, the final event, a client too slow
//! to keep up, and what unknown ids and every page answer.

mod common;

use std::time::Duration;

use amp_orchestrator::context::Ctx;
use amp_orchestrator::domain::{TaskId, TaskState};
use common::service::new_task;
use common::sse::{SseClient, SseEvent};
use common::{TestDb, TestService};

const WAIT: Duration = Duration::from_secs(10);

async fn log(ctx: &Ctx, task_id: TaskId, text: &str) -> i64 {
    common::service::log_line(ctx, task_id, text).await
}

async fn move_to(ctx: &Ctx, task_id: TaskId, from: TaskState, to: TaskState) {
    common::service::move_task(ctx, task_id, from, to).await
}

fn seqs(events: &[SseEvent]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.event == "line" || e.event == "state")
        .map(SseEvent::seq)
        .collect()
}

both_backends!(
    the_stream_replays_then_goes_live_and_ends_with_the_task,
    |db: TestDb| async move {
        let service = TestService::start(&db).await;
        let ctx = service.ctx().clone();
        let task = new_task(&ctx).await;
        log(&ctx, task.id, "first").await;
        log(&ctx, task.id, "second").await;
        let url = service.url(&format!("/tasks/{}/events", task.public_id));

        let mut client = SseClient::connect(&url, None).await;
        let h = &client.response_headers;
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["x-accel-buffering"], "no");
        assert_eq!(h["cache-control"], "no-cache");
        // Replay: the creation (a state change) and the two lines.
        let created = client.next(WAIT).await.unwrap();
        assert_eq!((created.event.as_str(), created.seq()), ("state", 1));
        assert_eq!(created.json()["state"], "queued");
        let first = client.next(WAIT).await.unwrap();
        assert_eq!((first.event.as_str(), first.seq()), ("line", 2));
        assert!(first.json()["html"].as_str().unwrap().contains("first"));
        assert_eq!(client.next(WAIT).await.unwrap().seq(), 3);

        // Live.
        log(&ctx, task.id, "third").await;
        let third = client.next(WAIT).await.unwrap();
        assert_eq!(third.seq(), 4);
        assert!(third.data.contains("third"));
        move_to(&ctx, task.id, TaskState::Queued, TaskState::Preparing).await;
        let state = client.next(WAIT).await.unwrap();
        assert_eq!((state.event.as_str(), state.seq()), ("state", 5));
        assert_eq!(state.json()["state"], "preparing");

        // The end: the last state change, then `end`, then the stream closes.
        move_to(&ctx, task.id, TaskState::Preparing, TaskState::Cancelled).await;
        let rest = client.until_end(WAIT).await;
        let names: Vec<&str> = rest.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, ["state", "end"]);
        assert_eq!(rest[0].seq(), 6);

        // A finished task: everything, then `end`.
        let all = SseClient::connect(&url, None).await.until_end(WAIT).await;
        assert_eq!(seqs(&all), [1, 2, 3, 4, 5, 6]);
        assert_eq!(all.last().unwrap().event, "end");
    }
);

both_backends!(
    resuming_after_last_event_id_has_no_gap_and_no_duplicate,
    |db: TestDb| async move {
        let service = TestService::start(&db).await;
        let ctx = service.ctx().clone();
        let task = new_task(&ctx).await;
        for i in 0..5 {
            log(&ctx, task.id, &format!("line {i}")).await;
        }
        let url = service.url(&format!("/tasks/{}/events", task.public_id));
        // The header wins over the query (the browser sends both after a reconnect).
        let mut client = SseClient::connect(&format!("{url}?after=1"), Some(4)).await;
        assert_eq!(client.next(WAIT).await.unwrap().seq(), 5);
        assert_eq!(client.next(WAIT).await.unwrap().seq(), 6);
        log(&ctx, task.id, "live").await;
        assert_eq!(client.next(WAIT).await.unwrap().seq(), 7);
        // The query alone, as the page's first connection uses it.
        let mut client = SseClient::connect(&format!("{url}?after=6"), None).await;
        assert_eq!(client.next(WAIT).await.unwrap().seq(), 7);
        log(&ctx, task.id, "more").await;
        assert_eq!(client.next(WAIT).await.unwrap().seq(), 8);
    }
);

both_backends!(
    a_client_too_slow_to_keep_up_resyncs_from_its_last_id,
    |db: TestDb| async move {
        let service = TestService::start(&db).await;
        let ctx = service.ctx().clone();
        let task = new_task(&ctx).await;
        let url = service.url(&format!("/tasks/{}/events", task.public_id));
        let mut slow = SseClient::connect(&url, None).await;
        assert_eq!(slow.next(WAIT).await.unwrap().seq(), 1);
        // The client reads nothing while the task logs far more than the socket buffers hold.
        let big = "x".repeat(4096);
        let mut last = 0;
        for i in 0..3000 {
            last = log(&ctx, task.id, &format!("{i} {big}")).await;
        }
        // It reads what was in flight, then a resync marker, and the stream closes.
        let got = slow.until_end(Duration::from_secs(30)).await;
        let resync = got.last().unwrap();
        assert_eq!(resync.event, "resync", "{:?}", got.last());
        let received = seqs(&got);
        let upto = *received.last().unwrap();
        assert_eq!(received, (2..=upto).collect::<Vec<_>>(), "no gap");
        assert!(upto < last, "it fell behind");
        assert_eq!(resync.json()["last"], upto);
        // Reconnecting from its last id brings the rest, without gaps or duplicates.
        let mut again = SseClient::connect(&url, Some(upto)).await;
        let mut rest = Vec::new();
        while rest.last() != Some(&last) {
            rest.push(again.next(WAIT).await.unwrap().seq());
        }
        assert_eq!(rest, ((upto + 1)..=last).collect::<Vec<_>>());
    }
);

both_backends!(
    unknown_ids_look_like_any_missing_page,
    |db: TestDb| async move {
        let service = TestService::start(&db).await;
        let ctx = service.ctx().clone();
        let task = new_task(&ctx).await;
        let get = |path: String| {
            let http = service.http.clone();
            let url = service.url(&path);
            async move {
                let r = http.get(url).send().await.unwrap();
                (
                    r.status().as_u16(),
                    r.headers().clone(),
                    r.text().await.unwrap(),
                )
            }
        };
        let (status, headers, page) = get(format!("/tasks/{}", task.public_id)).await;
        assert_eq!(status, 200);
        assert!(page.contains("add a --json flag"));
        assert!(page.contains(r#"<script src="/static/task.js" defer></script>"#));
        assert!(!page.contains("<script>"), "no inline script");
        assert!(!page.contains("style="), "no inline style");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["x-content-type-options"], "nosniff");

        let unknown = get("/tasks/AAAAAAAAAAAAAAAAAAAAAAAA".into()).await;
        let unknown_events = get("/tasks/AAAAAAAAAAAAAAAAAAAAAAAA/events".into()).await;
        let elsewhere = get("/no/such/page".into()).await;
        for (status, headers, body) in [&unknown, &unknown_events, &elsewhere] {
            assert_eq!(*status, 404);
            assert_eq!(body, &elsewhere.2);
            assert_eq!(headers["content-type"], elsewhere.1["content-type"]);
            assert_eq!(headers["referrer-policy"], "no-referrer");
        }
        let (status, headers, js) = get("/static/task.js".into()).await;
        assert_eq!(status, 200);
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        assert!(js.contains("EventSource"));
    }
);

both_backends!(an_idle_stream_gets_keep_alives, |db: TestDb| async move {
    let service = TestService::start_full(
        common::service::test_env(&db),
        amp_orchestrator::context::Tunables {
            sse_keep_alive: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await;
    let task = new_task(service.ctx()).await;
    let response = reqwest::get(service.url(&format!("/tasks/{}/events", task.public_id)))
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let started = std::time::Instant::now();
    while !seen.contains(": keep-alive\n\n") {
        use futures::StreamExt;
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("the stream went silent")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.starts_with("id: 1\nevent: state\n"), "{seen}");
    assert!(started.elapsed() >= Duration::from_millis(150));
});
