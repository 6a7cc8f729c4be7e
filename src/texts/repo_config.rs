//! What the App says about a repository's `.github/amp.toml`: the answer to `/amp config`, and
//! the reply when a task cannot start because the file has problems.

use humantime::format_duration;

use crate::repo_config::{DEFAULT_CACHE_KEY, Effective, PATH, Problem, Setting, Source};
use crate::text::{clip, inert};

/// Problems listed in one comment; the rest are counted.
const MAX_PROBLEMS_SHOWN: usize = 20;
/// Entries of one list shown in the table; the rest are counted.
const MAX_ITEMS_SHOWN: usize = 10;

/// What `/amp config` found on the default branch.
#[derive(Debug, Clone, Copy)]
pub enum FileFound<'a> {
    /// There is no `.github/amp.toml`.
    Absent,
    /// A valid file.
    Valid,
    /// A file with problems, so no task starts.
    Invalid(&'a [Problem]),
}

/// The answer to `/amp config`: the configuration tasks run with (for an invalid file, the
/// service's defaults), each value with where it comes from, and the file's problems.
pub fn config_reply(found: FileFound, effective: &Effective) -> String {
    let heading = "**amp-orchestrator** configuration of this repository";
    let table = table(effective);
    match found {
        FileFound::Absent => format!(
            "{heading}: there is no `{PATH}` on the default branch, so the service's defaults \
             apply.\n\n{table}\n\nAdd `{PATH}` to the default branch to change them."
        ),
        FileFound::Valid => {
            let secrets = if effective.secrets.value.is_empty() {
                ""
            } else {
                "\n\nSecrets are shown by name; their values stay with the service, and only the \
                 setup commands get them."
            };
            format!(
                "{heading}: `{PATH}` on the default branch, with the service's defaults for \
                 what it leaves out.\n\n{table}{secrets}"
            )
        }
        FileFound::Invalid(problems) => format!(
            "{heading}: `{PATH}` on the default branch has problems, and no task starts until \
             they are fixed:\n\n{problems}\n\nThe service's defaults, for what a valid file \
             leaves out:\n\n{table}",
            problems = problem_list(problems),
        ),
    }
}

/// A task did not start because `.github/amp.toml` has problems.
pub fn invalid_config(login: &str, problems: &[Problem]) -> String {
    format!(
        "@{login}, the task did not start: `{PATH}` on the default branch has problems.\n\n\
         {problems}\n\n\
         Fix them on the default branch, then comment `/amp <what to do>` again. `/amp config` \
         shows the configuration in effect.",
        problems = problem_list(problems),
    )
}

/// Someone with enough access, but not among the users `.github/amp.toml` lets command the
/// agent.
pub fn not_listed(login: &str) -> String {
    format!(
        "@{login}, nothing was started: this repository's `{PATH}` lets only the users it lists \
         (`permissions.users`) use `/amp` commands. Ask one of them to run it for you."
    )
}

/// One line per problem, `file:line:column: message`.
pub(crate) fn problem_list(problems: &[Problem]) -> String {
    let mut lines: Vec<String> = problems
        .iter()
        .take(MAX_PROBLEMS_SHOWN)
        .map(|p| {
            format!(
                "- `{PATH}:{}:{}`: {}",
                p.line,
                p.column,
                inert(&clip(&p.message, 300))
            )
        })
        .collect();
    if problems.len() > MAX_PROBLEMS_SHOWN {
        lines.push(format!(
            "- and {} more",
            problems.len() - MAX_PROBLEMS_SHOWN
        ));
    }
    lines.join("\n")
}

/// Every setting, its value and where it comes from.
fn table(e: &Effective) -> String {
    let duration = |d: &Setting<std::time::Duration>| code(&format_duration(d.value).to_string());
    let rows = [
        ("image", code(&e.image.value), e.image.source),
        (
            "setup",
            list(&e.setup.value, "<br>", "none"),
            e.setup.source,
        ),
        (
            "setup_failure",
            code(e.setup_failure.value.as_str()),
            e.setup_failure.source,
        ),
        (
            "cache_key",
            match &e.cache_key.value {
                Some(files) => list(files, ", ", "none"),
                None => format!(
                    "whichever of {} are present",
                    list(DEFAULT_CACHE_KEY, ", ", "")
                ),
            },
            e.cache_key.source,
        ),
        (
            "secrets",
            list(&e.secrets.value, ", ", "none"),
            e.secrets.source,
        ),
        (
            "env",
            list(
                &e.env
                    .value
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>(),
                ", ",
                "none",
            ),
            e.env.source,
        ),
        (
            "agent.mode",
            e.mode
                .value
                .map_or("Amp's default".into(), |m| code(m.as_str())),
            e.mode.source,
        ),
        (
            "agent.instructions",
            e.instructions.value.as_deref().map_or("none".into(), code),
            e.instructions.source,
        ),
        (
            "agent.turn_timeout",
            duration(&e.turn_timeout),
            e.turn_timeout.source,
        ),
        (
            "ci.max_rounds",
            code(&e.max_rounds.value.to_string()),
            e.max_rounds.source,
        ),
        (
            "ci.wait_timeout",
            duration(&e.wait_timeout),
            e.wait_timeout.source,
        ),
        (
            "ci.required",
            e.required
                .value
                .as_deref()
                .map_or("every check".into(), |checks| list(checks, ", ", "none")),
            e.required.source,
        ),
        (
            "ci.ignore",
            list(&e.ignore.value, ", ", "none"),
            e.ignore.source,
        ),
        (
            "permissions.minimum",
            code(e.minimum.value.as_str()),
            e.minimum.source,
        ),
        (
            "permissions.users",
            e.users
                .value
                .as_deref()
                .map_or("anyone with that role".into(), |users| {
                    list(users, ", ", "none")
                }),
            e.users.source,
        ),
        (
            "paths.workdir",
            e.workdir
                .value
                .as_deref()
                .map_or("the repository's root".into(), code),
            e.workdir.source,
        ),
        (
            "egress.allow",
            list(
                &e.egress_allow.value,
                ", ",
                "none beyond the service's allowlist",
            ),
            e.egress_allow.source,
        ),
    ];
    let mut out = String::from("| Setting | Value | From |\n|---|---|---|");
    for (key, value, source) in rows {
        let from = match source {
            Source::File => format!("`{PATH}`"),
            Source::Service => "service default".into(),
        };
        out.push_str(&format!("\n| `{key}` | {value} | {from} |"));
    }
    out
}

/// Each item as code, joined by `separator`, at most [`MAX_ITEMS_SHOWN`]; `empty` for none.
fn list(items: &[impl AsRef<str>], separator: &str, empty: &str) -> String {
    if items.is_empty() {
        return empty.to_string();
    }
    let mut shown: Vec<String> = items
        .iter()
        .take(MAX_ITEMS_SHOWN)
        .map(|item| code(item.as_ref()))
        .collect();
    if items.len() > MAX_ITEMS_SHOWN {
        shown.push(format!("and {} more", items.len() - MAX_ITEMS_SHOWN));
    }
    shown.join(separator)
}

/// A value of the file as inline code in a table cell: on one line, cut short, its `|` escaped
/// (the table's separator, even inside code), between enough backticks to hold its own.
fn code(value: &str) -> String {
    let value = clip(&value.replace(['\n', '\r'], " "), 100).replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in value.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if value.starts_with('`') || value.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{value}{pad}{fence}")
}

/// `/amp config --rebuild` removed the repository's setup snapshots (`removed` of them).
pub fn rebuilt(removed: usize) -> String {
    match removed {
        0 => "This repository has no setup snapshot; the next task runs its setup anyway.".into(),
        1 => "Removed this repository's setup snapshot: the next task runs its setup from the \
              start and saves a new one."
            .into(),
        n => format!(
            "Removed this repository's {n} setup snapshots: the next task runs its setup from the \
             start and saves a new one."
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::Role;
    use crate::repo_config::{Bounds, effective, parse};

    fn bounds() -> Bounds {
        Bounds {
            image: "amp-orchestrator-agent:latest".into(),
            max_rounds: 3,
            wait_timeout: Duration::from_secs(3600),
            turn_timeout: Duration::from_secs(7200),
            minimum: Role::Write,
            held_secrets: vec!["NPM_TOKEN".into()],
            refused_keys: &[],
        }
    }

    const EVERY_SECTION: &str = r#"image = "rust:1-bookworm"
setup = ["cargo fetch", "cargo build --tests | tee build.log"]
cache_key = ["Cargo.lock"]
secrets = ["NPM_TOKEN"]

[env]
RUST_BACKTRACE = "1"

[agent]
mode = "high"
instructions = "Run `cargo test` before you finish."
turn_timeout = "20m"

[ci]
max_rounds = 2
wait_timeout = "30m"
required = ["test"]
ignore = ["deploy-preview"]

[permissions]
minimum = "maintain"
users = ["octocat"]

[paths]
workdir = "services/api"

[egress]
allow = ["registry.example.com", "*.example.org"]
"#;

    const PROBLEMS: &str = r#"image = "rust 1"
secrets = ["npm-token"]

[env]
AMP_API_KEY = "x"

[ci]
max_rounds = 5

[permissions]
users = ["@someone"]
"#;

    #[test]
    fn config_replies() {
        let b = bounds();
        let config = parse(EVERY_SECTION, &b).unwrap();
        insta::assert_snapshot!(
            "config_valid",
            config_reply(FileFound::Valid, &effective(Some(&config), &b))
        );
        insta::assert_snapshot!(
            "config_absent",
            config_reply(FileFound::Absent, &effective(None, &b))
        );
        let problems = parse(PROBLEMS, &b).unwrap_err();
        insta::assert_snapshot!(
            "config_invalid",
            config_reply(FileFound::Invalid(&problems), &effective(None, &b))
        );
        insta::assert_snapshot!("invalid_config", invalid_config("mona", &problems));
        insta::assert_snapshot!("not_listed", not_listed("mona"));
        insta::assert_snapshot!("rebuilt", [rebuilt(0), rebuilt(1), rebuilt(2)].join("\n\n"));
    }

    #[test]
    fn long_lists_are_cut_and_counted() {
        let problems: Vec<Problem> = (1..=25)
            .map(|line| Problem {
                line,
                column: 1,
                message: "`image`: is empty".into(),
            })
            .collect();
        let reply = invalid_config("mona", &problems);
        assert!(reply.contains("`.github/amp.toml:20:1`: "), "{reply}");
        assert!(!reply.contains("`.github/amp.toml:21:1`: "), "{reply}");
        assert!(reply.contains("- and 5 more\n"), "{reply}");
        let many: Vec<String> = (0..12).map(|i| format!("h{i}")).collect();
        assert_eq!(
            list(&many, ", ", "none"),
            "`h0`, `h1`, `h2`, `h3`, `h4`, `h5`, `h6`, `h7`, `h8`, `h9`, and 2 more"
        );
        assert_eq!(list(&[] as &[&str], ", ", "none"), "none");
    }

    #[test]
    fn values_stay_inline_code() {
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("run `x`"), "`` run `x` ``");
        assert_eq!(code("a ``b`` c"), "```a ``b`` c```");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code("a\nb"), "`a b`");
        assert!(code(&"x".repeat(200)).ends_with(" […]`"));
    }
}
