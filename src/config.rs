//! Configuration from the environment.
//!
//! Names follow Probot's where Probot has one (`APP_ID`, `PRIVATE_KEY`, `WEBHOOK_SECRET`, ...), so a
//! team moving from a Probot app keeps its deployment settings. Everything is validated at start and
//! every problem is reported at once, one line each, so a misconfigured deployment is fixed in one
//! round rather than one variable per restart.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::Role;
use crate::sealed::{HOW_TO_MAKE_A_KEY, Keyring, SecretKey};

pub mod egress;
pub mod repo_secrets;
pub use egress::{Egress, EgressMode};

/// Where the service's SQLite database lives when `DATABASE_URL` is not set.
pub const DEFAULT_SQLITE_PATH: &str = "./data/amp-orchestrator.sqlite";

/// The agent container's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentNetwork {
    Bridge,
    None,
    Host,
    Named(String),
}

impl AgentNetwork {
    pub fn parse(value: &str) -> Self {
        match value {
            "bridge" => Self::Bridge,
            "none" => Self::None,
            "host" => Self::Host,
            other => Self::Named(other.to_string()),
        }
    }

    /// The value Docker expects in `HostConfig.NetworkMode`.
    pub fn as_docker_mode(&self) -> &str {
        match self {
            Self::Bridge => "bridge",
            Self::None => "none",
            Self::Host => "host",
            Self::Named(name) => name,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The service's whole configuration. Secrets are [`SecretString`]s, whose `Debug` output is
/// redacted, so logging the config (or a panic message containing it) never prints them.
#[derive(Debug, Clone)]
pub struct Config {
    pub app_id: Option<u64>,
    pub private_key: Option<SecretString>,
    /// One or more secrets; a webhook signed with any of them is accepted (rotation).
    pub webhook_secrets: Vec<SecretString>,
    pub host: IpAddr,
    pub port: u16,
    pub database_url: String,
    pub github_api_url: String,
    pub public_url: String,
    pub amp_api_key: Option<SecretString>,
    pub amp_url: Option<String>,
    pub agent_image: String,
    /// The agent's network without the sandbox (`AGENT_EGRESS=open`).
    pub agent_network: AgentNetwork,
    /// The agent's sandbox: what it may reach, and how.
    pub egress: Egress,
    /// Tasks this replica runs at once; 0 makes a replica that takes webhooks, answers commands
    /// and serves pages but runs no tasks (others sharing its database run them).
    pub max_concurrent_tasks: usize,
    pub task_timeout: Duration,
    pub agent_idle_timeout: Duration,
    pub max_ci_rounds: u32,
    pub ci_wait_timeout: Duration,
    /// How long a replica's claim on a task lasts without renewal (renewed every third of it);
    /// after a crash, another replica takes the task over once it has expired.
    pub task_lease: Duration,
    /// On SIGTERM, how long running tasks get to finish before they are handed back (to
    /// another replica, or to this one's next start).
    pub drain_timeout: Duration,
    /// More values to mask in every stored or shown line (besides the service's own secrets).
    pub redact_values: Vec<SecretString>,
    /// The Docker engine (`unix:///…` or `tcp://host:port`); the local socket when unset.
    pub docker_host: Option<String>,
    /// The least repository role that may run `/amp` commands: write, maintain or admin.
    pub required_permission: Role,
    pub admin_token: Option<SecretString>,
    /// `SECRET_KEY`, which encrypts the App credentials the setup flow stores, and
    /// `SECRET_KEY_PREVIOUS`, older keys that only decrypt (rotation).
    pub secret_keys: Keyring,
    pub log_level: String,
    pub log_format: LogFormat,
    // Limits on what a client can hold before it has proven anything (see `server.rs`).
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive after its headers.
    pub body_read_timeout: Duration,
    /// Webhook bodies read at once before their signature is checked (each up to 25 MiB).
    pub max_concurrent_webhook_bodies: usize,
    /// `SNAPSHOTS_PER_REPO`: setup snapshots kept for one repository.
    pub snapshots_per_repo: usize,
    /// `SNAPSHOT_MAX_GIB`: the most all setup snapshots together may take, in GiB.
    pub snapshot_max_gib: usize,
    /// `AMP_REPO_SECRET_<NAME>`: values repositories' setup commands may ask for by name.
    pub repo_secrets: repo_secrets::RepoSecrets,
}

/// Every problem found in the environment, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Parse a duration given as plain seconds (`90`) or with a unit (`90s`, `30m`, `2h`, `1h 30m`).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is empty".into());
    }
    if let Ok(secs) = value.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(value)
        .map_err(|e| format!("is not a duration like 90, 90s, 30m or 2h ({e})"))
}

impl Config {
    /// Read the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // `vars_os`: a variable that is not UTF-8 (none of the service's) is no reason to stop.
        let vars = std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        });
        Self::from_lookup(|name| std::env::var(name).ok())?.with_repo_secrets(vars)
    }

    /// The repository secrets (`AMP_REPO_SECRET_<NAME>`) among `vars`, which
    /// [`Config::from_lookup`] cannot list.
    pub fn with_repo_secrets(
        mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (secrets, problems) = repo_secrets::RepoSecrets::from_vars(vars);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        self.repo_secrets = secrets;
        Ok(self)
    }

    /// Read the configuration through `lookup`, so tests never have to mutate the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let app_id = get("APP_ID").and_then(|v| match v.trim().parse::<u64>() {
            Ok(id) if id > 0 => Some(id),
            _ => {
                problems.push(format!("APP_ID must be a positive integer, got {v:?}"));
                None
            }
        });

        let private_key = match (get("PRIVATE_KEY"), get("PRIVATE_KEY_PATH")) {
            (Some(key), _) => Some(normalize_private_key(&key)),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(key) => Some(normalize_private_key(&key)),
                Err(e) => {
                    problems.push(format!("PRIVATE_KEY_PATH {path:?} cannot be read: {e}"));
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(key) = &private_key
            && !key.expose_secret().contains("-----BEGIN")
        {
            problems.push(
                "PRIVATE_KEY is not a PEM private key (expected a -----BEGIN ... KEY----- block)"
                    .into(),
            );
        }
        if app_id.is_some() && private_key.is_none() {
            problems.push("APP_ID is set but neither PRIVATE_KEY nor PRIVATE_KEY_PATH is".into());
        }

        let webhook_secrets: Vec<SecretString> = get("WEBHOOK_SECRET")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        // Without an App the service starts in setup mode and learns its secret from the
        // manifest flow; until then it refuses every webhook.
        if webhook_secrets.is_empty() && app_id.is_some() {
            problems.push(
                "WEBHOOK_SECRET is not set (the service never accepts unsigned webhooks)".into(),
            );
        }

        let host = match get("HOST") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                problems.push(format!("HOST must be an IP address, got {v:?}"));
                IpAddr::from([0, 0, 0, 0])
            }),
        };
        let port = parse_num(&get, "PORT", 3000u16, &mut problems);

        let database_url = get("DATABASE_URL").unwrap_or_else(default_sqlite_url);
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            problems.push(format!(
                "DATABASE_URL must start with sqlite: or postgres://, got {:?}",
                redact_url(&database_url)
            ));
        }

        let github_api_url = get("GITHUB_API_URL")
            .unwrap_or_else(|| "https://api.github.com".into())
            .trim_end_matches('/')
            .to_string();
        if !is_http_url(&github_api_url) {
            problems.push(format!(
                "GITHUB_API_URL must be an http(s) URL, got {github_api_url:?}"
            ));
        }
        let public_url = get("PUBLIC_URL")
            .unwrap_or_else(|| format!("http://localhost:{port}"))
            .trim_end_matches('/')
            .to_string();
        if !is_http_url(&public_url) {
            problems.push(format!(
                "PUBLIC_URL must be an http(s) URL, got {public_url:?}"
            ));
        }

        let amp_api_key = get("AMP_API_KEY").map(SecretString::from);
        let amp_url = get("AMP_URL");
        let agent_image =
            get("AGENT_IMAGE").unwrap_or_else(|| "amp-orchestrator-agent:latest".into());
        let agent_network =
            AgentNetwork::parse(get("AGENT_NETWORK").as_deref().unwrap_or("bridge").trim());
        let egress = Egress::from_env(&get, agent_network.as_docker_mode(), &mut problems);
        let max_concurrent_tasks = parse_num(&get, "MAX_CONCURRENT_TASKS", 4usize, &mut problems);
        let task_timeout = parse_dur(&get, "TASK_TIMEOUT", "2h", &mut problems);
        let agent_idle_timeout = parse_dur(&get, "AGENT_IDLE_TIMEOUT", "10m", &mut problems);
        let max_ci_rounds = parse_num(&get, "MAX_CI_ROUNDS", 3u32, &mut problems);
        let ci_wait_timeout = parse_dur(&get, "CI_WAIT_TIMEOUT", "10m", &mut problems);
        let task_lease = parse_dur(&get, "TASK_LEASE", "2m", &mut problems);
        if task_lease < Duration::from_secs(1) {
            problems.push("TASK_LEASE must be at least 1s".into());
        }
        let drain_timeout = parse_dur(&get, "DRAIN_TIMEOUT", "30s", &mut problems);
        let admin_token = get("ADMIN_TOKEN").map(SecretString::from);
        if let Some(token) = &admin_token
            && token.expose_secret().len() < 16
        {
            problems.push("ADMIN_TOKEN must be at least 16 characters".into());
        }
        let secret_keys = parse_secret_keys(&get, &mut problems);
        let redact_values: Vec<SecretString> = get("REDACT_VALUES")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let docker_host = get("DOCKER_HOST").map(|v| v.trim().to_string());
        if let Some(host) = &docker_host
            && !["unix://", "tcp://", "http://"]
                .iter()
                .any(|p| host.starts_with(p))
        {
            problems.push(format!(
                "DOCKER_HOST must start with unix://, tcp:// or http://, got {host:?}"
            ));
        }
        let required_permission = match get("REQUIRED_PERMISSION")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None => Role::Write,
            Some(name) => match Role::base(name) {
                Some(role) if role >= Role::Write => role,
                _ => {
                    problems.push(format!(
                        "REQUIRED_PERMISSION must be write, maintain or admin, got {name:?}"
                    ));
                    Role::Write
                }
            },
        };
        let log_level = get("LOG_LEVEL").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            problems.push(format!(
                "LOG_LEVEL {log_level:?} is not a level (trace, debug, info, warn, error) or filter"
            ));
        }
        let log_format = match get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                problems.push(format!("LOG_FORMAT must be json or pretty, got {other:?}"));
                LogFormat::Pretty
            }
        };

        // Limits on unauthenticated clients.
        let max_connections = parse_count(&get, "MAX_CONNECTIONS", 1024, &mut problems);
        let header_read_timeout = parse_dur(&get, "HEADER_READ_TIMEOUT", "10s", &mut problems);
        let body_read_timeout = parse_dur(&get, "BODY_READ_TIMEOUT", "30s", &mut problems);
        for (name, value) in [
            ("HEADER_READ_TIMEOUT", header_read_timeout),
            ("BODY_READ_TIMEOUT", body_read_timeout),
        ] {
            if value > Duration::from_secs(3600) {
                problems.push(format!("{name} must be at most 1h"));
            }
        }
        let snapshots_per_repo = parse_count(&get, "SNAPSHOTS_PER_REPO", 3, &mut problems);
        let snapshot_max_gib = parse_count(&get, "SNAPSHOT_MAX_GIB", 20, &mut problems);
        let max_concurrent_webhook_bodies =
            parse_count(&get, "MAX_CONCURRENT_WEBHOOK_BODIES", 4, &mut problems);

        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Config {
            repo_secrets: Default::default(),
            snapshots_per_repo,
            snapshot_max_gib,
            app_id,
            private_key,
            webhook_secrets,
            host,
            port,
            database_url,
            github_api_url,
            public_url,
            amp_api_key,
            amp_url,
            agent_image,
            agent_network,
            egress,
            max_concurrent_tasks,
            task_timeout,
            agent_idle_timeout,
            max_ci_rounds,
            ci_wait_timeout,
            task_lease,
            drain_timeout,
            redact_values,
            docker_host,
            required_permission,
            admin_token,
            secret_keys,
            log_level,
            log_format,
            max_connections,
            header_read_timeout,
            body_read_timeout,
            max_concurrent_webhook_bodies,
        })
    }

    /// The web address that goes with `GITHUB_API_URL` (github.com, Enterprise Server's
    /// `/api/v3`, or a local stand-in that serves both).
    pub fn web_url(&self) -> String {
        let api = self.github_api_url.trim_end_matches('/');
        if api == "https://api.github.com" {
            "https://github.com".to_string()
        } else {
            api.trim_end_matches("/api/v3").to_string()
        }
    }
}

fn default_sqlite_url() -> String {
    format!("sqlite://{DEFAULT_SQLITE_PATH}")
}

/// The file path in a `sqlite:` URL, or `None` for an in-memory or non-SQLite URL.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// A database URL with any password replaced, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// Probot accepts a PEM with literal `\n` sequences (as some secret stores flatten it).
fn normalize_private_key(key: &str) -> SecretString {
    let key = key.trim();
    let key = if key.contains("\\n") && !key.contains('\n') {
        key.replace("\\n", "\n")
    } else {
        key.to_string()
    };
    SecretString::from(key)
}

/// `SECRET_KEY` and the comma-separated `SECRET_KEY_PREVIOUS`. Errors name the variable, never
/// the value.
fn parse_secret_keys(get: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> Keyring {
    let current = get("SECRET_KEY").and_then(|v| match SecretKey::parse(&v) {
        Ok(key) => Some(key),
        Err(e) => {
            problems.push(format!("SECRET_KEY {e}; {HOW_TO_MAKE_A_KEY}"));
            None
        }
    });
    let mut previous = Vec::new();
    if let Some(list) = get("SECRET_KEY_PREVIOUS") {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        for (n, entry) in entries.iter().enumerate() {
            match SecretKey::parse(entry) {
                Ok(key) => previous.push(key),
                Err(e) if entries.len() == 1 => {
                    problems.push(format!("SECRET_KEY_PREVIOUS {e}; {HOW_TO_MAKE_A_KEY}"))
                }
                Err(e) => problems.push(format!(
                    "SECRET_KEY_PREVIOUS key {} of {} {e}",
                    n + 1,
                    entries.len()
                )),
            }
        }
        if get("SECRET_KEY").is_none() {
            problems.push(
                "SECRET_KEY_PREVIOUS is set but SECRET_KEY is not (SECRET_KEY_PREVIOUS only \
                 decrypts; set the new key as SECRET_KEY)"
                    .into(),
            );
        }
    }
    Keyring { current, previous }
}

fn is_http_url(value: &str) -> bool {
    (value.starts_with("http://") || value.starts_with("https://"))
        && value.len() > "https://".len()
}

fn parse_num<T: std::str::FromStr + Copy>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    problems: &mut Vec<String>,
) -> T {
    match get(name) {
        None => default,
        Some(v) => v.trim().parse().unwrap_or_else(|_| {
            problems.push(format!("{name} must be a non-negative integer, got {v:?}"));
            default
        }),
    }
}

/// A count of at least 1 (and at most a million, far beyond any sane setting).
fn parse_count(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: usize,
    problems: &mut Vec<String>,
) -> usize {
    const MAX: usize = 1_000_000;
    match get(name) {
        None => default,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX).contains(&n) => n,
            _ => {
                problems.push(format!(
                    "{name} must be a whole number from 1 to {MAX}, got {v:?}"
                ));
                default
            }
        },
    }
}

fn parse_dur(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: &str,
    problems: &mut Vec<String>,
) -> Duration {
    let raw = get(name).unwrap_or_else(|| default.to_string());
    match parse_duration(&raw) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            problems.push(format!("{name} must be longer than zero"));
            Duration::from_secs(1)
        }
        Err(e) => {
            problems.push(format!("{name} {raw:?} {e}"));
            Duration::from_secs(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(
            parse_duration(" 1h 30m ").unwrap(),
            Duration::from_secs(5400)
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5").is_err());
    }

    #[test]
    fn minimal_config_has_documented_defaults() {
        let c = config(&[("WEBHOOK_SECRET", "s3cret")]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.database_url, "sqlite://./data/amp-orchestrator.sqlite");
        assert_eq!(c.github_api_url, "https://api.github.com");
        assert_eq!(c.public_url, "http://localhost:3000");
        assert_eq!(c.agent_network, AgentNetwork::Bridge);
        assert_eq!(c.max_ci_rounds, 3);
        assert_eq!(c.ci_wait_timeout, Duration::from_secs(600));
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert_eq!(c.webhook_secrets.len(), 1);
        assert_eq!(c.max_concurrent_tasks, 4);
        assert_eq!(c.required_permission, Role::Write);
        assert_eq!(c.web_url(), "https://github.com");
    }

    #[test]
    fn an_app_without_a_secret_is_refused() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----";
        let err = config(&[("APP_ID", "12"), ("PRIVATE_KEY", key)]).unwrap_err();
        assert_eq!(
            err.problems,
            vec!["WEBHOOK_SECRET is not set (the service never accepts unsigned webhooks)"]
        );
    }

    #[test]
    fn lease_and_drain_times_are_checked() {
        let c = config(&[]).unwrap();
        assert_eq!(c.task_lease, Duration::from_secs(120));
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        let c = config(&[("TASK_LEASE", "45s"), ("DRAIN_TIMEOUT", "2m")]).unwrap();
        assert_eq!(c.task_lease, Duration::from_secs(45));
        assert_eq!(c.drain_timeout, Duration::from_secs(120));
        let err = config(&[("TASK_LEASE", "500ms"), ("DRAIN_TIMEOUT", "soon")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("TASK_LEASE must be at least 1s"), "{text}");
        assert!(
            text.contains("DRAIN_TIMEOUT \"soon\" is not a duration"),
            "{text}"
        );
    }

    #[test]
    fn no_app_and_no_secret_is_setup_mode() {
        let c = config(&[]).unwrap();
        assert_eq!(c.app_id, None);
        assert!(c.webhook_secrets.is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = config(&[
            ("APP_ID", "abc"),
            ("PRIVATE_KEY", "not a key"),
            ("PORT", "http"),
            ("TASK_TIMEOUT", "forever"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://root:hunter2@db/x"),
            ("MAX_CONCURRENT_TASKS", "-1"),
            ("REQUIRED_PERMISSION", "triage"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "APP_ID must be a positive integer",
            "PORT must be a non-negative integer",
            "TASK_TIMEOUT \"forever\" is not a duration",
            "LOG_FORMAT must be json or pretty",
            "DATABASE_URL must start with sqlite: or postgres://",
            "MAX_CONCURRENT_TASKS must be a non-negative integer",
            "REQUIRED_PERMISSION must be write, maintain or admin, got \"triage\"",
            "PRIVATE_KEY is not a PEM private key",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(!text.contains("hunter2"), "password leaked: {text}");
    }

    #[test]
    fn app_id_needs_a_key() {
        let err = config(&[("WEBHOOK_SECRET", "x"), ("APP_ID", "12")]).unwrap_err();
        assert_eq!(
            err.problems,
            vec!["APP_ID is set but neither PRIVATE_KEY nor PRIVATE_KEY_PATH is"]
        );
        let err = config(&[
            ("WEBHOOK_SECRET", "x"),
            ("APP_ID", "12"),
            ("PRIVATE_KEY_PATH", "/nonexistent/key.pem"),
        ])
        .unwrap_err();
        assert!(
            err.problems[0].starts_with("PRIVATE_KEY_PATH \"/nonexistent/key.pem\" cannot be read")
        );
    }

    #[test]
    fn escaped_newlines_in_private_key_are_restored() {
        let c = config(&[
            ("WEBHOOK_SECRET", "x"),
            ("APP_ID", "12"),
            (
                "PRIVATE_KEY",
                "-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.private_key.unwrap().expose_secret(),
            "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----"
        );
    }

    #[test]
    fn rotation_secrets_are_split_and_never_printed() {
        let c = config(&[
            ("WEBHOOK_SECRET", "old-secret, new-secret,"),
            ("AMP_API_KEY", "sgamp_key"),
        ])
        .unwrap();
        assert_eq!(c.webhook_secrets.len(), 2);
        assert_eq!(c.webhook_secrets[1].expose_secret(), "new-secret");
        let debug = format!("{c:?}");
        for secret in ["old-secret", "new-secret", "sgamp_key"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn secret_keys_are_base64_or_hex_and_never_printed() {
        let b64 = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
        let hex = "abcdef123456789aabcdef123456789aabcdef123456789aabcdef123456789a";
        let c = config(&[
            ("SECRET_KEY", b64),
            ("SECRET_KEY_PREVIOUS", &format!("{hex}, ")),
        ])
        .unwrap();
        let current = c.secret_keys.current.as_ref().unwrap();
        assert_eq!(current.id().len(), 8);
        assert_eq!(c.secret_keys.previous.len(), 1);
        assert_ne!(c.secret_keys.previous[0].id(), current.id());
        // Unpadded base64 is the same key.
        let unpadded = config(&[("SECRET_KEY", b64.trim_end_matches('='))]).unwrap();
        assert_eq!(unpadded.secret_keys.current.unwrap().id(), current.id());
        let debug = format!("{c:?}");
        assert!(!debug.contains(b64) && !debug.contains(hex), "{debug}");
        assert!(config(&[]).unwrap().secret_keys.current.is_none());
    }

    #[test]
    fn bad_secret_keys_say_how_to_make_one() {
        let err = config(&[("SECRET_KEY", "hunter2-is-my-password")]).unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                "SECRET_KEY is neither base64 nor 64 hex digits; make one with \
                 `openssl rand -base64 32`"
            ]
        );
        let short = "AAECAwQFBgcICQoLDA0ODw==";
        let err = config(&[("SECRET_KEY", short)]).unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                "SECRET_KEY must be 32 bytes, got 16 (as base64 or 64 hex digits); make one \
                 with `openssl rand -base64 32`"
            ]
        );
        let good = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
        let err = config(&[
            ("SECRET_KEY", good),
            ("SECRET_KEY_PREVIOUS", &format!("{good},{short}")),
        ])
        .unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                "SECRET_KEY_PREVIOUS key 2 of 2 must be 32 bytes, got 16 (as base64 or 64 hex digits)"
            ]
        );
        assert!(!err.to_string().contains(short));
        let err = config(&[("SECRET_KEY_PREVIOUS", good)]).unwrap_err();
        assert!(
            err.problems[0].starts_with("SECRET_KEY_PREVIOUS is set but SECRET_KEY is not"),
            "{err}"
        );
    }

    #[test]
    fn redacts_database_passwords() {
        assert_eq!(
            redact_url("postgres://app:pw@db:5432/amp"),
            "postgres://app:***@db:5432/amp"
        );
        assert_eq!(
            redact_url("sqlite://./data/x.sqlite"),
            "sqlite://./data/x.sqlite"
        );
    }

    #[test]
    fn web_addresses_follow_the_api() {
        let web = |api: &str| config(&[("GITHUB_API_URL", api)]).unwrap().web_url();
        assert_eq!(
            web("https://ghe.example.com/api/v3/"),
            "https://ghe.example.com"
        );
        assert_eq!(web("http://127.0.0.1:4000"), "http://127.0.0.1:4000");
    }

    #[test]
    fn a_replica_may_run_no_tasks() {
        let c = config(&[
            ("MAX_CONCURRENT_TASKS", "0"),
            ("REQUIRED_PERMISSION", "Admin"),
        ])
        .unwrap();
        assert_eq!(c.max_concurrent_tasks, 0);
        assert_eq!(c.required_permission, Role::Admin);
    }

    #[test]
    fn limits_have_defaults_and_refuse_zero_and_garbage() {
        let c = config(&[]).unwrap();
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.body_read_timeout, Duration::from_secs(30));
        assert_eq!(c.max_concurrent_webhook_bodies, 4);
        let c = config(&[
            ("MAX_CONNECTIONS", "2"),
            ("HEADER_READ_TIMEOUT", "500ms"),
            ("BODY_READ_TIMEOUT", "1m"),
            ("MAX_CONCURRENT_WEBHOOK_BODIES", " 1 "),
        ])
        .unwrap();
        assert_eq!(c.max_connections, 2);
        assert_eq!(c.header_read_timeout, Duration::from_millis(500));
        assert_eq!(c.body_read_timeout, Duration::from_secs(60));
        assert_eq!(c.max_concurrent_webhook_bodies, 1);
        let err = config(&[
            ("MAX_CONNECTIONS", "0"),
            ("HEADER_READ_TIMEOUT", "0"),
            ("BODY_READ_TIMEOUT", "a while"),
            ("MAX_CONCURRENT_WEBHOOK_BODIES", "four"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "MAX_CONNECTIONS must be a whole number from 1 to 1000000, got \"0\"",
            "HEADER_READ_TIMEOUT must be longer than zero",
            "BODY_READ_TIMEOUT \"a while\" is not a duration",
            "MAX_CONCURRENT_WEBHOOK_BODIES must be a whole number from 1 to 1000000, got \"four\"",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        let err = config(&[("MAX_CONNECTIONS", "-3"), ("BODY_READ_TIMEOUT", "2h")]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("MAX_CONNECTIONS must be a whole number"),
            "{text}"
        );
        assert!(
            text.contains("BODY_READ_TIMEOUT must be at most 1h"),
            "{text}"
        );
    }

    #[test]
    fn agent_network_values() {
        assert_eq!(AgentNetwork::parse("none").as_docker_mode(), "none");
        assert_eq!(AgentNetwork::parse("host"), AgentNetwork::Host);
        assert_eq!(AgentNetwork::parse("agents").as_docker_mode(), "agents");
    }
}
