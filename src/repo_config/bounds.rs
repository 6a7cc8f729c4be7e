//! What the operator decides for every repository: the values a file leaves out, and how far a
//! file may go.

use std::time::Duration;

use crate::config::Config;
use crate::domain::Role;

/// The service's defaults and the limits a repository's file stays within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// `AGENT_IMAGE`: the image when the file names none.
    pub image: String,
    /// `MAX_CI_ROUNDS`: the default number of CI rounds, and the most a file may set.
    pub max_rounds: u32,
    /// `CI_WAIT_TIMEOUT`: the default wait for CI, and the longest a file may set.
    pub wait_timeout: Duration,
    /// `TASK_TIMEOUT`: the default limit on an agent turn, and the longest a file may set.
    pub turn_timeout: Duration,
    /// `REQUIRED_PERMISSION`: the default least role, and the lowest a file may set.
    pub minimum: Role,
    /// The names of the secrets the service holds (`AMP_REPO_SECRET_<NAME>`): the only ones a
    /// file may list.
    pub held_secrets: Vec<String>,
    /// Keys a file may not set here (see [`NOT_YET_APPLIED`]).
    pub refused_keys: &'static [&'static str],
}

/// Keys of the file that this version of the service knows but does not apply yet. A file that
/// sets one is refused at the key's line and column rather than half applied: a repository is
/// never told a setting is in effect when it is not.
pub const NOT_YET_APPLIED: &[&str] = &[];

impl Bounds {
    pub fn from_config(config: &Config) -> Bounds {
        Bounds {
            image: config.agent_image.clone(),
            max_rounds: config.max_ci_rounds,
            wait_timeout: config.ci_wait_timeout,
            turn_timeout: config.task_timeout,
            minimum: config.required_permission,
            held_secrets: config.repo_secrets.names(),
            refused_keys: NOT_YET_APPLIED,
        }
    }

    /// The bounds of a service configured with nothing but its defaults (3 CI rounds, 10 minutes
    /// for CI, 2 hours a turn, write access), for tests.
    pub fn service_defaults() -> Bounds {
        let config = Config::from_lookup(|_| None).expect("the defaults are a valid configuration");
        Bounds::from_config(&config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_services() {
        assert_eq!(
            Bounds::service_defaults(),
            Bounds {
                image: "amp-orchestrator-agent:latest".into(),
                max_rounds: 3,
                wait_timeout: Duration::from_secs(600),
                turn_timeout: Duration::from_secs(7200),
                minimum: Role::Write,
                held_secrets: vec![],
                refused_keys: NOT_YET_APPLIED,
            }
        );
    }
}
