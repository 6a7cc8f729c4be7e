//! The configuration a task runs with: each value from the repository's file where it sets one,
//! the service's default otherwise, and which of the two it is.

use std::collections::BTreeMap;
use std::time::Duration;

use super::bounds::Bounds;
use super::settings::{Mode, RepoConfig, SetupFailure};
use crate::domain::Role;

/// The files whose content keys the setup snapshot when the file names none: the lockfiles of
/// the common package managers, those present in the repository.
pub const DEFAULT_CACHE_KEY: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    "poetry.lock",
    "uv.lock",
    "go.sum",
    "Gemfile.lock",
];

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The repository's `.github/amp.toml`.
    File,
    /// The service's default (its configuration, or its built-in behaviour).
    Service,
}

/// A value and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    /// The file's value if it has one, `default` otherwise.
    fn pick(from_file: Option<T>, default: impl FnOnce() -> T) -> Setting<T> {
        match from_file {
            Some(value) => Setting {
                value,
                source: Source::File,
            },
            None => Setting {
                value: default(),
                source: Source::Service,
            },
        }
    }

    /// The file's value (as `Some`) if it has one; `None` means the service's own behaviour.
    fn optional(from_file: Option<T>) -> Setting<Option<T>> {
        Setting::pick(from_file.map(Some), || None)
    }
}

/// Every setting of a task, resolved. Where a value is an `Option`, `None` is the service's
/// behaviour without one (described on each field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub image: Setting<String>,
    /// Empty: no setup.
    pub setup: Setting<Vec<String>>,
    pub setup_failure: Setting<SetupFailure>,
    /// `None`: those of [`DEFAULT_CACHE_KEY`] present in the repository.
    pub cache_key: Setting<Option<Vec<String>>>,
    /// Names only; the values are the service's, given to setup only.
    pub secrets: Setting<Vec<String>>,
    pub env: Setting<BTreeMap<String, String>>,
    /// `None`: Amp's own default mode (no `--mode`).
    pub mode: Setting<Option<Mode>>,
    /// `None`: nothing is added to the prompt.
    pub instructions: Setting<Option<String>>,
    pub turn_timeout: Setting<Duration>,
    pub max_rounds: Setting<u32>,
    pub wait_timeout: Setting<Duration>,
    /// `None`: every check must pass.
    pub required: Setting<Option<Vec<String>>>,
    pub ignore: Setting<Vec<String>>,
    pub minimum: Setting<Role>,
    /// `None`: anyone with at least `minimum` may start a task.
    pub users: Setting<Option<Vec<String>>>,
    /// `None`: the repository's root.
    pub workdir: Setting<Option<String>>,
    /// Hosts added to the service's allowlist (empty: none).
    pub egress_allow: Setting<Vec<String>>,
}

impl Effective {
    /// `[env]` as `NAME=value` entries of a process's environment (for setup and the agent).
    pub fn variables(&self) -> Vec<String> {
        self.env
            .value
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect()
    }
}

/// The configuration a task runs with, from the repository's file (`None` when it has none) and
/// the operator's bounds. A value of the file beyond the bounds (which [`super::parse`] refuses,
/// but a file checked against other bounds may hold) is held to them.
pub fn effective(config: Option<&RepoConfig>, bounds: &Bounds) -> Effective {
    let file = config.cloned().unwrap_or_default();
    Effective {
        image: Setting::pick(file.image, || bounds.image.clone()),
        setup: Setting::pick(file.setup, Vec::new),
        setup_failure: Setting::pick(file.setup_failure, || SetupFailure::Stop),
        cache_key: Setting::optional(file.cache_key),
        secrets: Setting::pick(file.secrets, Vec::new),
        env: Setting::pick(file.env, BTreeMap::new),
        mode: Setting::optional(file.mode),
        instructions: Setting::optional(file.instructions),
        turn_timeout: Setting::pick(
            file.turn_timeout.map(|t| t.min(bounds.turn_timeout)),
            || bounds.turn_timeout,
        ),
        max_rounds: Setting::pick(file.max_rounds.map(|r| r.min(bounds.max_rounds)), || {
            bounds.max_rounds
        }),
        wait_timeout: Setting::pick(
            file.wait_timeout.map(|t| t.min(bounds.wait_timeout)),
            || bounds.wait_timeout,
        ),
        required: Setting::optional(file.required),
        ignore: Setting::pick(file.ignore, Vec::new),
        minimum: Setting::pick(file.minimum.map(|r| r.max(bounds.minimum)), || {
            bounds.minimum
        }),
        users: Setting::optional(file.users),
        workdir: Setting::optional(file.workdir),
        egress_allow: Setting::pick(file.egress_allow, Vec::new),
    }
}
