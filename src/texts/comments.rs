//! Every comment the App posts, built by a pure function (snapshot-tested), so wording changes
//! show up in review.

use crate::domain::{BlockedEgress, RoundKind, RoundOutcome, TaskState};
use crate::entities::{task, task_round};

/// What a status comment shows about its task.
#[derive(Debug, Clone)]
pub struct TaskView<'a> {
    pub public_url: &'a str,
    pub public_id: &'a str,
    pub state: TaskState,
    pub requester: &'a str,
    /// The pull request, once there is one.
    pub pr_url: Option<&'a str>,
    /// What happened, in a sentence (the agent's summary, or why the task ended).
    pub note: Option<&'a str>,
    /// The CI rounds so far, from [`rounds_section`].
    pub rounds: Option<&'a str>,
    /// What the sandbox refused, from [`blocked_section`].
    pub blocked: Option<&'a str>,
}

impl<'a> TaskView<'a> {
    /// A task as stored (its state; no pull request link, note or rounds).
    pub fn of(task: &'a task::Model, public_url: &'a str) -> TaskView<'a> {
        TaskView {
            public_url,
            public_id: &task.public_id,
            state: task.state,
            requester: &task.requester_login,
            pr_url: None,
            note: None,
            rounds: None,
            blocked: None,
        }
    }

    pub fn link(&self) -> String {
        format!("{}/tasks/{}", self.public_url, self.public_id)
    }
}

fn state_line(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "Queued: waiting for a free worker.",
        TaskState::Preparing => "Preparing the workspace.",
        TaskState::Running => "Amp is working on it.",
        TaskState::Pushing => "Pushing the changes.",
        TaskState::AwaitingCi => "Waiting for CI.",
        TaskState::Fixing => "CI failed; Amp is fixing it.",
        TaskState::Succeeded => "Done.",
        TaskState::Failed => "Failed.",
        TaskState::Cancelled => "Stopped.",
        TaskState::TimedOut => "Timed out.",
        TaskState::NeedsHuman => "Needs a human to take over.",
    }
}

/// The one comment per task, edited as the task progresses.
pub fn status_comment(task: &TaskView) -> String {
    let heading = if task.state.is_terminal() {
        "**amp-orchestrator**"
    } else {
        "👀 **amp-orchestrator** is working on it"
    };
    let pr = task
        .pr_url
        .map(|url| format!("Pull request: {url}\n\n"))
        .unwrap_or_default();
    let note = task
        .note
        .filter(|n| !n.trim().is_empty())
        .map(|n| format!("> {}\n\n", n.trim().replace('\n', "\n> ")))
        .unwrap_or_default();
    let rounds = task.rounds.map(|r| format!("{r}\n\n")).unwrap_or_default();
    let blocked = task.blocked.map(|b| format!("{b}\n\n")).unwrap_or_default();
    let stop = if task.state.is_terminal() {
        ""
    } else {
        " · `/amp stop` stops it"
    };
    format!(
        "{heading}\n\n\
         State: `{state}`. {line}\n\n\
         {pr}{note}{rounds}{blocked}\
         [Follow the task]({link}) · requested by @{requester}{stop}\n\n\
         <!-- amp-orchestrator task {id} -->",
        state = task.state.as_str(),
        line = state_line(task.state),
        link = task.link(),
        requester = task.requester,
        id = task.public_id,
    )
}

/// One line per agent round after the first, for the status comment; `None` without rounds.
pub fn rounds_section(rounds: &[task_round::Model], max_ci: u32) -> Option<String> {
    if rounds.is_empty() {
        return None;
    }
    let ci_used = rounds
        .iter()
        .filter(|r| r.kind == RoundKind::Ci && r.outcome != Some(RoundOutcome::GaveUp))
        .count();
    let mut out = format!("**Rounds** (CI rounds used: {ci_used} of {max_ci})\n");
    for r in rounds {
        let what = round_label(r, |name| format!("`{name}`"));
        let result = round_result(r);
        out.push_str(&format!("- {what} → {result}\n"));
    }
    Some(out.trim_end().to_string())
}

/// The connections the sandbox refused, for the status comment; `None` when there were none.
pub fn blocked_section(blocked: &[BlockedEgress]) -> Option<String> {
    (!blocked.is_empty()).then(|| {
        format!(
            "**Blocked by the sandbox**: {}. The agent can reach only the hosts on its \
             allowlist; an operator can add one to `AGENT_EGRESS_ALLOW`.",
            blocked_list(blocked, |address| format!("`{address}`")).join(", ")
        )
    })
}

/// The connections the sandbox refused, most tried hosts first, at most ten of them, each as
/// `3 connections to example.com:443` (`code` marks up the address: Markdown, or nothing).
pub fn blocked_list(blocked: &[BlockedEgress], code: impl Fn(&str) -> String) -> Vec<String> {
    let mut sorted: Vec<&BlockedEgress> = blocked.iter().collect();
    // The hosts the gateway stopped naming come last.
    sorted.sort_by(|a, b| {
        (a.port == 0)
            .cmp(&(b.port == 0))
            .then(b.count.cmp(&a.count))
            .then(a.host.cmp(&b.host))
    });
    let mut named: Vec<String> = sorted
        .iter()
        .take(10)
        .map(|b| match b.port {
            0 => format!("{} to other hosts", connections(b.count)),
            _ => format!("{} to {}", connections(b.count), code(&b.address())),
        })
        .collect();
    let unnamed: u64 = sorted.iter().skip(10).map(|b| b.count).sum();
    if unnamed > 0 {
        named.push(format!("{} to other hosts", connections(unnamed)));
    }
    named
}

/// `1 connection`, `3 connections`.
fn connections(count: u64) -> String {
    if count == 1 {
        "1 connection".into()
    } else {
        format!("{count} connections")
    }
}

/// What a round was, in words; `code` marks up a check's name (Markdown, or nothing).
pub fn round_label(round: &task_round::Model, code: impl Fn(&str) -> String) -> String {
    match round.kind {
        RoundKind::Ci => {
            let checks: Vec<String> = round
                .failed_checks()
                .iter()
                .map(|c| format!("{} ({})", code(&c.name), c.conclusion))
                .collect();
            format!("CI round {}: {} failed", round.round, checks.join(", "))
        }
        RoundKind::Retry => format!("Retried with {}", code("/amp retry")),
        RoundKind::FollowUp => format!(
            "Follow-up from @{}",
            round.requested_by.as_deref().unwrap_or("someone")
        ),
    }
}

/// How a round came out, in words.
pub fn round_result(round: &task_round::Model) -> String {
    match (round.outcome, &round.result_sha) {
        (Some(RoundOutcome::Pushed), Some(sha)) => format!("pushed {}", sha.short()),
        (Some(RoundOutcome::Pushed), None) => "pushed".into(),
        (Some(RoundOutcome::NoChanges), _) => "Amp made no change".into(),
        (Some(RoundOutcome::GaveUp), _) => "not sent to Amp: the loop gave up".into(),
        (None, _) => "Amp is working on it".into(),
    }
}

/// On a pull request opened as work in progress (no drafts in the repository), once it is ready.
pub fn ready_for_review(requester: &str) -> String {
    format!("Ready for review, @{requester}: the work-in-progress mark is removed.")
}

/// The answer to `/amp help` (and to `/amp` alone).
pub fn help() -> String {
    "**amp-orchestrator** runs the Amp coding agent on this repository and opens a pull request.\n\n\
     | Command | What it does |\n\
     |---|---|\n\
     | `/amp <what to do>` | Start a task; the rest of the comment is the prompt. |\n\
     | `/amp status` | Show the current task's state and link. |\n\
     | `/amp stop` | Stop the running task. |\n\
     | `/amp retry` | Run the last task again. |\n\
     | `/amp config` | Show this repository's settings (`.github/amp.toml`) and any problem with them. |\n\
     | `/amp config --rebuild` | Remove this repository's setup snapshots: the next task runs setup from the start. |\n\
     | `/amp help` | This list. |\n\n\
     Commands are lines that start with `/amp`; people with write access to the repository can \
     use them."
        .to_string()
}

/// Someone without enough access asked for something.
pub fn not_permitted(login: &str, role: &str, minimum: &str) -> String {
    format!(
        "@{login}, nothing was started: `/amp` commands need {minimum} access to this \
         repository, and yours is {role}. Ask a maintainer to run it for you."
    )
}

/// `/amp status` with a task to report on.
pub fn status_reply(task: &TaskView) -> String {
    format!(
        "The latest task on this issue is `{state}`: {line} [Follow the task]({link}).",
        state = task.state.as_str(),
        line = state_line(task.state),
        link = task.link(),
    )
}

/// `/amp status` on an issue that never had a task.
pub fn no_task() -> String {
    "There is no task on this issue yet. Comment `/amp <what to do>` to start one.".to_string()
}

/// A prompt while a task is still active on the same issue.
pub fn already_running(login: &str, task: &TaskView) -> String {
    format!(
        "@{login}, a task is already running on this issue (`{state}`, [follow it]({link})). \
         Comment `/amp stop` to stop it before starting another.",
        state = task.state.as_str(),
        link = task.link(),
    )
}

/// A follow-up prompt on a task's pull request was taken.
pub fn follow_up_accepted(login: &str, task: &TaskView) -> String {
    format!(
        "@{login}, Amp picks this up on the same branch and thread: [follow the task]({link}).",
        link = task.link(),
    )
}

/// A command that came while a round of the task runs: kept for the next round.
pub fn queued_for_next_round(login: &str, task: &TaskView) -> String {
    format!(
        "@{login}, noted: a round of this task is under way (`{state}`). Amp takes this up in \
         the next round, with anything else asked meanwhile, in order ([follow the task]({link})). \
         Comment `/amp stop` to stop the task instead.",
        state = task.state.as_str(),
        link = task.link(),
    )
}

/// `/amp retry` after a task that succeeded.
pub fn nothing_to_retry(login: &str, task: &TaskView) -> String {
    format!(
        "@{login}, [the last task]({link}) succeeded, so there is nothing to retry. Comment \
         `/amp <what to do>` to ask for another change.",
        link = task.link(),
    )
}

/// `/amp stop` or `/amp retry` acknowledged (acted on by the worker).
pub fn control_accepted(command: &str, task: Option<&TaskView>) -> String {
    match task {
        Some(task) => format!(
            "`/amp {command}` received for [the task]({link}).",
            link = task.link()
        ),
        None => format!("`/amp {command}`: there is no task on this issue to {command}."),
    }
}

/// Something went wrong on our side; details are in the service's logs.
pub fn internal_error(task: Option<&TaskView>) -> String {
    match task {
        Some(task) => format!(
            "Something went wrong while handling this command; it has been logged. \
             [Task page]({link}).",
            link = task.link()
        ),
        None => "Something went wrong while handling this command; it has been logged.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: TaskState) -> TaskView<'static> {
        TaskView {
            public_url: "https://amp.example.com",
            public_id: "q5bV8m1dXJ0tC2hRk9LwZa3Y",
            state,
            requester: "octocat",
            pr_url: None,
            note: None,
            rounds: None,
            blocked: None,
        }
    }

    fn round(
        round: i32,
        kind: RoundKind,
        checks: &str,
        outcome: Option<RoundOutcome>,
    ) -> task_round::Model {
        task_round::Model {
            id: round as i64,
            task_id: crate::domain::TaskId(1),
            round,
            kind,
            head_sha: Some(crate::domain::CommitSha("0123456789abcdef".into())),
            failed_checks: checks.into(),
            fingerprint: None,
            prompt: String::new(),
            requested_by: Some("mona".into()),
            outcome,
            result_sha: outcome.map(|_| crate::domain::CommitSha("fedcba9876543210".into())),
            created_at: 0,
            finished_at: None,
        }
    }

    #[test]
    fn status_comments() {
        insta::assert_snapshot!("status_queued", status_comment(&view(TaskState::Queued)));
        insta::assert_snapshot!(
            "status_succeeded",
            status_comment(&view(TaskState::Succeeded))
        );
        let mut awaiting = view(TaskState::AwaitingCi);
        awaiting.pr_url = Some("https://github.com/octo/repo/pull/7");
        awaiting.note = Some("Added the --json flag.\nTests pass.");
        insta::assert_snapshot!("status_awaiting_ci", status_comment(&awaiting));
        let mut failed = view(TaskState::Failed);
        failed.note = Some("The agent image amp:latest is not present on the Docker engine.");
        insta::assert_snapshot!("status_failed", status_comment(&failed));

        let ci = r#"[{"name": "test", "conclusion": "failure"}]"#;
        let rounds = [
            round(1, RoundKind::Ci, ci, Some(RoundOutcome::Pushed)),
            round(0, RoundKind::FollowUp, "[]", Some(RoundOutcome::Pushed)),
            round(2, RoundKind::Ci, ci, Some(RoundOutcome::GaveUp)),
            round(0, RoundKind::Retry, ci, None),
        ];
        assert_eq!(rounds_section(&[], 3), None);
        let section = rounds_section(&rounds, 3).unwrap();
        let mut fixing = view(TaskState::Fixing);
        fixing.pr_url = Some("#7");
        fixing.note =
            Some("CI failed (`test`). Round 2 of 3: the failure report went back to Amp.");
        fixing.rounds = Some(&section);
        insta::assert_snapshot!("status_with_rounds", status_comment(&fixing));

        let blocked = |host: &str, port: u16, count: u64| BlockedEgress {
            host: host.into(),
            port,
            count,
        };
        assert_eq!(blocked_section(&[]), None);
        let section = blocked_section(&[
            blocked("example.com", 443, 3),
            blocked("pastebin.example", 80, 1),
            blocked("(other hosts)", 0, 7),
        ])
        .unwrap();
        let mut done = view(TaskState::Succeeded);
        done.pr_url = Some("#7");
        done.blocked = Some(&section);
        insta::assert_snapshot!("status_with_blocked", status_comment(&done));
    }

    #[test]
    fn replies() {
        insta::assert_snapshot!("help", help());
        insta::assert_snapshot!("not_permitted", not_permitted("mona", "read", "write"));
        insta::assert_snapshot!("status_reply", status_reply(&view(TaskState::Running)));
        insta::assert_snapshot!("no_task", no_task());
        insta::assert_snapshot!("ready_for_review", ready_for_review("mona"));
        insta::assert_snapshot!(
            "already_running",
            already_running("mona", &view(TaskState::Queued))
        );
        insta::assert_snapshot!(
            "stop_accepted",
            control_accepted("stop", Some(&view(TaskState::Running)))
        );
        insta::assert_snapshot!("retry_without_task", control_accepted("retry", None));
        insta::assert_snapshot!(
            "follow_up_accepted",
            follow_up_accepted("mona", &view(TaskState::Fixing))
        );
        insta::assert_snapshot!(
            "queued_for_next_round",
            queued_for_next_round("mona", &view(TaskState::Running))
        );
        insta::assert_snapshot!(
            "nothing_to_retry",
            nothing_to_retry("mona", &view(TaskState::Succeeded))
        );
        insta::assert_snapshot!(
            "internal_error",
            internal_error(Some(&view(TaskState::Queued)))
        );
    }
}
