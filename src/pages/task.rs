//! `GET /tasks/{public_id}`: a task's status page. The public id is the capability: an unknown id
//! gets the same 404 as any other missing page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::log::{Line, line};
use crate::context::Ctx;
use crate::domain::{AgentLine, BlockedEgress, EventPayload};
use crate::entities::{task, task_event, task_round};
use crate::store::{rounds, task_log, tasks};
use crate::texts::comments::{self, round_label, round_result};

/// Log lines a page shows: the newest, or those before `?before=`; older ones are a link away.
pub const PAGE_LINES: u64 = 500;
/// State changes the timeline shows at most (the newest).
const TIMELINE_MAX: u64 = 1000;

/// A round as the page lists it.
pub struct RoundView {
    pub label: String,
    pub outcome: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "task.html")]
pub struct TaskPage {
    pub version: &'static str,
    pub public_id: String,
    pub repo: String,
    pub repo_url: String,
    /// "issue #7" or "pull request #7".
    pub subject: String,
    pub subject_url: String,
    pub requester: String,
    pub prompt: String,
    pub state: String,
    pub terminal: bool,
    pub error: Option<String>,
    pub pr: Option<(i64, String)>,
    pub duration: String,
    pub usage: Option<String>,
    pub timeline: Vec<Line>,
    pub rounds: Vec<RoundView>,
    /// Connections the sandbox refused: `3 connections to example.com:443`.
    pub blocked: Vec<String>,
    /// What the repository's setup commands printed (in the page's part of the log).
    pub setup: Vec<Line>,
    pub lines: Vec<Line>,
    /// The page with the lines before these, when there are any.
    pub older: Option<String>,
    /// This page shows an older part of the log (it does not follow the task live).
    pub past: bool,
    /// The stream of new events starts after this one.
    pub last_seq: i64,
}

/// What of a task's log a page shows, as read from the store.
pub struct LogView {
    /// State changes, oldest first.
    pub timeline: Vec<task_event::Model>,
    /// A page of the log, oldest first.
    pub lines: Vec<task_event::Model>,
    /// Whether there are lines before these.
    pub more_before: bool,
    /// The page asked for an older part of the log (`?before=`).
    pub past: bool,
    /// Every turn's result (for the usage).
    pub results: Vec<task_event::Model>,
}

/// The page for `task` with `log` and `rounds`; `web` is GitHub's web address.
pub fn page(
    task: &task::Model,
    log: &LogView,
    rounds: &[task_round::Model],
    web: &str,
    now_ms: i64,
) -> TaskPage {
    let repo_url = format!("{web}/{}", task.repo_full_name);
    let (subject, path) = if task.is_pull_request {
        ("pull request", "pull")
    } else {
        ("issue", "issues")
    };
    let mut usage = (0u64, 0u64, 0u64, false);
    for e in &log.results {
        if let EventPayload::Agent(AgentLine::Result {
            num_turns,
            input_tokens,
            output_tokens,
            ..
        }) = e.payload()
        {
            usage.0 += num_turns.unwrap_or(0);
            usage.1 += input_tokens.unwrap_or(0);
            usage.2 += output_tokens.unwrap_or(0);
            usage.3 = true;
        }
    }
    let rendered = |events: &[task_event::Model]| -> Vec<Line> {
        events.iter().map(|e| line(e.seq, &e.payload())).collect()
    };
    // Setup's output has a section of its own; the log keeps the rest.
    let (setup, lines): (Vec<Line>, Vec<Line>) = rendered(&log.lines)
        .into_iter()
        .partition(|l| l.class == "setup");
    let older = match (log.more_before, log.lines.first()) {
        (true, Some(first)) => Some(format!("/tasks/{}?before={}", task.public_id, first.seq)),
        _ => None,
    };
    let end = task.finished_at.unwrap_or(now_ms);
    let secs = ((end - task.created_at).max(0) / 1000) as u64;
    TaskPage {
        version: env!("CARGO_PKG_VERSION"),
        public_id: task.public_id.clone(),
        repo: task.repo_full_name.clone(),
        subject: format!("{subject} #{}", task.issue_number),
        subject_url: format!("{repo_url}/{path}/{}", task.issue_number),
        repo_url: repo_url.clone(),
        requester: task.requester_login.clone(),
        prompt: task.prompt.clone(),
        state: task.state.as_str().to_string(),
        terminal: task.state.is_terminal(),
        error: task.error_message.clone(),
        pr: task.pr_number.map(|n| (n, format!("{repo_url}/pull/{n}"))),
        duration: humantime::format_duration(std::time::Duration::from_secs(secs)).to_string(),
        usage: usage.3.then(|| {
            format!(
                "{} turns, {} input tokens, {} output tokens",
                usage.0, usage.1, usage.2
            )
        }),
        timeline: rendered(&log.timeline),
        rounds: rounds.iter().map(round_view).collect(),
        blocked: comments::blocked_list(
            &BlockedEgress::from_stored(task.egress_blocked.as_deref()),
            |address| address.to_string(),
        ),
        setup,
        lines,
        older,
        past: log.past,
        // Read with the task, before its events: whatever came after is streamed (a line both
        // on the page and in the stream shows once).
        last_seq: task.last_seq,
    }
}

fn round_view(r: &task_round::Model) -> RoundView {
    RoundView {
        label: round_label(r, str::to_string),
        outcome: round_result(r),
    }
}

#[derive(serde::Deserialize)]
pub struct Before {
    before: Option<i64>,
}

/// What the page shows of the log: a page of it, the timeline and the results, never the whole.
async fn read_log(
    db: &sea_orm::DatabaseConnection,
    task: &task::Model,
    before: Option<i64>,
) -> Result<LogView, sea_orm::DbErr> {
    let mut lines = task_log::lines_before(db, task.id, before, PAGE_LINES + 1).await?;
    let more_before = lines.len() as u64 > PAGE_LINES;
    lines.truncate(PAGE_LINES as usize);
    lines.reverse();
    Ok(LogView {
        timeline: task_log::timeline(db, task.id, TIMELINE_MAX).await?,
        lines,
        more_before,
        past: before.is_some(),
        results: task_log::turn_results(db, task.id).await?,
    })
}

pub async fn show(
    State(ctx): State<Ctx>,
    Path(public_id): Path<String>,
    Query(query): Query<Before>,
) -> Response {
    let task = match tasks::get_by_public_id(&ctx.db, &public_id).await {
        Ok(Some(task)) => task,
        Ok(None) => return super::not_found(),
        Err(e) => return super::internal_error(e),
    };
    let log = match read_log(&ctx.db, &task, query.before).await {
        Ok(log) => log,
        Err(e) => return super::internal_error(e),
    };
    let rounds = match rounds::list(&ctx.db, task.id).await {
        Ok(rounds) => rounds,
        Err(e) => return super::internal_error(e),
    };
    page(
        &task,
        &log,
        &rounds,
        &ctx.config.web_url(),
        crate::db::now_ms(),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CommitSha, EventKind, RoundKind, RoundOutcome, TaskId, TaskState};
    use askama::Template;
    use serde_json::json;

    fn task(state: TaskState) -> task::Model {
        task::Model {
            id: TaskId(1),
            public_id: "q5bV8m1dXJ0tC2hRk9LwZa3Y".into(),
            installation_id: 77,
            repo_id: 9,
            repo_full_name: "octo-org/widgets".into(),
            clone_url: "https://github.com/octo-org/widgets.git".into(),
            default_branch: "main".into(),
            issue_number: 21,
            is_pull_request: false,
            issue_title: "Add a --json flag".into(),
            issue_body: String::new(),
            requester_login: "octocat".into(),
            requester_id: 1,
            comment_id: 5,
            delivery_id: None,
            prompt: "add a --json flag to <export>".into(),
            state,
            last_seq: 0,
            status_comment_id: None,
            branch: Some("amp/21-add-a-json-flag-q5bv8m".into()),
            pr_number: None,
            head_sha: None,
            thread_id: None,
            ci_round: 0,
            error_message: None,
            lease_owner: None,
            lease_until: None,
            stop_requested_at: None,
            stop_note: None,
            awaiting_since: None,
            command_delivery_id: None,
            status_note: None,
            egress_blocked: None,
            repo_config: None,
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_000,
            started_at: None,
            finished_at: None,
        }
    }

    fn event(seq: i64, kind: EventKind, data: serde_json::Value) -> task_event::Model {
        task_event::Model {
            id: seq,
            task_id: TaskId(1),
            seq,
            kind,
            data: data.to_string(),
            created_at: 1_700_000_000_000 + seq * 1000,
        }
    }

    fn events(states: &[&str]) -> Vec<task_event::Model> {
        let mut out = vec![event(
            1,
            EventKind::State,
            json!({"from": null, "to": "queued", "reason": "task created"}),
        )];
        let mut from = "queued";
        for (i, to) in states.iter().enumerate() {
            out.push(event(
                out.len() as i64 + 1,
                EventKind::State,
                json!({"from": from, "to": to, "reason": null}),
            ));
            from = to;
            if i == 1 {
                for data in [
                    json!({"type": "init", "thread_id": "T-1"}),
                    json!({"type": "text", "text": "I will add the flag."}),
                    json!({"type": "tool_use", "name": "Bash", "input": {"cmd": "cargo test"}}),
                    json!({"type": "tool_result", "is_error": false, "output": "test result: ok"}),
                    json!({"type": "stderr", "text": "\u{1b}[33mwarning\u{1b}[0m: unused"}),
                    json!({"type": "result", "is_error": false, "text": "Added --json.", "duration_ms": 4200, "num_turns": 3, "input_tokens": 100, "output_tokens": 20}),
                ] {
                    out.push(event(out.len() as i64 + 1, EventKind::Agent, data));
                }
            }
        }
        out
    }

    /// The view the store gives of `events` (the newest `PAGE_LINES` lines).
    fn view(events: Vec<task_event::Model>) -> LogView {
        let (timeline, mut lines): (Vec<_>, Vec<_>) =
            events.into_iter().partition(|e| e.kind == EventKind::State);
        let results = lines
            .iter()
            .filter(|e| matches!(e.payload(), EventPayload::Agent(AgentLine::Result { .. })))
            .cloned()
            .collect();
        let more_before = lines.len() > PAGE_LINES as usize;
        lines.drain(..lines.len().saturating_sub(PAGE_LINES as usize));
        LogView {
            timeline,
            lines,
            more_before,
            past: false,
            results,
        }
    }

    fn render(t: &task::Model, states: &[&str], rounds: &[task_round::Model]) -> String {
        let mut t = t.clone();
        let events = events(states);
        t.last_seq = events.last().map_or(0, |e| e.seq);
        page(
            &t,
            &view(events),
            rounds,
            "https://github.com",
            1_700_000_090_000,
        )
        .render()
        .unwrap()
    }

    #[test]
    fn pages_in_each_state() {
        insta::assert_snapshot!("page_queued", render(&task(TaskState::Queued), &[], &[]));
        insta::assert_snapshot!(
            "page_running",
            render(&task(TaskState::Running), &["preparing", "running"], &[])
        );
        let mut awaiting = task(TaskState::AwaitingCi);
        awaiting.pr_number = Some(22);
        let round = task_round::Model {
            id: 1,
            task_id: TaskId(1),
            round: 1,
            kind: RoundKind::Ci,
            head_sha: Some(CommitSha("0123456789".into())),
            failed_checks: r#"[{"name": "test", "conclusion": "failure"}]"#.into(),
            fingerprint: None,
            prompt: "CI failed".into(),
            requested_by: None,
            outcome: Some(RoundOutcome::Pushed),
            result_sha: Some(CommitSha("abcdef0123".into())),
            created_at: 0,
            finished_at: Some(0),
        };
        insta::assert_snapshot!(
            "page_awaiting_ci",
            render(
                &awaiting,
                &["preparing", "running", "pushing", "awaiting_ci"],
                std::slice::from_ref(&round)
            )
        );
        let mut succeeded = awaiting.clone();
        succeeded.state = TaskState::Succeeded;
        succeeded.finished_at = Some(1_700_000_075_000);
        succeeded.egress_blocked = Some(
            r#"[{"host": "example.com", "port": 443, "count": 2}, {"host": "x", "port": 0, "count": 1}]"#
                .into(),
        );
        insta::assert_snapshot!(
            "page_succeeded",
            render(
                &succeeded,
                &[
                    "preparing",
                    "running",
                    "pushing",
                    "awaiting_ci",
                    "succeeded"
                ],
                &[round]
            )
        );
        let mut failed = task(TaskState::Failed);
        failed.error_message = Some("the agent image is not present on the Docker engine".into());
        failed.finished_at = Some(1_700_000_002_000);
        insta::assert_snapshot!(
            "page_failed",
            render(&failed, &["preparing", "failed"], &[])
        );
    }

    #[test]
    fn setup_output_has_a_section_of_its_own() {
        let mut events = events(&["preparing"]);
        for text in ["$ npm ci", "added 12 packages"] {
            let seq = events.len() as i64 + 1;
            events.push(event(
                seq,
                EventKind::Agent,
                json!({"type": "setup", "text": text}),
            ));
        }
        let t = task(TaskState::Running);
        let html = page(&t, &view(events), &[], "https://github.com", 0)
            .render()
            .unwrap();
        let setup = html.find("<ol id=\"setup\"").expect("the setup section");
        let log = html.find("<ol id=\"log\"").expect("the log");
        let added = html.find("added 12 packages").unwrap();
        assert!(setup < added && added < log, "{html}");
        assert!(!html.contains("id=\"setup-section\" hidden"), "{html}");
        // Without setup the section is there for the live stream, hidden.
        let plain = page(
            &t,
            &view(super::tests::events(&["preparing"])),
            &[],
            "https://github.com",
            0,
        )
        .render()
        .unwrap();
        assert!(plain.contains("id=\"setup-section\" hidden"), "{plain}");
    }

    #[test]
    fn a_long_log_shows_its_newest_lines_and_links_to_older_ones() {
        let mut events = events(&["preparing", "running"]);
        for _ in 0..2 * PAGE_LINES {
            let seq = events.len() as i64 + 1;
            events.push(event(
                seq,
                EventKind::Agent,
                json!({"type": "raw", "text": format!("line {seq}")}),
            ));
        }
        let newest = events.last().unwrap().seq;
        let mut t = task(TaskState::Running);
        t.last_seq = newest;
        let html = page(&t, &view(events), &[], "https://github.com", 0)
            .render()
            .unwrap();
        let shown = html.matches("class=\"raw\"").count();
        assert_eq!(shown, PAGE_LINES as usize, "{html}");
        assert!(html.contains(&format!(">line {newest}</li>")));
        let oldest_shown = newest - PAGE_LINES as i64 + 1;
        assert!(!html.contains(&format!(">line {}</li>", oldest_shown - 1)));
        assert!(
            html.contains(&format!(
                "href=\"/tasks/q5bV8m1dXJ0tC2hRk9LwZa3Y?before={oldest_shown}\""
            )),
            "{html}"
        );
        // The usage still counts every turn.
        assert!(html.contains("3 turns, 100 input tokens"), "{html}");
    }
}
