//! What a valid file says, in the service's types; `None` wherever the file says nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::domain::Role;

/// The validated contents of `.github/amp.toml`. Each field is the key of the same name (`ci.`,
/// `agent.`, … sections flattened); `None` where the file leaves it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoConfig {
    /// `image`: the agent's container image.
    pub image: Option<String>,
    /// `setup`: shell commands run one by one in the workspace before the agent starts.
    pub setup: Option<Vec<String>>,
    /// `setup_failure`: what a failing setup command does to the task.
    pub setup_failure: Option<SetupFailure>,
    /// `cache_key`: files whose content keys the snapshot taken after setup, normalised
    /// (`./a/` is `a`).
    pub cache_key: Option<Vec<String>>,
    /// `secrets`: names of values the service holds for the repository, given to setup only.
    pub secrets: Option<Vec<String>>,
    /// `[env]`: plain variables for setup and the agent.
    pub env: Option<BTreeMap<String, String>>,
    /// `agent.mode`.
    pub mode: Option<Mode>,
    /// `agent.instructions`: appended to the agent's prompt.
    pub instructions: Option<String>,
    /// `agent.turn_timeout`: the limit on one agent turn.
    pub turn_timeout: Option<Duration>,
    /// `ci.max_rounds`.
    pub max_rounds: Option<u32>,
    /// `ci.wait_timeout`: how long a round waits for CI.
    pub wait_timeout: Option<Duration>,
    /// `ci.required`: the checks that must pass; the others are reported but do not block.
    pub required: Option<Vec<String>>,
    /// `ci.ignore`: checks never waited for.
    pub ignore: Option<Vec<String>>,
    /// `permissions.minimum`: the least role that may start a task.
    pub minimum: Option<Role>,
    /// `permissions.users`: the only logins that may start a task (with the role as well).
    pub users: Option<Vec<String>>,
    /// `paths.workdir`: where setup runs and the agent starts, normalised (`services/api`).
    pub workdir: Option<String>,
    /// `egress.allow`: hosts added to the agent's egress allowlist, as `AGENT_EGRESS_ALLOW`
    /// writes them (lowercase, `host`, `host:port`, `*.suffix`).
    pub egress_allow: Option<Vec<String>>,
}

/// What a failing setup command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupFailure {
    /// The task fails with the command's output (the default).
    Stop,
    /// The failure is noted and the agent starts anyway.
    Continue,
}

impl SetupFailure {
    pub const NAMES: &[&str] = &["stop", "continue"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "stop" => Some(Self::Stop),
            "continue" => Some(Self::Continue),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Continue => "continue",
        }
    }
}

impl fmt::Display for SetupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Amp's `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Low,
    Medium,
    High,
    Ultra,
}

impl Mode {
    pub const NAMES: &[&str] = &["low", "medium", "high", "ultra"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "ultra" => Some(Self::Ultra),
            _ => None,
        }
    }

    /// The value of `--mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Ultra => "ultra",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
