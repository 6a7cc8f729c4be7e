//! The file's values checked against the rules and the operator's bounds. Every problem is
//! recorded at the key or value it is about, and checking goes on, so one answer lists them all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use humantime::format_duration;

use super::bounds::Bounds;
use super::file::{File, List, Text};
use super::problem::Problems;
use super::rules::{self, shown};
use super::settings::{Mode, RepoConfig, SetupFailure};
use crate::config::egress::allow_entry;
use crate::config::parse_duration;
use crate::domain::Role;

const MAX_SETUP_COMMANDS: usize = 50;
const MAX_SETUP_COMMAND_BYTES: usize = 4096;
const MAX_CACHE_KEY_FILES: usize = 20;
const MAX_SECRETS: usize = 20;
const MAX_ENV: usize = 50;
const MAX_ENV_VALUE_BYTES: usize = 4096;
const MAX_INSTRUCTIONS_BYTES: usize = 8192;
const MAX_CHECKS: usize = 50;
const MAX_CHECK_NAME_LEN: usize = 200;
const MAX_USERS: usize = 100;
const MAX_EGRESS_HOSTS: usize = 50;
/// The shortest a turn may be.
const MIN_TURN_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest a wait for CI may be: a repository without CI may want its tasks to end soon.
pub const MIN_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The roles a file may name (`none` is a role too, but never one to require).
const ROLE_NAMES: &[&str] = &["read", "triage", "write", "maintain", "admin"];

/// The values of `file` that pass; whatever does not is a problem in `problems` (and `None`).
pub(super) fn check(file: File, bounds: &Bounds, problems: &mut Problems) -> RepoConfig {
    let mut c = Check { problems };
    for (key, offset) in set_keys(&file) {
        if bounds.refused_keys.contains(&key) {
            c.problem(
                key,
                offset,
                "is not applied by this service yet, so it may not be set: remove it",
            );
        }
    }
    let secrets = file.secrets.map(|s| c.secrets(s, &bounds.held_secrets));
    let env = file
        .env
        .map(|env| c.env(env, secrets.as_deref().unwrap_or(&[])));
    let agent = file.agent.unwrap_or_default();
    let ci = file.ci.unwrap_or_default();
    let permissions = file.permissions.unwrap_or_default();
    let required = ci.required.and_then(|l| {
        if l.get_ref().is_empty() {
            c.problem(
                "ci.required",
                l.span().start,
                "lists no check, so nothing would have to pass; leave it out to require every \
                 check",
            );
            return None;
        }
        Some(c.check_names("ci.required", l))
    });
    RepoConfig {
        image: file.image.and_then(|v| c.value("image", v, image)),
        setup: file
            .setup
            .map(|l| c.list("setup", l, MAX_SETUP_COMMANDS, setup_command)),
        setup_failure: file.setup_failure.and_then(|v| {
            c.value(
                "setup_failure",
                v,
                named(SetupFailure::NAMES, SetupFailure::from_name),
            )
        }),
        cache_key: file
            .cache_key
            .map(|l| c.list("cache_key", l, MAX_CACHE_KEY_FILES, rules::relative_path)),
        secrets: secrets.map(|s| s.into_iter().map(|t| t.into_inner()).collect()),
        env,
        mode: agent
            .mode
            .and_then(|v| c.value("agent.mode", v, named(Mode::NAMES, Mode::from_name))),
        instructions: agent
            .instructions
            .and_then(|v| c.value("agent.instructions", v, instructions)),
        turn_timeout: agent.turn_timeout.and_then(|v| {
            c.value("agent.turn_timeout", v, |s| {
                timeout(s, MIN_TURN_TIMEOUT, bounds.turn_timeout)
            })
        }),
        max_rounds: ci
            .max_rounds
            .and_then(|v| c.max_rounds(v, bounds.max_rounds)),
        wait_timeout: ci.wait_timeout.and_then(|v| {
            c.value("ci.wait_timeout", v, |s| {
                timeout(s, MIN_WAIT_TIMEOUT, bounds.wait_timeout)
            })
        }),
        ignore: ci.ignore.map(|l| {
            let ignore = c.check_names("ci.ignore", l);
            c.apart(&ignore, required.as_deref().unwrap_or(&[]));
            ignore.into_iter().map(|t| t.into_inner()).collect()
        }),
        required: required.map(|r| r.into_iter().map(|t| t.into_inner()).collect()),
        minimum: permissions
            .minimum
            .and_then(|v| c.value("permissions.minimum", v, |s| minimum(s, bounds.minimum))),
        users: permissions.users.and_then(|l| c.users(l)),
        workdir: file
            .paths
            .and_then(|p| p.workdir)
            .and_then(|v| c.value("paths.workdir", v, rules::relative_path)),
        egress_allow: file.egress.and_then(|e| e.allow).map(|l| {
            let mut hosts = c.list("egress.allow", l, MAX_EGRESS_HOSTS, allow_entry);
            let mut seen = BTreeSet::new();
            hosts.retain(|h| seen.insert(h.clone()));
            hosts
        }),
    }
}

/// The keys `file` sets that [`Bounds::refused_keys`] may name, with where each is.
fn set_keys(file: &File) -> Vec<(&'static str, usize)> {
    let ci = file.ci.as_ref();
    let at = |text: Option<&Text>| text.map(|t| t.span().start);
    let at_list = |list: Option<&List>| list.map(|l| l.span().start);
    [
        ("image", at(file.image.as_ref())),
        ("setup", at_list(file.setup.as_ref())),
        ("setup_failure", at(file.setup_failure.as_ref())),
        ("cache_key", at_list(file.cache_key.as_ref())),
        ("secrets", at_list(file.secrets.as_ref())),
        (
            "ci.wait_timeout",
            at(ci.and_then(|c| c.wait_timeout.as_ref())),
        ),
        ("ci.required", at_list(ci.and_then(|c| c.required.as_ref()))),
        ("ci.ignore", at_list(ci.and_then(|c| c.ignore.as_ref()))),
        (
            "egress.allow",
            at_list(file.egress.as_ref().and_then(|e| e.allow.as_ref())),
        ),
    ]
    .into_iter()
    .filter_map(|(key, offset)| offset.map(|o| (key, o)))
    .collect()
}

/// The checks in progress.
struct Check<'p, 'a> {
    problems: &'p mut Problems<'a>,
}

impl Check<'_, '_> {
    /// A problem with `key`, at `offset`.
    fn problem(&mut self, key: &str, offset: usize, why: impl std::fmt::Display) {
        self.problems.at(offset, format!("`{key}`: {why}"));
    }

    /// One value through its rule.
    fn value<T>(
        &mut self,
        key: &str,
        value: Text,
        rule: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match rule(value.get_ref()) {
            Ok(v) => Some(v),
            Err(why) => {
                self.problem(key, value.span().start, why);
                None
            }
        }
    }

    /// A list of at most `max` entries, each through `rule`; the entries that pass.
    fn list<T>(
        &mut self,
        key: &str,
        list: List,
        max: usize,
        rule: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        self.at_most(key, list.span().start, list.get_ref().len(), max);
        list.into_inner()
            .into_iter()
            .filter_map(|entry| self.value(key, entry, &rule))
            .collect()
    }

    fn at_most(&mut self, key: &str, offset: usize, len: usize, max: usize) {
        if len > max {
            self.problem(
                key,
                offset,
                format!("has {len} entries; at most {max} are allowed"),
            );
        }
    }

    /// `secrets`: the names that pass, with their places (for `env` to be compared with).
    fn secrets(&mut self, list: List, held: &[String]) -> Vec<Text> {
        self.at_most(
            "secrets",
            list.span().start,
            list.get_ref().len(),
            MAX_SECRETS,
        );
        let mut names: Vec<Text> = Vec::new();
        for name in list.into_inner() {
            let why = if !rules::is_secret_name(name.get_ref()) {
                Some(format!(
                    "{} is not a secret's name: capital letters, digits and `_`, starting with \
                     a letter, at most 64 characters",
                    shown(name.get_ref())
                ))
            } else if let Some(reserved) = rules::reserved_variable(name.get_ref()) {
                Some(format!(
                    "{} cannot be used: {reserved}",
                    shown(name.get_ref())
                ))
            } else if names.iter().any(|n| n.get_ref() == name.get_ref()) {
                Some(format!("{} is listed twice", shown(name.get_ref())))
            } else if !held.iter().any(|h| h == name.get_ref()) {
                Some(format!(
                    "{} is not a secret this service holds; its operator can add it as the \
                     variable AMP_REPO_SECRET_{}",
                    shown(name.get_ref()),
                    name.get_ref()
                ))
            } else {
                None
            };
            match why {
                Some(why) => self.problem("secrets", name.span().start, why),
                None => names.push(name),
            }
        }
        names
    }

    /// `[env]`: the variables that pass.
    fn env(
        &mut self,
        env: toml::Spanned<BTreeMap<Text, Text>>,
        secrets: &[Text],
    ) -> BTreeMap<String, String> {
        self.at_most("env", env.span().start, env.get_ref().len(), MAX_ENV);
        let mut vars = BTreeMap::new();
        for (name, value) in env.into_inner() {
            if !rules::is_variable_name(name.get_ref()) {
                self.problem(
                    "env",
                    name.span().start,
                    format!(
                        "{} is not a variable name: letters, digits and `_`, not starting with \
                         a digit, at most 64 characters",
                        shown(name.get_ref())
                    ),
                );
                continue;
            }
            let key = format!("env.{}", name.get_ref());
            let why = if let Some(reserved) = rules::reserved_variable(name.get_ref()) {
                Some(format!("cannot be set: {reserved}"))
            } else if secrets.iter().any(|s| s.get_ref() == name.get_ref()) {
                Some("is also in `secrets`; a name is either a plain variable or a secret".into())
            } else {
                None
            };
            if let Some(why) = why {
                self.problem(&key, name.span().start, why);
                continue;
            }
            if value.get_ref().len() > MAX_ENV_VALUE_BYTES {
                self.problem(
                    &key,
                    value.span().start,
                    format!("is longer than {MAX_ENV_VALUE_BYTES} bytes"),
                );
            } else if value.get_ref().contains('\0') {
                self.problem(&key, value.span().start, "contains a NUL character");
            } else {
                vars.insert(name.into_inner(), value.into_inner());
            }
        }
        vars
    }

    fn max_rounds(&mut self, value: toml::Spanned<i64>, ceiling: u32) -> Option<u32> {
        let rounds = *value.get_ref();
        let why = if rounds < 0 {
            format!("must be 0 or more, got {rounds}")
        } else if rounds > i64::from(ceiling) {
            format!("is {rounds}, more than this service allows ({ceiling})")
        } else {
            return u32::try_from(rounds).ok();
        };
        self.problem("ci.max_rounds", value.span().start, why);
        None
    }

    /// `ci.required` or `ci.ignore`: check names, with their places.
    fn check_names(&mut self, key: &str, list: List) -> Vec<Text> {
        self.at_most(key, list.span().start, list.get_ref().len(), MAX_CHECKS);
        let mut names = Vec::new();
        for name in list.into_inner() {
            if name.get_ref().trim().is_empty() {
                self.problem(key, name.span().start, "a check's name is empty");
            } else if name.get_ref().chars().count() > MAX_CHECK_NAME_LEN {
                self.problem(
                    key,
                    name.span().start,
                    format!("a check's name is longer than {MAX_CHECK_NAME_LEN} characters"),
                );
            } else {
                names.push(name);
            }
        }
        names
    }

    /// A check is either required or ignored.
    fn apart(&mut self, ignore: &[Text], required: &[Text]) {
        for name in ignore {
            if required.iter().any(|r| r.get_ref() == name.get_ref()) {
                self.problem(
                    "ci.ignore",
                    name.span().start,
                    format!(
                        "{} is also in `ci.required`; a check is either required or ignored",
                        shown(name.get_ref())
                    ),
                );
            }
        }
    }

    fn users(&mut self, list: List) -> Option<Vec<String>> {
        if list.get_ref().is_empty() {
            self.problem(
                "permissions.users",
                list.span().start,
                "lists nobody, so no one could start a task; leave it out to let everyone with \
                 the required role",
            );
            return None;
        }
        Some(self.list("permissions.users", list, MAX_USERS, |login| {
            if rules::is_login(login) {
                Ok(login.to_string())
            } else {
                Err(format!("{} is not a GitHub login", shown(login)))
            }
        }))
    }
}

fn image(value: &str) -> Result<String, String> {
    rules::image(value).map(|()| value.to_string())
}

fn setup_command(command: &str) -> Result<String, String> {
    if command.trim().is_empty() {
        Err("a command is empty".into())
    } else if command.len() > MAX_SETUP_COMMAND_BYTES {
        Err(format!(
            "a command is longer than {MAX_SETUP_COMMAND_BYTES} bytes"
        ))
    } else {
        Ok(command.to_string())
    }
}

fn instructions(text: &str) -> Result<String, String> {
    if text.len() > MAX_INSTRUCTIONS_BYTES {
        Err(format!("is longer than {MAX_INSTRUCTIONS_BYTES} bytes"))
    } else {
        Ok(text.to_string())
    }
}

/// One of `names`.
fn named<T>(
    names: &'static [&'static str],
    from_name: fn(&str) -> Option<T>,
) -> impl Fn(&str) -> Result<T, String> {
    move |value| {
        from_name(value).ok_or_else(|| format!("{} is not one of {}", shown(value), one_of(names)))
    }
}

/// `a`, `b` or `c`.
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

/// A duration from `floor` to `ceiling`.
fn timeout(value: &str, floor: Duration, ceiling: Duration) -> Result<Duration, String> {
    let duration = parse_duration(value).map_err(|why| format!("{} {why}", shown(value)))?;
    if duration < floor {
        Err(format!(
            "is {}, shorter than the least allowed ({})",
            format_duration(duration),
            format_duration(floor)
        ))
    } else if duration > ceiling {
        Err(format!(
            "is {}, longer than this service allows ({})",
            format_duration(duration),
            format_duration(ceiling)
        ))
    } else {
        Ok(duration)
    }
}

/// A role no lower than the service's `floor`.
fn minimum(name: &str, floor: Role) -> Result<Role, String> {
    let role = Role::base(name)
        .filter(|_| ROLE_NAMES.contains(&name))
        .ok_or_else(|| format!("{} is not one of {}", shown(name), one_of(ROLE_NAMES)))?;
    if role < floor {
        Err(format!(
            "is {role}, lower than this service's minimum ({floor}); a repository can only \
             make it stricter"
        ))
    } else {
        Ok(role)
    }
}
