//! The status page in a real browser: headless Chromium through chromedriver (both installed by
//! the test command). Events appended to a task appear on the open page; with JavaScript off the
//! page still shows the log so far; a page that follows a long log keeps only its newest lines.
//! A screenshot is written to `target/test-artifacts/`.

mod common;

use std::time::{Duration, Instant};

use amp_orchestrator::domain::TaskState;
use common::service::{log_line, move_task};
use common::webdriver::Driver;
use common::{Backend, TestDb, TestService};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_updates_live_in_a_browser_and_works_without_javascript() {
    let db = TestDb::new(Backend::Sqlite).await;
    let service = TestService::start(&db).await;
    let ctx = service.ctx().clone();
    let task = common::service::new_task(&ctx).await;
    let log = |text: &str| {
        let ctx = ctx.clone();
        let text = text.to_string();
        async move { log_line(&ctx, task.id, &text).await }
    };
    log("Cloning octo-org/widgets").await;
    log("Starting Amp").await;
    let page = service.url(&format!("/tasks/{}", task.public_id));
    let driver = Driver::start().await;

    // With JavaScript: the page connects to the stream, and new events appear.
    let browser = driver.session(true).await;
    browser.goto(&page).await;
    let count = "return document.querySelectorAll('#log li').length";
    assert_eq!(browser.eval(count).await, 2);
    // Wait for the stream to be open before appending (the page connects after loading).
    let open = Instant::now();
    while open.elapsed() < Duration::from_secs(10) {
        if ctx.bus.watched(task.id).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ctx.bus.watched(task.id).is_some(),
        "the page subscribed to the task's events"
    );

    let appended = Instant::now();
    log("Amp is editing src/export.rs").await;
    log("Amp finished").await;
    move_task(&ctx, task.id, TaskState::Queued, TaskState::Preparing).await;
    let shown = loop {
        let lines = browser.eval(count).await;
        let state = browser.text("#state").await;
        if lines == 4 && state == "preparing" {
            break appended.elapsed();
        }
        assert!(
            appended.elapsed() < Duration::from_secs(1),
            "the new events did not appear within a second (lines: {lines}, state: {state})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "new events shown {} ms after they were stored",
        shown.as_millis()
    );
    let text = browser.text("#log").await;
    assert!(text.contains("Amp is editing src/export.rs"), "{text}");
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(artifacts.join("status-page.png"), png).unwrap();
    browser.close().await;

    // Without JavaScript: everything so far is on the page.
    let plain = driver.session(false).await;
    plain.goto(&page).await;
    let text = plain.text("#log").await;
    for line in [
        "Cloning octo-org/widgets",
        "Starting Amp",
        "Amp is editing src/export.rs",
        "Amp finished",
    ] {
        assert!(text.contains(line), "{text}");
    }
    assert_eq!(plain.text("#state").await, "preparing");
    plain.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_following_a_long_log_keeps_its_newest_lines_and_links_to_older_ones() {
    let db = TestDb::new(Backend::Sqlite).await;
    let service = TestService::start(&db).await;
    let ctx = service.ctx().clone();
    let task = common::service::new_task(&ctx).await;
    log_line(&ctx, task.id, "line 0").await;
    let page = service.url(&format!("/tasks/{}", task.public_id));
    let driver = Driver::start().await;
    let browser = driver.session(true).await;
    browser.goto(&page).await;
    let open = Instant::now();
    while ctx.bus.watched(task.id).is_none() && open.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // More lines than the page keeps (2,000) arrive while it is open.
    for i in 1..=2100 {
        log_line(&ctx, task.id, &format!("line {i}")).await;
    }
    let text = |script: &'static str| {
        let browser = &browser;
        async move {
            let value = browser.eval(script).await;
            value.as_str().unwrap_or_default().to_string()
        }
    };
    let last = "return document.querySelector('#log li:last-child').textContent";
    let arrived = Instant::now();
    while text(last).await != "line 2100" {
        assert!(
            arrived.elapsed() < Duration::from_secs(20),
            "the last line did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = "return document.querySelectorAll('#log li').length";
    assert_eq!(browser.eval(count).await, 2000);
    let first = "return document.querySelector('#log li').textContent";
    assert_eq!(text(first).await, "line 101");
    // The lines that left the page are a link away: those before the first one shown (its
    // sequence number: after the task's creation and `line 0`).
    let older = "return document.querySelector('#older a').getAttribute('href')";
    let href = text(older).await;
    assert!(href.ends_with("?before=103"), "{href}");
    browser.close().await;
}
