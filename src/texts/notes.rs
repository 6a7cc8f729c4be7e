//! The sentence a status comment shows under the task's state, and the reasons recorded on the
//! task's timeline, for each way a task moves on.

use std::time::Duration;

use humantime::format_duration;

use crate::repo_config::{Setting, Source};

/// The agent decided nothing needed to change.
pub fn no_changes(explanation: &str) -> String {
    format!("No changes were needed. {explanation}")
}

/// `/amp stop` ended a task that was running or waiting for CI.
pub fn stopped() -> String {
    "Stopped with /amp stop.".into()
}

/// `/amp stop` ended a task before a worker took it.
pub fn stopped_before_start() -> String {
    "Stopped with /amp stop before it started.".into()
}

/// The task's pull request was closed by `by`, merged or not.
pub fn pull_closed(pr_number: i64, merged: bool, by: &str) -> String {
    if merged {
        format!("Pull request #{pr_number} was merged by @{by}.")
    } else {
        format!("Pull request #{pr_number} was closed by @{by}.")
    }
}

/// The App was uninstalled, or its installation suspended, while the task waited in the queue.
pub fn installation_gone(suspended: bool) -> String {
    if suspended {
        "the installation was suspended".into()
    } else {
        "the app was uninstalled".into()
    }
}

/// Follow-up requests (from `logins`, in order, on `place`) started a new round.
pub fn follow_up(logins: &[&str], place: &str) -> String {
    format!("Follow-up from {} on {place}.", people(logins))
}

/// The timeline's reason for a follow-up round.
pub fn follow_up_reason(logins: &[&str]) -> String {
    format!("follow-up from {}", people(logins))
}

/// `@a`, `@a and @b`, `@a, @b and @c`, each named once.
fn people(logins: &[&str]) -> String {
    let mut unique: Vec<String> = Vec::new();
    for login in logins {
        let at = format!("@{login}");
        if !unique.contains(&at) {
            unique.push(at);
        }
    }
    match unique.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The task was stopped (or its pull request closed) with requests waiting for its next round.
pub fn requests_dropped(count: u64) -> String {
    match count {
        1 => "A request made for the next round was dropped with the task's work.".into(),
        n => format!("{n} requests made for the next round were dropped with the task's work."),
    }
}

/// `/amp retry` queued the task again.
pub fn retried() -> String {
    "Queued again with /amp retry.".into()
}

/// The timeline's reason for a retry.
pub fn retry_reason(login: &str) -> String {
    format!("retried by @{login}")
}

/// The service stopped before the agent had started; the task goes back to the queue.
pub fn requeued_after_restart() -> String {
    "the service stopped before the agent started; queued again".into()
}

/// Every check passed.
///
/// `not_required`: checks that failed but are not in the repository's `ci.required`.
pub fn ci_passed(rounds: i32, took: Duration, not_required: &[&str]) -> String {
    let (all, others) = if not_required.is_empty() {
        ("All checks passed", String::new())
    } else {
        (
            "The required checks passed",
            format!(
                " Not required by `ci.required` in .github/amp.toml, and failing: {}.",
                code_list(not_required)
            ),
        )
    };
    format!(
        "✅ {all}. The pull request is ready for review. CI rounds used: {rounds}; time taken: \
         {}.{others}",
        format_duration(Duration::from_secs(took.as_secs()))
    )
}

/// No check reported within the wait for CI.
pub fn no_ci(wait: &Setting<Duration>) -> String {
    format!(
        "No CI reported on this commit within {}, so the repository is taken to have no CI. The \
         pull request is ready for review.",
        wait_setting(wait, 1)
    )
}

/// The setting that decided how long to wait for CI, and the wait (`times` it).
fn wait_setting(wait: &Setting<Duration>, times: u32) -> String {
    let name = match wait.source {
        Source::File => "`ci.wait_timeout` in .github/amp.toml",
        Source::Service => "CI_WAIT_TIMEOUT",
    };
    let waited = format_duration(wait.value * times);
    if times == 1 {
        format!("{name} ({waited})")
    } else {
        format!("{waited} ({name} × {times})")
    }
}

/// Names from GitHub (check names, file names: chosen by whoever writes the repository's
/// workflows or commits), at most [`NAMED_FILES`] of them, each as code without backticks (which
/// could end the code span and let the rest be read as Markdown or a mention) and cut to a sane
/// length.
pub fn code_list<S: AsRef<str>>(names: &[S]) -> String {
    let mut named: Vec<String> = names
        .iter()
        .take(NAMED_FILES)
        .map(|n| format!("`{}`", crate::text::clip(&n.as_ref().replace('`', ""), 120)))
        .collect();
    if names.len() > NAMED_FILES {
        named.push(format!("and {} more", names.len() - NAMED_FILES));
    }
    named.join(", ")
}

/// The agent's change touches workflow files, which the App may not push.
///
/// The file names come from the agent's commits: at most [`NAMED_FILES`] are named, each without
/// backticks (which could end the code span and let the rest be read as Markdown or a mention)
/// and cut to a sane length.
pub fn workflows_not_pushed(files: &[String], patch_kept: bool) -> String {
    let files = code_list(files);
    format!(
        "The change edits workflow files ({files}), and GitHub lets an App push those only with \
         the `workflows` permission, which this App does not have. This change was not pushed; \
         {} or comment `/amp <what to do>` asking for the change without workflow files.",
        if patch_kept {
            "it is on the task page as a patch: apply it and push it yourself,"
        } else {
            "it is too large to keep on the task page. Make it yourself,"
        }
    )
}

/// The most names (workflow files, checks) a note lists.
const NAMED_FILES: usize = 10;

/// The change kept on the task page when it could not be pushed.
pub fn unpushed_patch(patch: &str) -> String {
    format!("The change, not pushed (apply it with `git apply`):\n{patch}")
}

/// GitHub refused to show the commit's checks or statuses; `missing_permission`: because the
/// installation has not granted what the App needs.
pub fn ci_unreadable(github_said: &str, missing_permission: bool) -> String {
    let what_to_do = if missing_permission {
        "The App needs read access to checks and commit statuses on this repository: the App's \
         owner gives it \"Checks: read\" and \"Commit statuses: read\" in the App's settings, an \
         owner of the installation accepts them, then comment `/amp retry`."
    } else {
        "Once that is resolved on GitHub, comment `/amp retry`."
    };
    format!(
        "GitHub refused to show this commit's checks ({}), so the service cannot tell whether CI \
         passed. {what_to_do} The pull request is not marked ready for review.",
        github_said.trim_end_matches('.')
    )
}

/// Checks started but never finished.
pub fn ci_stuck(wait: &Setting<Duration>, factor: u32) -> String {
    format!(
        "CI has not finished on this commit after {}: a check seems stuck (no runner, waiting \
         for an approval, or a required check that never reports). The pull request stays a \
         draft; comment `/amp retry` once CI has run.",
        wait_setting(wait, factor)
    )
}

/// Said after a CI failure when the base branch fails too.
pub fn base_also_red(base_failures: Option<&str>) -> String {
    base_failures
        .map(|b| {
            format!(
                " The base branch is already failing ({b}), so this may not come from this change."
            )
        })
        .unwrap_or_default()
}

/// Why the CI loop stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// `MAX_CI_ROUNDS` rounds were used.
    OutOfRounds(i32),
    /// The failure is the same as before the last fix.
    NoProgress,
}

/// The CI loop gave up: what failed, why it stopped, and how to go on.
pub fn ci_gave_up(why: GiveUp, names: &str, base_failures: Option<&str>) -> String {
    let why = match why {
        GiveUp::OutOfRounds(rounds) => {
            format!("CI still fails ({names}) after {rounds} rounds of fixes (MAX_CI_ROUNDS).")
        }
        GiveUp::NoProgress => format!(
            "CI fails ({names}) exactly as before the last fix, so another round is unlikely to help."
        ),
    };
    format!(
        "{why}{} The pull request stays a draft. Comment `/amp retry` to give Amp more rounds, or \
         `/amp <what to do>` on the pull request to guide it.",
        base_also_red(base_failures)
    )
}

/// CI failed and the report went back to the agent.
pub fn ci_failed(names: &str, round: i32, max: u32, base_failures: Option<&str>) -> String {
    format!(
        "CI failed ({names}). Round {round} of {max}: the failure report went back to Amp.{}",
        base_also_red(base_failures)
    )
}

/// The timeline's reason for a CI round.
pub fn ci_failed_reason(names: &str) -> String {
    format!("CI failed: {names}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(secs: u64) -> Setting<Duration> {
        Setting {
            value: Duration::from_secs(secs),
            source: Source::Service,
        }
    }

    fn file(secs: u64) -> Setting<Duration> {
        Setting {
            value: Duration::from_secs(secs),
            source: Source::File,
        }
    }

    #[test]
    fn notes() {
        let notes = [
            no_changes("The flag exists already."),
            stopped(),
            stopped_before_start(),
            pull_closed(21, true, "mona"),
            pull_closed(21, false, "mona"),
            follow_up(&["mona"], "#7"),
            follow_up(&["mona", "hubot", "mona", "octocat"], "#7"),
            requests_dropped(1),
            requests_dropped(3),
            retried(),
            ci_passed(2, Duration::from_millis(754_300), &[]),
            ci_passed(1, Duration::from_secs(300), &["flaky e2e", "lint"]),
            no_ci(&service(600)),
            no_ci(&file(30)),
            ci_stuck(&service(600), 6),
            ci_stuck(&file(120), 6),
            ci_unreadable("Resource not accessible by integration", true),
            ci_unreadable("Not Found", false),
            workflows_not_pushed(&[".github/workflows/ci.yml".into()], true),
            workflows_not_pushed(&[".github/workflows/ci.yml".into()], false),
            ci_gave_up(GiveUp::OutOfRounds(3), "`test`", None),
            ci_gave_up(GiveUp::NoProgress, "`test`, `lint`", Some("`test`")),
            ci_failed("`test`", 2, 3, None),
            ci_failed("`test`", 1, 3, Some("`test`")),
        ];
        insta::assert_snapshot!("notes", notes.join("\n\n"));
    }

    #[test]
    fn workflow_file_names_from_the_agent_are_bounded_and_stay_code() {
        let hostile: Vec<String> = (0..500)
            .map(|i| {
                format!(
                    ".github/workflows/x{i}`@everyone` Closes #1 `{}",
                    "y".repeat(500)
                )
            })
            .collect();
        let note = workflows_not_pushed(&hostile, true);
        assert!(note.len() < 3000, "{} bytes", note.len());
        assert!(note.contains("and 490 more"), "{note}");
        assert_eq!(note.matches('`').count() % 2, 0, "{note}");
        assert!(!note.contains("`@everyone`"), "{note}");
    }
}
