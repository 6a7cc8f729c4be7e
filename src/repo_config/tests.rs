use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::domain::Role;

/// The example of the documentation: every key set.
const EXAMPLE: &str = r#"image = "rust:1-bookworm"          # any image with a POSIX shell
setup = ["cargo fetch", "cargo build --tests"]
setup_failure = "stop"
cache_key = ["Cargo.lock"]
secrets = ["NPM_TOKEN"]

[env]
RUST_BACKTRACE = "1"

[agent]
mode = "high"
instructions = "Run cargo test before you finish."
turn_timeout = "20m"

[ci]
max_rounds = 3
wait_timeout = "30m"
required = ["test"]
ignore = ["deploy-preview"]

[permissions]
minimum = "write"
users = ["octocat"]

[paths]
workdir = "services/api"

[egress]
allow = ["registry.example.com", "*.example.org"]
"#;

fn bounds() -> Bounds {
    Bounds {
        image: "amp-orchestrator-agent:latest".into(),
        max_rounds: 3,
        wait_timeout: Duration::from_secs(3600),
        turn_timeout: Duration::from_secs(7200),
        minimum: Role::Write,
        held_secrets: (0..30)
            .map(|i| format!("S{i}"))
            .chain(["NPM_TOKEN".to_string()])
            .collect(),
        refused_keys: &[],
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, &bounds()) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(problems) => problems,
    }
}

/// The one problem `text` has, as `(line, column, message)`.
fn only_problem(text: &str) -> (usize, usize, String) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let p = found.into_iter().next().unwrap();
    (p.line, p.column, p.message)
}

fn service<T>(value: T) -> Setting<T> {
    Setting {
        value,
        source: Source::Service,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_example_parses_to_its_values() {
    let config = parse(EXAMPLE, &bounds()).unwrap();
    assert_eq!(
        config,
        RepoConfig {
            image: Some("rust:1-bookworm".into()),
            setup: Some(strings(&["cargo fetch", "cargo build --tests"])),
            setup_failure: Some(SetupFailure::Stop),
            cache_key: Some(strings(&["Cargo.lock"])),
            secrets: Some(strings(&["NPM_TOKEN"])),
            env: Some(BTreeMap::from([("RUST_BACKTRACE".into(), "1".into())])),
            mode: Some(Mode::High),
            instructions: Some("Run cargo test before you finish.".into()),
            turn_timeout: Some(Duration::from_secs(20 * 60)),
            max_rounds: Some(3),
            wait_timeout: Some(Duration::from_secs(30 * 60)),
            required: Some(strings(&["test"])),
            ignore: Some(strings(&["deploy-preview"])),
            minimum: Some(Role::Write),
            users: Some(strings(&["octocat"])),
            workdir: Some("services/api".into()),
            egress_allow: Some(strings(&["registry.example.com", "*.example.org"])),
        }
    );
}

#[test]
fn an_empty_file_leaves_everything_to_the_service() {
    for text in ["", "\n", "# nothing here yet\n", "[agent]\n[ci]\n"] {
        assert_eq!(
            parse(text, &bounds()),
            Ok(RepoConfig::default()),
            "{text:?}"
        );
    }
    let b = bounds();
    let e = effective(Some(&RepoConfig::default()), &b);
    assert_eq!(e, effective(None, &b));
    assert_eq!(
        e.image,
        service("amp-orchestrator-agent:latest".to_string())
    );
    assert_eq!(e.setup, service(Vec::new()));
    assert_eq!(e.setup_failure, service(SetupFailure::Stop));
    assert_eq!(e.cache_key, service(None));
    assert_eq!(e.mode, service(None));
    assert_eq!(e.turn_timeout, service(Duration::from_secs(7200)));
    assert_eq!(e.max_rounds, service(3));
    assert_eq!(e.wait_timeout, service(Duration::from_secs(3600)));
    assert_eq!(e.minimum, service(Role::Write));
    assert_eq!(e.users, service(None));
    assert_eq!(e.workdir, service(None));
    assert_eq!(e.egress_allow, service(Vec::new()));
}

#[test]
fn the_effective_configuration_says_where_each_value_comes_from() {
    let b = bounds();
    let config = parse("setup = []\n[ci]\nmax_rounds = 1\n", &b).unwrap();
    let e = effective(Some(&config), &b);
    assert_eq!(
        (e.setup.value.len(), e.setup.source),
        (0, Source::File),
        "an empty setup is the file's choice"
    );
    assert_eq!((e.max_rounds.value, e.max_rounds.source), (1, Source::File));
    assert_eq!(e.wait_timeout.source, Source::Service);
    let all = effective(Some(&parse(EXAMPLE, &b).unwrap()), &b);
    assert_eq!(all.mode.value, Some(Mode::High));
    assert_eq!(all.workdir.value.as_deref(), Some("services/api"));
    assert!(
        [
            all.image.source,
            all.cache_key.source,
            all.secrets.source,
            all.env.source,
            all.instructions.source,
            all.required.source,
            all.ignore.source,
            all.minimum.source,
            all.users.source,
            all.egress_allow.source,
        ]
        .iter()
        .all(|s| *s == Source::File)
    );
    // Checked against other bounds, a file's values are held to these.
    let generous = Bounds {
        max_rounds: 9,
        minimum: Role::Read,
        ..bounds()
    };
    let config = parse(
        "[ci]\nmax_rounds = 9\n[permissions]\nminimum = \"read\"\n",
        &generous,
    );
    let e = effective(Some(&config.unwrap()), &b);
    assert_eq!((e.max_rounds.value, e.minimum.value), (3, Role::Write));
}

#[test]
fn unknown_keys_are_named_with_the_allowed_ones() {
    let (line, column, message) = only_problem("image = \"a\"\ncolour = \"red\"\n");
    assert_eq!((line, column), (2, 1));
    assert_eq!(
        message,
        "unknown field `colour`, expected one of `image`, `setup`, `setup_failure`, \
         `cache_key`, `secrets`, `env`, `agent`, `ci`, `permissions`, `paths`, `egress`"
    );
    let (line, column, message) = only_problem("[ci]\nmax_rounds = 2\n  max_round = 3\n");
    assert_eq!((line, column), (3, 3));
    assert_eq!(
        message,
        "unknown field `max_round`, expected one of `max_rounds`, `wait_timeout`, `required`, \
         `ignore`"
    );
    let (line, column, message) = only_problem("paths.root = \"x\"\n");
    assert_eq!((line, column), (1, 7));
    assert_eq!(message, "unknown field `root`, expected `workdir`");
}

#[test]
fn a_wrong_type_is_found_at_the_value() {
    let (line, column, message) = only_problem("# setup\nsetup = \"cargo fetch\"\n");
    assert_eq!((line, column), (2, 9));
    assert_eq!(
        message,
        "invalid type: string \"cargo fetch\", expected an array"
    );
    let (line, column, message) = only_problem("[ci]\nmax_rounds = \"3\"\n");
    assert_eq!((line, column), (2, 14));
    assert_eq!(message, "invalid type: string \"3\", expected an integer");
    let (line, column, message) = only_problem("[env]\nRUST_BACKTRACE = 1\n");
    assert_eq!((line, column), (2, 18));
    assert_eq!(message, "invalid type: integer `1`, expected a string");
    let (line, column, message) = only_problem("agent = \"high\"\n");
    assert_eq!((line, column), (1, 9));
    assert!(message.ends_with("expected struct Agent"), "{message}");
}

#[test]
fn bad_toml_is_found_where_it_breaks() {
    let (line, column, message) = only_problem("image = \"a\"\nsetup = [\"x\"\n");
    assert_eq!(line, 2, "{message}");
    assert!(column > 1, "{column}");
    let (line, _, message) = only_problem("image = \"a\"\nimage = \"b\"\n");
    assert_eq!((line, message.as_str()), (2, "duplicate key"));
}

#[test]
fn values_beyond_the_operators_bounds_name_them() {
    let text = "[agent]\n\
                turn_timeout = \"3h\"\n\
                [ci]\n\
                max_rounds = 5\n\
                wait_timeout = \"2h\"\n\
                [permissions]\n\
                minimum = \"read\"\n";
    let found: Vec<String> = problems(text).iter().map(Problem::to_string).collect();
    assert_eq!(
        found,
        [
            ".github/amp.toml:2:16: `agent.turn_timeout`: is 3h, longer than this service \
             allows (2h)",
            ".github/amp.toml:4:14: `ci.max_rounds`: is 5, more than this service allows (3)",
            ".github/amp.toml:5:16: `ci.wait_timeout`: is 2h, longer than this service allows \
             (1h)",
            ".github/amp.toml:7:11: `permissions.minimum`: is read, lower than this service's \
             minimum (write); a repository can only make it stricter",
        ]
    );
    // At the bounds is fine; stricter is fine.
    let config = parse(
        "[agent]\nturn_timeout = \"2h\"\n[ci]\nmax_rounds = 0\nwait_timeout = \"1m\"\n\
         [permissions]\nminimum = \"admin\"\n",
        &bounds(),
    )
    .unwrap();
    assert_eq!(config.turn_timeout, Some(Duration::from_secs(7200)));
    assert_eq!(config.max_rounds, Some(0));
    assert_eq!(config.minimum, Some(Role::Admin));
    let found = problems(
        "[agent]\nturn_timeout = \"30s\"\n[ci]\nmax_rounds = -1\nwait_timeout = \"soon\"\n\
         [permissions]\nminimum = \"none\"\n",
    );
    let messages: Vec<&str> = found.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert_eq!(
        messages[0],
        "`agent.turn_timeout`: is 30s, shorter than the least allowed (1m)"
    );
    assert_eq!(messages[1], "`ci.max_rounds`: must be 0 or more, got -1");
    assert!(
        messages[2].starts_with("`ci.wait_timeout`: \"soon\" is not a duration like 90, 90s"),
        "{}",
        messages[2]
    );
    assert_eq!(
        messages[3],
        "`permissions.minimum`: \"none\" is not one of `read`, `triage`, `write`, `maintain` \
         or `admin`"
    );
    // A wait for CI may be shorter than a turn: a repository without CI may not want to wait.
    let found = problems("[ci]\nwait_timeout = \"5s\"\n");
    assert_eq!(
        found[0].message,
        "`ci.wait_timeout`: is 5s, shorter than the least allowed (10s)"
    );
    assert!(parse("[ci]\nwait_timeout = \"10s\"\n", &bounds()).is_ok());
}

#[test]
fn every_problem_with_the_values_is_reported_in_file_order() {
    let text = r#"secrets = ["NPM_TOKEN", "npm-token", "NPM_TOKEN"]
image = "rust 1"

[egress]
allow = ["ok.example.com", "10.0.0.1"]

[env]
https_proxy = "http://evil.example"
AMP_API_KEY = "x"
NPM_TOKEN = "y"
"1BAD" = "z"

[agent]
mode = "turbo"

[ci]
required = ["test", "lint"]
ignore = ["lint", ""]

[paths]
workdir = "../x"

[permissions]
users = ["octocat", "not a login"]
"#;
    let found: Vec<String> = problems(text).iter().map(Problem::to_string).collect();
    assert_eq!(
        found,
        [
            ".github/amp.toml:1:25: `secrets`: \"npm-token\" is not a secret's name: capital \
             letters, digits and `_`, starting with a letter, at most 64 characters",
            ".github/amp.toml:1:38: `secrets`: \"NPM_TOKEN\" is listed twice",
            ".github/amp.toml:2:9: `image`: \"rust 1\" contains whitespace or a control character",
            ".github/amp.toml:5:28: `egress.allow`: is an IP address; the allowlist takes host \
             names",
            ".github/amp.toml:8:1: `env.https_proxy`: cannot be set: the proxy variables belong \
             to the service's sandbox",
            ".github/amp.toml:9:1: `env.AMP_API_KEY`: cannot be set: names starting with `AMP_` \
             belong to the service",
            ".github/amp.toml:10:1: `env.NPM_TOKEN`: is also in `secrets`; a name is either a \
             plain variable or a secret",
            ".github/amp.toml:11:1: `env`: \"1BAD\" is not a variable name: letters, digits and \
             `_`, not starting with a digit, at most 64 characters",
            ".github/amp.toml:14:8: `agent.mode`: \"turbo\" is not one of `low`, `medium`, \
             `high` or `ultra`",
            ".github/amp.toml:18:11: `ci.ignore`: \"lint\" is also in `ci.required`; a check is \
             either required or ignored",
            ".github/amp.toml:18:19: `ci.ignore`: a check's name is empty",
            ".github/amp.toml:21:11: `paths.workdir`: \"../x\" has a `..` component",
            ".github/amp.toml:24:21: `permissions.users`: \"not a login\" is not a GitHub login",
        ]
    );
}

#[test]
fn paths_stay_inside_the_repository() {
    let (line, column, message) = only_problem("[paths]\nworkdir = \"/abs\"\n");
    assert_eq!((line, column), (2, 11));
    assert_eq!(
        message,
        "`paths.workdir`: \"/abs\" is an absolute path; paths are relative to the repository's \
         root"
    );
    let config = parse(
        "cache_key = [\"./web/package-lock.json\"]\n[paths]\nworkdir = \"./services/api/\"\n",
        &bounds(),
    )
    .unwrap();
    assert_eq!(config.workdir.as_deref(), Some("services/api"));
    assert_eq!(config.cache_key, Some(strings(&["web/package-lock.json"])));
    let (_, column, message) = only_problem("cache_key = [\"Cargo.lock\", \"a/../../b\"]\n");
    assert_eq!(column, 28);
    assert_eq!(message, "`cache_key`: \"a/../../b\" has a `..` component");
}

#[test]
fn lists_and_texts_have_limits() {
    let many = |n: usize, item: &str| {
        let items: Vec<String> = (0..n).map(|i| format!("\"{item}{i}\"")).collect();
        format!("[{}]", items.join(", "))
    };
    let (line, column, message) = only_problem(&format!("\nsetup = {}\n", many(51, "echo ")));
    assert_eq!((line, column), (2, 9));
    assert_eq!(message, "`setup`: has 51 entries; at most 50 are allowed");
    assert!(parse(&format!("setup = {}\n", many(50, "echo ")), &bounds()).is_ok());
    let (_, _, message) = only_problem(&format!("secrets = {}\n", many(21, "S")));
    assert_eq!(message, "`secrets`: has 21 entries; at most 20 are allowed");
    let (_, _, message) = only_problem(&format!("[egress]\nallow = {}\n", many(51, "h")));
    assert_eq!(
        message,
        "`egress.allow`: has 51 entries; at most 50 are allowed"
    );
    let (_, _, message) = only_problem(&format!("[permissions]\nusers = {}\n", many(101, "u")));
    assert_eq!(
        message,
        "`permissions.users`: has 101 entries; at most 100 are allowed"
    );
    let vars: String = (0..51).map(|i| format!("V{i} = \"x\"\n")).collect();
    let (line, column, message) = only_problem(&format!("[env]\n{vars}"));
    assert_eq!((line, column), (1, 1));
    assert_eq!(message, "`env`: has 51 entries; at most 50 are allowed");

    let long = "x".repeat(4097);
    let (_, column, message) = only_problem(&format!("setup = [\"ok\", \"{long}\"]\n"));
    assert_eq!(column, 16);
    assert_eq!(message, "`setup`: a command is longer than 4096 bytes");
    let (_, _, message) = only_problem(&format!("[env]\nA = \"{long}\"\n"));
    assert_eq!(message, "`env.A`: is longer than 4096 bytes");
    let (_, _, message) = only_problem(&format!(
        "[agent]\ninstructions = \"{}\"\n",
        "x".repeat(8193)
    ));
    assert_eq!(message, "`agent.instructions`: is longer than 8192 bytes");
    let (_, _, message) = only_problem(&format!("[ci]\nrequired = [\"{}\"]\n", "x".repeat(201)));
    assert_eq!(
        message,
        "`ci.required`: a check's name is longer than 200 characters"
    );
    let (_, _, message) = only_problem("setup = [\"  \"]\n");
    assert_eq!(message, "`setup`: a command is empty");
    let (_, _, message) = only_problem("image = \"\"\n");
    assert_eq!(message, "`image`: is empty");
    let (_, _, message) = only_problem("[permissions]\nusers = []\n");
    assert!(
        message.starts_with("`permissions.users`: lists nobody"),
        "{message}"
    );
}

#[test]
fn egress_hosts_are_read_as_the_operators_are() {
    let config = parse(
        "[egress]\nallow = [\"Mirror.Example.com.\", \"*.corp.example:8443\", \
         \"mirror.example.com\"]\n",
        &bounds(),
    )
    .unwrap();
    assert_eq!(
        config.egress_allow,
        Some(strings(&["mirror.example.com", "*.corp.example:8443"]))
    );
    for bad in ["10.0.0.1", "::1", "*.com", "a_b.example", "host:0"] {
        let (_, _, message) = only_problem(&format!("[egress]\nallow = [{bad:?}]\n"));
        assert!(message.starts_with("`egress.allow`: "), "{bad}: {message}");
    }
}

#[test]
fn a_file_too_large_is_not_read() {
    let text = format!("# {}\n", "x".repeat(MAX_FILE_BYTES));
    let found = problems(&text);
    assert_eq!(
        found,
        [Problem {
            line: 1,
            column: 1,
            message: format!(
                "the file is {} bytes, more than the 64 KiB read",
                MAX_FILE_BYTES + 3
            ),
        }]
    );
    let fits = format!("#{}", "x".repeat(MAX_FILE_BYTES - 1));
    assert!(parse(&fits, &bounds()).is_ok());
}

#[test]
fn a_key_the_service_does_not_apply_yet_is_refused_where_it_is() {
    let bounds = Bounds {
        refused_keys: &["cache_key"],
        ..bounds()
    };
    let text = "cache_key = [\"a.lock\"]\n[agent]\nmode = \"high\"\n\n[ci]\nmax_rounds = 2\n";
    let found = parse(text, &bounds).unwrap_err();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].line, found[0].column), (1, 13));
    assert!(
        found[0].message.contains("`cache_key`: is not applied"),
        "{}",
        found[0].message
    );
    // What the service applies passes.
    let applied = "[agent]\nmode = \"high\"\ninstructions = \"x\"\nturn_timeout = \"20m\"\n\
                   [env]\nA = \"1\"\n[ci]\nmax_rounds = 2\nwait_timeout = \"10s\"\n\
                   required = [\"test\"]\nignore = [\"preview\"]\n[egress]\nallow = [\"a.b\"]\n\
                   [permissions]\nminimum = \"admin\"\n\
                   users = [\"octocat\"]\n[paths]\nworkdir = \"a/b\"\n";
    assert!(parse(applied, &bounds).is_ok());
    // This version applies every key.
    assert!(NOT_YET_APPLIED.is_empty());
}

#[test]
fn a_secret_the_service_does_not_hold_is_named_with_how_to_add_it() {
    let found = problems("secrets = [\"NPM_TOKEN\", \"PYPI_TOKEN\"]\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].line, found[0].column), (1, 25));
    assert_eq!(
        found[0].message,
        "`secrets`: \"PYPI_TOKEN\" is not a secret this service holds; its operator can add it \
         as the variable AMP_REPO_SECRET_PYPI_TOKEN"
    );
}

#[test]
fn an_empty_list_of_required_checks_is_refused() {
    let found = problems("[ci]\nrequired = []\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .message
            .starts_with("`ci.required`: lists no check"),
        "{}",
        found[0].message
    );
}
