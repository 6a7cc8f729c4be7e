//! Deciding on a commit's CI, and the failure report the agent gets. Pure functions: what GitHub
//! said goes in, a verdict or a report comes out.

use crate::github::{CheckRun, CheckSuite, CommitStatus};
use crate::text::{clip, strip_ansi};

/// Check run conclusions that fail CI.
pub const FAILING: [&str; 4] = ["failure", "timed_out", "cancelled", "action_required"];
/// Check run conclusions that pass. Any other (`stale`: GitHub gave up on a run that never
/// completed; one GitHub adds later) is not a decision yet.
pub const PASSING: [&str; 3] = ["success", "neutral", "skipped"];
/// Conclusions of a check suite without runs that fail CI: `startup_failure` is a workflow that
/// could not start (a workflow file that is not valid, say), so it has no run to read.
pub const SUITE_FAILING: [&str; 5] = [
    "startup_failure",
    "failure",
    "timed_out",
    "cancelled",
    "action_required",
];
/// The app id of GitHub Actions, whose check runs are jobs with downloadable logs.
pub const GITHUB_ACTIONS_APP_ID: u64 = 15368;

/// What the checks of one commit say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No check run and no status (yet, or ever: a repository without CI).
    NoChecks,
    /// Something is still queued or in progress, and nothing has failed.
    Waiting,
    /// Every run that counts completed with `success`, `neutral` or `skipped`, every status that
    /// counts is `success`.
    Passed {
        /// Checks that failed but are not among the repository's `ci.required`: reported, not
        /// blocking.
        not_required: Vec<Failure>,
    },
    Failed(Vec<Failure>),
}

impl Verdict {
    /// Passed, with nothing failing at all.
    pub const PASSED: Verdict = Verdict::Passed {
        not_required: Vec::new(),
    };
}

/// Which checks decide: the repository's `ci.required` and `ci.ignore`, by exact name (a check
/// run's name, a commit status's context).
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckRules<'a> {
    /// `None`: every check that is not ignored must pass. `Some`: only these must, and each must
    /// be there: one not reported yet is waited for.
    pub required: Option<&'a [String]>,
    /// Never waited for, never reported.
    pub ignore: &'a [String],
}

impl CheckRules<'_> {
    /// Every check counts.
    pub const ALL: CheckRules<'static> = CheckRules {
        required: None,
        ignore: &[],
    };

    fn ignored(&self, name: &str) -> bool {
        self.ignore.iter().any(|i| i == name)
    }

    fn blocking(&self, name: &str) -> bool {
        self.required.is_none_or(|r| r.iter().any(|n| n == name))
    }
}

/// A failed check run or commit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub conclusion: String,
    /// The check run (absent for a commit status).
    pub run_id: Option<u64>,
    /// A GitHub Actions job: its log can be downloaded.
    pub actions_job: bool,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
    pub details_url: Option<String>,
}

/// Decide on a commit from all its check suites, check runs and commit statuses, as `rules`
/// say. Runs of `own_app` (this service's own checks, if any) do not count. A suite without runs
/// counts only when it completed with a failing conclusion (a workflow that did not start);
/// otherwise it is an app that made no checks (GitHub leaves those suites `queued`). With
/// required checks, such a suite blocks only while a required check is missing (it may be the
/// workflow that would have run it).
pub fn decide(
    suites: &[CheckSuite],
    runs: &[CheckRun],
    statuses: &[CommitStatus],
    own_app: Option<u64>,
    rules: CheckRules<'_>,
) -> Verdict {
    let own_suites: Vec<u64> = suites
        .iter()
        .filter(|s| own_app.is_some() && s.app.as_ref().map(|a| a.id) == own_app)
        .map(|s| s.id)
        .collect();
    let runs: Vec<&CheckRun> = runs
        .iter()
        .filter(|r| own_app.is_none() || r.app.as_ref().map(|a| a.id) != own_app)
        .filter(|r| {
            r.check_suite
                .as_ref()
                .is_none_or(|s| !own_suites.contains(&s.id))
        })
        .filter(|r| !rules.ignored(&r.name))
        .collect();
    let statuses: Vec<&CommitStatus> = statuses
        .iter()
        .filter(|s| !rules.ignored(&s.context))
        .collect();
    let missing_required = rules.required.is_some_and(|required| {
        required.iter().any(|name| {
            !runs.iter().any(|r| &r.name == name) && !statuses.iter().any(|s| &s.context == name)
        })
    });
    let not_started: Vec<Failure> = suites
        .iter()
        .filter(|s| !own_suites.contains(&s.id) && s.latest_check_runs_count == Some(0))
        .filter(|s| s.status.as_deref() == Some("completed"))
        .filter(|s| {
            s.conclusion
                .as_deref()
                .is_some_and(|c| SUITE_FAILING.contains(&c))
        })
        .map(suite_failure)
        .filter(|f| !rules.ignored(&f.name))
        .collect();
    if runs.is_empty() && statuses.is_empty() && not_started.is_empty() && !missing_required {
        return Verdict::NoChecks;
    }
    let mut failed: Vec<Failure> = Vec::new();
    let mut not_required: Vec<Failure> = Vec::new();
    if rules.required.is_none() || missing_required {
        failed.extend(not_started);
    } else {
        not_required.extend(not_started);
    }
    let mut waiting = missing_required;
    let mut failing = |failure: Failure| {
        if rules.blocking(&failure.name) {
            failed.push(failure);
        } else {
            not_required.push(failure);
        }
    };
    for run in &runs {
        let completed = run.status.as_deref().unwrap_or("completed") == "completed";
        match run.conclusion.as_deref() {
            Some(c) if completed && FAILING.contains(&c) => failing(Failure {
                name: run.name.clone(),
                conclusion: c.to_string(),
                run_id: Some(run.id),
                actions_job: run.app.as_ref().map(|a| a.id) == Some(GITHUB_ACTIONS_APP_ID),
                title: run.output.title.clone(),
                summary: run.output.summary.clone(),
                text: run.output.text.clone(),
                details_url: run.details_url.clone(),
            }),
            Some(c) if completed && PASSING.contains(&c) => {}
            _ => waiting |= rules.blocking(&run.name),
        }
    }
    for status in statuses {
        match status.state.as_str() {
            "error" | "failure" => failing(Failure {
                name: status.context.clone(),
                conclusion: status.state.clone(),
                run_id: None,
                actions_job: false,
                title: status.description.clone(),
                summary: None,
                text: None,
                details_url: status.target_url.clone(),
            }),
            "success" => {}
            _ => waiting |= rules.blocking(&status.context),
        }
    }
    if !failed.is_empty() {
        failed.sort_by(|a, b| a.name.cmp(&b.name));
        Verdict::Failed(failed)
    } else if waiting {
        Verdict::Waiting
    } else {
        not_required.sort_by(|a, b| a.name.cmp(&b.name));
        Verdict::Passed { not_required }
    }
}

/// A suite that failed without runs, as a failure: what GitHub says is all there is.
fn suite_failure(suite: &CheckSuite) -> Failure {
    let app = suite.app.as_ref();
    let name = app
        .and_then(|a| a.name.clone().or_else(|| a.slug.clone()))
        .unwrap_or_else(|| "a check suite".into());
    let conclusion = suite.conclusion.clone().unwrap_or_default();
    let title = if conclusion == "startup_failure" {
        "The workflow did not start (startup_failure), so it has no jobs or logs. GitHub reports \
         this for a workflow file that is not valid (its YAML, its `on:` or `jobs:`), a reusable \
         workflow or action it may not use, or a job that cannot be scheduled. This App cannot \
         push changes to files under .github/workflows: if the cause is there, change nothing \
         and say so in your summary, naming the file and the fix."
            .to_string()
    } else {
        format!("The check suite concluded `{conclusion}` without any check runs.")
    };
    Failure {
        name,
        conclusion,
        run_id: None,
        actions_job: false,
        title: Some(title),
        summary: None,
        text: None,
        details_url: None,
    }
}

/// A failure with what was gathered about it.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    /// `path:line: message`
    pub annotations: Vec<String>,
    /// The job's log, as downloaded.
    pub log: Option<String>,
}

/// Remove ANSI escape sequences and GitHub Actions' leading timestamps from a log.
pub fn clean_log(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    for line in log.lines() {
        let line = strip_ansi(line);
        let line = strip_timestamp(&line);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `2024-01-02T03:04:05.1234567Z rest` → `rest`.
fn strip_timestamp(line: &str) -> &str {
    let bytes = line.as_bytes();
    let looks_like = bytes.len() > 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[..4].iter().all(u8::is_ascii_digit);
    if !looks_like {
        return line;
    }
    match line.find(' ') {
        Some(space) if line[..space].ends_with('Z') => &line[space + 1..],
        _ => line,
    }
}

/// Whether a log line reports an error.
pub fn is_error_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ["error", "fail", "panic", "exception", "fatal", "assert"]
        .iter()
        .any(|w| lower.contains(w))
}

/// Lines of context kept around each error line.
const CONTEXT: usize = 3;
/// Lines always kept from the end of a log.
const TAIL: usize = 30;

/// The part of a (clean) log worth reading: every error line with a few lines around it and the
/// end of the log, in order, gaps marked; at most `budget` bytes, keeping the end when cut.
pub fn log_excerpt(log: &str, budget: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let mut keep = vec![false; lines.len()];
    for (i, line) in lines.iter().enumerate() {
        if is_error_line(line) {
            let from = i.saturating_sub(CONTEXT);
            let to = (i + CONTEXT + 1).min(lines.len());
            keep[from..to].iter_mut().for_each(|k| *k = true);
        }
    }
    let tail_from = lines.len().saturating_sub(TAIL);
    keep[tail_from..].iter_mut().for_each(|k| *k = true);
    let mut chunks: Vec<String> = Vec::new();
    let mut skipped = 0usize;
    for (i, line) in lines.iter().enumerate() {
        if keep[i] {
            if skipped > 0 {
                chunks.push(format!("[… {skipped} lines …]"));
                skipped = 0;
            }
            chunks.push(line.to_string());
        } else {
            skipped += 1;
        }
    }
    // Over budget: drop from the front, where the least relevant lines are.
    let mut total: usize = chunks.iter().map(|c| c.len() + 1).sum();
    let mut dropped = 0usize;
    let mut start = 0;
    while total > budget && start < chunks.len() {
        total -= chunks[start].len() + 1;
        dropped += 1;
        start += 1;
    }
    let mut out = String::new();
    if dropped > 0 {
        out.push_str(&format!(
            "[… cut: {dropped} earlier lines over the size budget …]\n"
        ));
    }
    for chunk in &chunks[start..] {
        out.push_str(chunk);
        out.push('\n');
    }
    out
}

/// The size budget of a whole failure report.
pub const REPORT_BUDGET: usize = 20 * 1024;

/// The prompt for a CI round: what failed and why, as GitHub reported it.
pub fn report(
    sha: &str,
    branch: &str,
    failures: &[(Failure, Detail)],
    base_red: Option<&str>,
    budget: usize,
) -> String {
    let short = &sha[..sha.len().min(7)];
    let mut head = format!(
        "CI failed on commit {short} of branch {branch}. Find the cause and fix it in this \
         workspace: keep the change focused, and do not disable, skip or weaken the failing \
         checks. Do not commit or push; that is done for you when you finish. End with a short \
         summary of the fix.\n"
    );
    if let Some(base) = base_red {
        head.push_str(&format!(
            "\nNote: the base branch's own checks fail too ({base}), so part of this failure may \
             not come from this branch.\n"
        ));
    }
    // Everything but the logs first; the logs share what is left of the budget.
    let mut sections = Vec::new();
    for (failure, detail) in failures {
        let mut s = format!("\n## {} ({})\n", failure.name, failure.conclusion);
        for part in [&failure.title, &failure.summary, &failure.text]
            .into_iter()
            .flatten()
        {
            let part = part.trim();
            if !part.is_empty() {
                s.push_str(&clip(part, 4000));
                s.push('\n');
            }
        }
        if !detail.annotations.is_empty() {
            s.push_str("\nAnnotations:\n");
            for a in detail.annotations.iter().take(50) {
                s.push_str(&format!("- {}\n", clip(a, 500)));
            }
        }
        sections.push(s);
    }
    let fixed: usize = head.len() + sections.iter().map(String::len).sum::<usize>();
    let logs = failures.iter().filter(|(_, d)| d.log.is_some()).count();
    let per_log = budget
        .saturating_sub(fixed + 200 * logs)
        .checked_div(logs)
        .unwrap_or(0);
    let mut out = head;
    for ((_, detail), section) in failures.iter().zip(sections) {
        out.push_str(&section);
        if let Some(log) = &detail.log {
            out.push_str("\nLog (error lines with context, and the end):\n```\n");
            out.push_str(&log_excerpt(&clean_log(log), per_log.max(512)));
            out.push_str("```\n");
        }
    }
    if out.len() > budget {
        let mut cut = budget.saturating_sub(40);
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("\n[… report cut at its size budget …]\n");
    }
    out
}

/// What identifies a failure across rounds: the failed checks' names and their first error
/// lines, with numbers blanked (timings and counts change between runs of the same failure).
pub fn fingerprint(failures: &[(Failure, Detail)]) -> String {
    let mut parts: Vec<String> = failures
        .iter()
        .map(|(failure, detail)| {
            let first_error = detail
                .annotations
                .first()
                .cloned()
                .or_else(|| {
                    detail.log.as_ref().and_then(|log| {
                        clean_log(log)
                            .lines()
                            .find(|l| is_error_line(l))
                            .map(str::to_string)
                    })
                })
                .or_else(|| failure.title.clone())
                .unwrap_or_default();
            format!("{}={}", failure.name, blank_numbers(first_error.trim()))
        })
        .collect();
    parts.sort();
    clip(&parts.join("\n"), 1000)
}

fn blank_numbers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_number = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::{AppRef, CheckRunOutput, IdRef};

    fn run(name: &str, status: &str, conclusion: Option<&str>, app: u64, suite: u64) -> CheckRun {
        CheckRun {
            id: name.len() as u64,
            name: name.into(),
            head_sha: "abc".into(),
            status: Some(status.into()),
            conclusion: conclusion.map(str::to_string),
            output: CheckRunOutput::default(),
            app: Some(AppRef {
                id: app,
                name: None,
                slug: None,
            }),
            check_suite: Some(IdRef { id: suite }),
            details_url: None,
        }
    }

    fn suite(id: u64, app: u64) -> CheckSuite {
        CheckSuite {
            id,
            head_sha: "abc".into(),
            status: Some("completed".into()),
            conclusion: None,
            app: Some(AppRef {
                id: app,
                name: Some(format!("app {app}")),
                slug: None,
            }),
            latest_check_runs_count: Some(1),
        }
    }

    fn suite_without_runs(id: u64, app: u64, status: &str, conclusion: Option<&str>) -> CheckSuite {
        CheckSuite {
            status: Some(status.into()),
            conclusion: conclusion.map(str::to_string),
            latest_check_runs_count: Some(0),
            ..suite(id, app)
        }
    }

    fn status(context: &str, state: &str) -> CommitStatus {
        CommitStatus {
            context: context.into(),
            state: state.into(),
            description: None,
            target_url: None,
        }
    }

    const ACTIONS: u64 = GITHUB_ACTIONS_APP_ID;
    const OWN: u64 = 4242;

    #[test]
    fn decisions() {
        let suites = [suite(1, ACTIONS), suite(2, 99), suite(3, OWN)];
        let names = |v: Verdict| match v {
            Verdict::Failed(f) => f.into_iter().map(|f| f.name).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let cases: Vec<(&str, Vec<CheckRun>, Vec<CommitStatus>, Verdict)> = vec![
            ("nothing at all", vec![], vec![], Verdict::NoChecks),
            (
                "all green",
                vec![
                    run("test", "completed", Some("success"), ACTIONS, 1),
                    run("lint", "completed", Some("neutral"), 99, 2),
                    run("docs", "completed", Some("skipped"), ACTIONS, 1),
                ],
                vec![status("ci/external", "success")],
                Verdict::PASSED,
            ),
            (
                "one still running",
                vec![
                    run("test", "completed", Some("success"), ACTIONS, 1),
                    run("lint", "in_progress", None, 99, 2),
                ],
                vec![],
                Verdict::Waiting,
            ),
            (
                "a pending status",
                vec![run("test", "completed", Some("success"), ACTIONS, 1)],
                vec![status("ci/external", "pending")],
                Verdict::Waiting,
            ),
            (
                "only this app's own checks",
                vec![run("amp", "completed", Some("failure"), OWN, 3)],
                vec![],
                Verdict::NoChecks,
            ),
        ];
        for (name, runs, statuses, expected) in cases {
            assert_eq!(
                decide(&suites, &runs, &statuses, Some(OWN), CheckRules::ALL),
                expected,
                "{name}"
            );
        }
        // Any failing conclusion fails, even while others still run.
        for conclusion in FAILING {
            let runs = [
                run("test", "completed", Some(conclusion), ACTIONS, 1),
                run("lint", "queued", None, 99, 2),
            ];
            assert_eq!(
                names(decide(&suites, &runs, &[], Some(OWN), CheckRules::ALL)),
                ["test"],
                "{conclusion}"
            );
        }
        // A run GitHub marked stale decided nothing.
        let runs = [
            run("test", "completed", Some("success"), ACTIONS, 1),
            run("lint", "completed", Some("stale"), 99, 2),
        ];
        assert_eq!(
            decide(&suites, &runs, &[], Some(OWN), CheckRules::ALL),
            Verdict::Waiting
        );
        // A workflow that did not start fails, with nothing else on the commit and beside a
        // passing run; suites without runs that did not fail (another app's queued suite) do not
        // count.
        let not_started = suite_without_runs(7, ACTIONS, "completed", Some("startup_failure"));
        let idle = suite_without_runs(8, 99, "queued", None);
        let with = |extra: &[CheckSuite]| [&suites[..], extra].concat();
        let failed = decide(
            &with(&[not_started.clone(), idle.clone()]),
            &[],
            &[],
            Some(OWN),
            CheckRules::ALL,
        );
        let Verdict::Failed(failures) = failed else {
            panic!("{failed:?}")
        };
        assert_eq!(failures[0].conclusion, "startup_failure");
        assert!(
            failures[0]
                .title
                .as_deref()
                .unwrap()
                .contains("did not start")
        );
        let runs = [run("test", "completed", Some("success"), ACTIONS, 1)];
        assert_eq!(
            names(decide(
                &with(std::slice::from_ref(&not_started)),
                &runs,
                &[],
                Some(OWN),
                CheckRules::ALL
            )),
            [format!("app {ACTIONS}")]
        );
        assert_eq!(
            decide(&with(&[idle]), &[], &[], Some(OWN), CheckRules::ALL),
            Verdict::NoChecks
        );
        let own_not_started = suite_without_runs(9, OWN, "completed", Some("startup_failure"));
        assert_eq!(
            decide(
                &with(&[own_not_started]),
                &[],
                &[],
                Some(OWN),
                CheckRules::ALL
            ),
            Verdict::NoChecks
        );
        let failed = decide(
            &suites,
            &runs,
            &[status("ci/ext", "error")],
            Some(OWN),
            CheckRules::ALL,
        );
        assert_eq!(names(failed), ["ci/ext"]);
        // A run in this app's own suite does not count, whatever app it names.
        let runs = [
            run("ok", "completed", Some("success"), ACTIONS, 1),
            run("mine", "completed", Some("failure"), ACTIONS, 3),
        ];
        assert_eq!(
            decide(&suites, &runs, &[], Some(OWN), CheckRules::ALL),
            Verdict::PASSED
        );
    }

    #[test]
    fn required_and_ignored_checks() {
        let suites = [suite(1, ACTIONS), suite(2, 99)];
        let required = ["test".to_string()];
        let ignore = ["preview".to_string()];
        let rules = CheckRules {
            required: Some(&required),
            ignore: &ignore,
        };
        let only_ignored = CheckRules {
            required: None,
            ignore: &ignore,
        };
        let names = |fs: &[Failure]| fs.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        let flaky = run("flaky", "completed", Some("failure"), 99, 2);
        let test_ok = run("test", "completed", Some("success"), ACTIONS, 1);
        let test_red = run("test", "completed", Some("failure"), ACTIONS, 1);
        let preview_red = run("preview", "completed", Some("failure"), 99, 2);
        let preview_running = run("preview", "in_progress", None, 99, 2);

        // A failing check that is not required is reported, and does not block.
        let verdict = decide(&suites, &[test_ok.clone(), flaky.clone()], &[], None, rules);
        let Verdict::Passed { not_required } = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(names(&not_required), ["flaky"]);
        // …nor does one still running.
        let slow = run("slow", "queued", None, 99, 2);
        assert!(matches!(
            decide(&suites, &[test_ok.clone(), slow], &[], None, rules),
            Verdict::Passed { .. }
        ));
        // A required check that fails, fails.
        let verdict = decide(&suites, &[test_red, flaky.clone()], &[], None, rules);
        let Verdict::Failed(failed) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(names(&failed), ["test"]);
        // A required check not reported yet is waited for, even with nothing else on the commit.
        assert_eq!(
            decide(&suites, std::slice::from_ref(&flaky), &[], None, rules),
            Verdict::Waiting
        );
        assert_eq!(decide(&suites, &[], &[], None, rules), Verdict::Waiting);
        // A commit status is a check too, named by its context.
        let required_status = ["ci/external".to_string()];
        let by_status = CheckRules {
            required: Some(&required_status),
            ignore: &[],
        };
        assert_eq!(
            decide(
                &suites,
                std::slice::from_ref(&flaky),
                &[status("ci/external", "pending")],
                None,
                by_status
            ),
            Verdict::Waiting
        );
        assert!(matches!(
            decide(
                &suites,
                std::slice::from_ref(&flaky),
                &[status("ci/external", "success")],
                None,
                by_status
            ),
            Verdict::Passed { .. }
        ));
        // An ignored check is neither waited for nor reported, failing or running.
        for preview in [preview_red, preview_running] {
            assert_eq!(
                decide(
                    &suites,
                    &[test_ok.clone(), preview.clone()],
                    &[],
                    None,
                    only_ignored
                ),
                Verdict::PASSED
            );
            assert_eq!(
                decide(&suites, &[preview], &[], None, only_ignored),
                Verdict::NoChecks
            );
        }
        assert_eq!(
            decide(
                &suites,
                &[],
                &[status("preview", "failure")],
                None,
                only_ignored
            ),
            Verdict::NoChecks
        );
        // A workflow that did not start blocks while a required check is missing (it may be the
        // one that runs it), and is only reported once every required check is there.
        let not_started = suite_without_runs(7, ACTIONS, "completed", Some("startup_failure"));
        let with_broken = [suites[0].clone(), suites[1].clone(), not_started];
        assert!(matches!(
            decide(&with_broken, &[], &[], None, rules),
            Verdict::Failed(_)
        ));
        let verdict = decide(&with_broken, &[test_ok], &[], None, rules);
        let Verdict::Passed { not_required } = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(names(&not_required), [format!("app {ACTIONS}")]);
    }

    #[test]
    fn logs_are_cleaned_and_cut_around_errors() {
        let raw = "2024-05-01T10:00:00.1234567Z \u{1b}[36;1mcargo test\u{1b}[0m\n\
                   2024-05-01T10:00:01.0000000Z running 3 tests\n";
        assert_eq!(clean_log(raw), "cargo test\nrunning 3 tests\n");

        let mut log = String::new();
        for i in 0..200 {
            log.push_str(&format!("line {i}\n"));
            if i == 50 {
                log.push_str("error[E0308]: mismatched types\n");
            }
        }
        let excerpt = log_excerpt(&log, 100_000);
        assert!(
            excerpt.contains("line 48\nline 49\nline 50\nerror[E0308]"),
            "{excerpt}"
        );
        assert!(excerpt.contains("[… "), "{excerpt}");
        assert!(excerpt.ends_with("line 199\n"), "{excerpt}");
        assert!(!excerpt.contains("line 100\n"));
        let small = log_excerpt(&log, 200);
        assert!(small.len() <= 200 + 80, "{}", small.len());
        assert!(small.starts_with("[… cut:"), "{small}");
        assert!(small.ends_with("line 199\n"));
    }

    fn failure(name: &str) -> Failure {
        Failure {
            name: name.into(),
            conclusion: "failure".into(),
            run_id: Some(1),
            actions_job: true,
            title: Some("2 tests failed".into()),
            summary: Some("see the log".into()),
            text: None,
            details_url: None,
        }
    }

    #[test]
    fn the_report_keeps_to_its_budget() {
        let detail = Detail {
            annotations: vec!["src/lib.rs:3: expected 3, got 2".into()],
            log: Some(
                "error: widget 7 is out of stock\n".repeat(5_000) + "test widgets ... FAILED\n",
            ),
        };
        let failures = vec![(failure("test"), detail)];
        let report = report(
            "0123456789abcdef",
            "amp/1-x",
            &failures,
            Some("lint"),
            REPORT_BUDGET,
        );
        assert!(report.len() <= REPORT_BUDGET, "{}", report.len());
        assert!(report.contains("CI failed on commit 0123456 of branch amp/1-x"));
        assert!(report.contains("## test (failure)"));
        assert!(report.contains("- src/lib.rs:3: expected 3, got 2"));
        assert!(report.contains("test widgets ... FAILED"));
        assert!(report.contains("base branch's own checks fail too (lint)"));
        assert!(report.contains("[… cut:"));
    }

    #[test]
    fn fingerprints_ignore_numbers_but_not_messages() {
        let with = |message: &str| {
            vec![(
                failure("test"),
                Detail {
                    annotations: vec![message.to_string()],
                    log: None,
                },
            )]
        };
        assert_eq!(
            fingerprint(&with("took 0.53s: expected 3, got 2")),
            fingerprint(&with("took 1.20s: expected 3, got 2"))
        );
        assert_ne!(
            fingerprint(&with("expected 3, got 2")),
            fingerprint(&with("widget missing"))
        );
        let from_log = vec![(
            failure("test"),
            Detail {
                annotations: vec![],
                log: Some("compiling\nerror: boom at 12\n".into()),
            },
        )];
        assert_eq!(fingerprint(&from_log), "test=error: boom at #");
    }
}
