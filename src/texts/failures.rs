//! How a task that could not go on is explained to the person who asked (see
//! [`crate::domain::Failure`]): their own problem in words they can act on, ours in one short line
//! that says what failed and where to look, never the raw error.

use std::time::Duration;

use humantime::format_duration;

use crate::domain::Failure;
use crate::worker::image::Lack;
use crate::worker::setup::SetupFailed;

/// What the status comment and the task page say about a failure.
pub fn shown(failure: &Failure) -> String {
    match failure {
        Failure::User(text) => text.clone(),
        Failure::Internal { summary, .. } => format!(
            "{summary}; the details are in the service's logs. Comment `/amp retry` to try again."
        ),
    }
}

pub fn no_amp_key() -> Failure {
    Failure::user("AMP_API_KEY is not configured on the server, so the agent cannot run")
}

pub fn no_github_app() -> Failure {
    Failure::user("the GitHub App is not configured")
}

/// The agent's turn failed; `reason` is the agent's own words (its result or its stderr).
pub fn agent_failed(reason: &str) -> Failure {
    Failure::user(format!("Amp failed: {reason}"))
}

/// The agent image is not on the Docker engine.
pub fn missing_image(image: &str) -> Failure {
    Failure::user(format!(
        "The agent image {image} is not present on the Docker engine, so the task could not \
         start. The people who run this service need to build or pull it."
    ))
}

/// The repository's image could not be pulled; `said` is the registry's (or Docker's) reason.
pub fn image_unavailable(image: &str, said: &str) -> Failure {
    Failure::user(format!(
        "The image {image} named by `image` in .github/amp.toml could not be pulled: {said}. \
         Check its name and that the Docker engine of this service can reach its registry."
    ))
}

/// The repository's image lacks what a task needs.
pub fn image_lacks(image: &str, lack: Lack) -> Failure {
    let what = match lack {
        Lack::Shell => "a POSIX shell (`sh`), which setup and the agent run under",
        Lack::Git => "git, which the workspace is committed with",
    };
    Failure::user(format!(
        "The image {image} named by `image` in .github/amp.toml lacks {what}. Use an image \
         that has it (a Debian- or Ubuntu-based one, for example), or add it to the image."
    ))
}

/// GitHub refused a step with a reason meant for people (a 4xx); `summary` says what failed.
pub fn github_refused(summary: &str, message: &str) -> Failure {
    Failure::user(format!("{summary}: GitHub said: {message}"))
}

pub fn pull_closed(number: i64) -> Failure {
    Failure::user(format!(
        "Pull request #{number} is closed, so there is no branch to work on. Reopen it, or ask on \
         an issue."
    ))
}

/// The pull request's branch is not in the repository (`fork`: where it is, if anywhere).
pub fn pull_from_fork(number: i64, fork: Option<&str>, repo: &str) -> Failure {
    let place = match fork {
        Some(fork) => format!("in the fork {fork}"),
        None => "in a repository that no longer exists".to_string(),
    };
    Failure::user(format!(
        "The branch of pull request #{number} is {place}. This app only pushes to branches of \
         {repo}, so it cannot work on pull requests from forks. Ask on an issue instead: the \
         change will come as a new pull request."
    ))
}

/// A CI or retry round in which the agent changed nothing.
pub fn no_change_for_ci(summary: &str) -> String {
    format!("Amp made no change for the CI failure. {}", summary.trim())
}

pub fn agent_idle(idle: Duration) -> String {
    format!(
        "Amp printed nothing for AGENT_IDLE_TIMEOUT ({})",
        format_duration(idle)
    )
}

/// The agent printed more in one turn than a turn may (see
/// [`crate::agent::limits::OutputLimits::turn_bytes`]).
pub fn agent_flooded(limit_bytes: u64) -> Failure {
    Failure::user(format!(
        "Amp printed more than {} MiB of output in one turn, the most a turn may print, so it was \
         stopped. The task's log keeps the end of what it printed.",
        limit_bytes / (1024 * 1024)
    ))
}

/// The repository's setup commands ran longer than a turn may.
pub fn setup_too_long(limit: Duration) -> String {
    format!(
        "the setup commands of .github/amp.toml ran longer than the {} they may take \
         (agent.turn_timeout)",
        format_duration(limit)
    )
}

/// The setup commands printed more than a turn may.
pub fn setup_flooded(limit_bytes: u64) -> Failure {
    Failure::user(format!(
        "The setup commands of .github/amp.toml printed more than {} MiB, the most a turn may \
         print, so they were stopped. The task's log keeps the end of what they printed.",
        limit_bytes / (1024 * 1024)
    ))
}

/// A setup command failed, and `setup_failure` is `stop`.
pub fn setup_failed(failed: &SetupFailed) -> Failure {
    Failure::user(format!(
        "{}\nThe agent did not start. Fix the command in .github/amp.toml on the default branch, \
         or set `setup_failure = \"continue\"` to start the agent anyway, then comment \
         `/amp retry`.",
        setup_failure_said(failed)
    ))
}

/// What a failed setup command did: which, how it ended, the end of its output.
pub fn setup_failure_said(failed: &SetupFailed) -> String {
    let ended = match failed.code {
        Some(code) => format!("exited with {code}"),
        None => "was killed".to_string(),
    };
    let output = if failed.tail.trim().is_empty() {
        "It printed nothing.".to_string()
    } else {
        format!("Its output ends:\n{}", fenced(&failed.tail))
    };
    format!(
        "Setup command {} of .github/amp.toml {ended}:\n{}\n{output}",
        failed.number,
        fenced(&failed.command),
    )
}

/// `text` as a fenced code block (a fence longer than any run of backticks in it), inert.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}\n{}\n{fence}", crate::text::inert(text.trim_end()))
}

pub fn task_too_long(limit: Duration) -> String {
    format!(
        "the task ran longer than TASK_TIMEOUT ({})",
        format_duration(limit)
    )
}

/// An agent turn ran longer than a turn may (`agent.turn_timeout`, by default the task's).
pub fn turn_too_long(limit: Duration) -> String {
    format!(
        "Amp's turn ran longer than the {} a turn may take (agent.turn_timeout)",
        format_duration(limit)
    )
}

/// The task's `.github/amp.toml` no longer passes the service's limits (the operator changed
/// them since the task started).
pub fn config_out_of_bounds(problems: &[crate::repo_config::Problem]) -> Failure {
    Failure::user(format!(
        "The task's `.github/amp.toml` no longer fits this service's limits, so it could not go \
         on:\n\n{}\n\nFix the file on the default branch and start a new task.",
        super::repo_config::problem_list(problems)
    ))
}

/// `paths.workdir` names no directory of the repository.
pub fn workdir_missing(workdir: &str) -> Failure {
    Failure::user(format!(
        "`.github/amp.toml` sets `paths.workdir = \"{workdir}\"`, which is not a directory on the \
         branch the task works on."
    ))
}

/// The service restarted mid-run and the task's container did not survive.
pub fn container_lost() -> String {
    "The service stopped while this task was running and its container is gone, so it could not \
     finish. Comment `/amp retry` to run it again."
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures() {
        let all = [
            shown(&Failure::internal(
                "cloning the repository failed",
                "fatal: unable to access 'http://10.0.0.7:3000/': connection refused",
            )),
            shown(&no_amp_key()),
            shown(&agent_failed("Error: Invalid or missing API key.")),
            shown(&missing_image("amp:latest")),
            shown(&github_refused(
                "opening the pull request failed",
                "Validation Failed: No commits between main and amp/7-x",
            )),
            shown(&pull_closed(7)),
            shown(&pull_from_fork(7, Some("mona/widgets"), "octo-org/widgets")),
            shown(&pull_from_fork(8, None, "octo-org/widgets")),
            no_change_for_ci("The test is flaky."),
            agent_idle(Duration::from_secs(600)),
            shown(&agent_flooded(256 * 1024 * 1024)),
            task_too_long(Duration::from_secs(7200)),
            turn_too_long(Duration::from_secs(1200)),
            shown(&workdir_missing("services/api")),
            shown(&config_out_of_bounds(&[crate::repo_config::Problem {
                line: 4,
                column: 14,
                message: "3 rounds is more than this service allows (MAX_CI_ROUNDS is 2)".into(),
            }])),
            container_lost(),
            setup_too_long(Duration::from_secs(1200)),
            shown(&setup_flooded(256 * 1024 * 1024)),
            shown(&setup_failed(&SetupFailed {
                number: 2,
                command: "npm ci".into(),
                code: Some(1),
                tail: "npm ERR! code ERESOLVE\nnpm ERR! ```@everyone```\n".into(),
            })),
            shown(&image_unavailable(
                "ghcr.io/octo-org/toolchain:1",
                "manifest unknown",
            )),
            shown(&image_lacks("busybox:1", Lack::Git)),
            shown(&image_lacks("scratch-tools:1", Lack::Shell)),
            shown(&setup_failed(&SetupFailed {
                number: 1,
                command: "sleep 5".into(),
                code: None,
                tail: String::new(),
            })),
        ];
        insta::assert_snapshot!("failures", all.join("\n\n"));
    }

    #[test]
    fn a_setup_failure_stays_inside_its_code_blocks() {
        let failed = SetupFailed {
            number: 1,
            command: "make".into(),
            code: Some(2),
            tail: "`````\n**bold** @octocat\n".into(),
        };
        let said = setup_failure_said(&failed);
        // The fence around the output is longer than any run of backticks in it.
        assert!(said.contains("``````\n"), "{said}");
        assert!(
            !said.contains("@octocat"),
            "mentions are made inert: {said}"
        );
    }

    #[test]
    fn internal_details_are_never_shown() {
        let failure = Failure::internal(
            "the Docker engine cannot be reached",
            "tcp://10.1.2.3:2375 refused",
        );
        assert!(!shown(&failure).contains("10.1.2.3"));
    }
}
