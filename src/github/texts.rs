//! Every comment the App posts, built by a pure function (snapshot-tested), so wording changes
//! show up in review.

use crate::state::TaskState;

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
}

impl<'a> TaskView<'a> {
    /// A task as stored (its stored state; no pull request link or note yet).
    pub fn of(task: &'a crate::entities::task::Model, public_url: &'a str) -> TaskView<'a> {
        TaskView {
            public_url,
            public_id: &task.public_id,
            state: task.state.parse().unwrap_or(TaskState::Failed),
            requester: &task.requester_login,
            pr_url: None,
            note: None,
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
    let stop = if task.state.is_terminal() {
        ""
    } else {
        " · `/amp stop` stops it"
    };
    format!(
        "{heading}\n\n\
         State: `{state}`. {line}\n\n\
         {pr}{note}\
         [Follow the task]({link}) · requested by @{requester}{stop}\n\n\
         <!-- amp-orchestrator task {id} -->",
        state = task.state.as_str(),
        line = state_line(task.state),
        link = task.link(),
        requester = task.requester,
        id = task.public_id,
    )
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

/// A problem the requester can act on (repository archived, issue locked, …).
pub fn user_error(login: &str, problem: &str) -> String {
    format!("@{login}, nothing was started: {problem}")
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
    }

    #[test]
    fn replies() {
        insta::assert_snapshot!("help", help());
        insta::assert_snapshot!("not_permitted", not_permitted("mona", "read", "write"));
        insta::assert_snapshot!("status_reply", status_reply(&view(TaskState::Running)));
        insta::assert_snapshot!("no_task", no_task());
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
            "nothing_to_retry",
            nothing_to_retry("mona", &view(TaskState::Succeeded))
        );
        insta::assert_snapshot!(
            "user_error",
            user_error("mona", "this repository is archived.")
        );
        insta::assert_snapshot!(
            "internal_error",
            internal_error(Some(&view(TaskState::Queued)))
        );
    }
}
