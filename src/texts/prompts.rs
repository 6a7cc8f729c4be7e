//! What the agent is told, and what the App writes into git and the pull request.

use crate::entities::task;

/// What the agent is told for a task's first turn: the standing instructions, the issue, and the
/// request.
pub fn agent_prompt(task: &task::Model, branch: &str) -> String {
    format!(
        "You are working in a clone of the GitHub repository {repo}, checked out in the current \
         directory on branch {branch}.\n\
         Make the change requested below. Keep it focused on the request. Do not commit, push or \
         open pull requests: that is done for you after you finish. Do not change files under \
         .github/workflows: they cannot be pushed from here (say in your summary what they \
         would need instead). End with a short summary of what you changed and why.\n\n\
         {what} #{number}: {title}\n\n{body}\n\n\
         Request from @{login}:\n{prompt}\n",
        repo = task.repo_full_name,
        what = if task.is_pull_request {
            "Pull request"
        } else {
            "Issue"
        },
        number = task.issue_number,
        title = task.issue_title,
        body = task.issue_body,
        login = task.requester_login,
        prompt = task.prompt,
    )
}

/// `prompt` with the repository's own instructions for the agent (`agent.instructions` in its
/// `.github/amp.toml`) after it, when it has some.
pub fn with_instructions(prompt: String, instructions: Option<&str>) -> String {
    match instructions {
        Some(instructions) => format!(
            "{prompt}\nInstructions from the repository's .github/amp.toml:\n{instructions}\n"
        ),
        None => prompt,
    }
}

/// `prompt` with word that a setup command failed and the agent was started anyway
/// (`setup_failure = "continue"`).
pub fn with_setup_failure(prompt: String, failed: &crate::worker::setup::SetupFailed) -> String {
    format!(
        "{prompt}\nNote: the repository's setup did not complete, so the workspace may lack \
         dependencies or tools it expects. {}\n",
        super::failures::setup_failure_said(failed)
    )
}

/// One thing someone asked of a task after its first round.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub login: &'a str,
    pub prompt: &'a str,
}

/// What the agent gets for follow-up requests on the task (`place`: "pull request #7", or the
/// issue before there is one), in the order they were made.
pub fn follow_up_prompt(place: &str, asked: &[Asked<'_>]) -> String {
    const RULES: &str = "Keep the change focused. Do not commit or push; that is done for you \
                         when you finish.";
    match asked {
        [one] => format!(
            "Follow-up request from @{login} on {place}, which holds your work on this branch so \
             far. {RULES} End with a short summary of what you changed.\n\n{prompt}\n",
            login = one.login,
            prompt = one.prompt,
        ),
        many => {
            let mut text = format!(
                "Follow-up requests on {place}, which holds your work on this branch so far, made \
                 while you were working: take them in order. {RULES} End with a short summary \
                 of what you changed for each.\n"
            );
            for (i, a) in many.iter().enumerate() {
                text.push_str(&format!(
                    "\n{n}. From @{login}:\n\n{prompt}\n",
                    n = i + 1,
                    login = a.login,
                    prompt = a.prompt
                ));
            }
            text
        }
    }
}

/// A prompt given again after the service restarted in the middle of the agent's turn.
pub fn resumed(prompt: &str) -> String {
    format!(
        "Your previous run on this task was interrupted when the service running you restarted. \
         The workspace holds whatever you had done; check it and finish the task.\n\n{prompt}"
    )
}

/// The commit's first line: the issue's title (at most 60 characters) and number.
pub fn commit_title(task: &task::Model) -> String {
    let title: String = task.issue_title.chars().take(60).collect();
    format!("{title} (#{})", task.issue_number)
}

/// The commit message: its title, the agent's summary, and the requester as co-author.
pub fn commit_message(task: &task::Model, summary: &str) -> String {
    format!(
        "{}\n\n{}\n\nCo-authored-by: {} <{}>",
        commit_title(task),
        summary.trim(),
        task.requester_login,
        noreply_email(&task.requester_login, task.requester_id)
    )
}

/// GitHub's private address for a user: `<id>+<login>@…`, or `<login>@…` when the id is not
/// known (a task created through the API for a named requester).
pub fn noreply_email(login: &str, id: i64) -> String {
    if id > 0 {
        format!("{id}+{login}@users.noreply.github.com")
    } else {
        format!("{login}@users.noreply.github.com")
    }
}

/// The App's own commit author: `<app id>+<bot>@users.noreply.github.com`.
pub fn bot_email(app_id: u64, bot_name: &str) -> String {
    format!("{app_id}+{bot_name}@users.noreply.github.com")
}

/// The body of the pull request a task opens.
pub fn pull_request_body(task: &task::Model, summary: &str, public_url: &str) -> String {
    format!(
        "Closes #{}\n\n{}\n\n---\nRequested by @{} · [task page]({}/tasks/{})",
        task.issue_number,
        summary.trim(),
        task.requester_login,
        public_url,
        task.public_id
    )
}

/// What marks a pull request as work in progress where the repository has no draft pull requests.
pub const WORK_IN_PROGRESS: &str = "[WIP] ";

/// A pull request opened as a regular one because the repository has no draft pull requests.
pub fn work_in_progress(title: &str, body: &str) -> (String, String) {
    (
        format!("{WORK_IN_PROGRESS}{title}"),
        format!(
            "{body}\n\n> Work in progress: this repository does not support draft pull requests, \
             so this one is opened as a regular pull request. It is marked ready for review when CI \
             passes."
        ),
    )
}

/// The title of a work-in-progress pull request once it is ready, if it is one.
pub fn ready_title(title: &str) -> Option<&str> {
    title.strip_prefix(WORK_IN_PROGRESS)
}

/// The issue opened for a task made through the admin form or API.
pub fn admin_issue(prompt: &str) -> (String, String) {
    let title: String = prompt
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect();
    (
        title,
        format!("Asked of Amp through amp-orchestrator:\n\n{prompt}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TaskId, TaskState};

    pub(crate) fn task() -> task::Model {
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
            issue_title: "Add a --json flag to the export command, with tests and docs for it"
                .into(),
            issue_body: "The export command only prints a table.".into(),
            requester_login: "octocat".into(),
            requester_id: 583231,
            comment_id: 5,
            delivery_id: None,
            prompt: "add a --json flag".into(),
            state: TaskState::Running,
            last_seq: 0,
            status_comment_id: None,
            branch: None,
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
            created_at: 0,
            updated_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn prompts() {
        insta::assert_snapshot!(
            "agent_prompt",
            agent_prompt(&task(), "amp/21-add-a-json-flag-q5bv8m")
        );
        insta::assert_snapshot!(
            "follow_up_prompt",
            follow_up_prompt(
                "pull request #7",
                &[Asked {
                    login: "mona",
                    prompt: "Also document the flag."
                }]
            )
        );
        insta::assert_snapshot!(
            "follow_up_prompt_of_several",
            follow_up_prompt(
                "pull request #7",
                &[
                    Asked {
                        login: "mona",
                        prompt: "Also document the flag."
                    },
                    Asked {
                        login: "hubot",
                        prompt: "And rename it to --json-out.\nKeep the old name working."
                    },
                ]
            )
        );
        insta::assert_snapshot!("resumed", resumed("Fix the failing test."));
        insta::assert_snapshot!(
            "agent_prompt_with_instructions",
            with_instructions(
                agent_prompt(&task(), "amp/21-add-a-json-flag-q5bv8m"),
                Some("Run `cargo test` before you finish.")
            )
        );
        insta::assert_snapshot!(
            "agent_prompt_after_a_failed_setup",
            with_setup_failure(
                "Add a --json flag.\n".into(),
                &crate::worker::setup::SetupFailed {
                    number: 2,
                    command: "npm ci".into(),
                    code: Some(1),
                    tail: "npm ERR! code ERESOLVE\n".into(),
                }
            )
        );
    }

    #[test]
    fn what_the_app_writes() {
        insta::assert_snapshot!(
            "commit_message",
            commit_message(&task(), "  Added --json.\n")
        );
        insta::assert_snapshot!(
            "pull_request_body",
            pull_request_body(&task(), "Added --json.", "https://amp.example.com")
        );
        assert_eq!(
            noreply_email("api-user", 0),
            "api-user@users.noreply.github.com"
        );
        assert_eq!(
            bot_email(42, "amp-orchestrator[bot]"),
            "42+amp-orchestrator[bot]@users.noreply.github.com"
        );
        let (title, body) = admin_issue("Fix the login page\nIt crashes on submit.");
        assert_eq!(title, "Fix the login page");
        insta::assert_snapshot!("admin_issue_body", body);
        let (title, body) = work_in_progress("Add a --json flag", "Closes #21");
        insta::assert_snapshot!("work_in_progress", format!("{title}\n\n{body}"));
        assert_eq!(ready_title(&title), Some("Add a --json flag"));
        assert_eq!(ready_title("Add a --json flag"), None);
    }
}
