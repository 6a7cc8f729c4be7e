//! Values the operator holds for repositories' setup commands: `AMP_REPO_SECRET_<NAME>` in the
//! service's environment is the secret `<NAME>` that a repository's `.github/amp.toml` may list in
//! `secrets`. Every repository the App is installed on may name it; its setup commands get it as
//! the variable `<NAME>`, the agent never does, and its value is masked in everything the service
//! stores, shows or logs.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// What a variable's name starts with to hold a repository secret.
pub const PREFIX: &str = "AMP_REPO_SECRET_";

/// The shortest value held: shorter ones would mask ordinary words (see
/// [`crate::redact::Redactor::add`]).
const MIN_LEN: usize = 8;

/// The secrets the operator holds, by name.
#[derive(Clone, Default)]
pub struct RepoSecrets(BTreeMap<String, SecretString>);

impl RepoSecrets {
    /// The secrets among environment variables: those named [`PREFIX`]`<NAME>` with a `<NAME>` a
    /// repository could list (capital letters, digits and `_`, starting with a letter) and a
    /// value that is not empty. Others are left alone, and named in the problems returned.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> (RepoSecrets, Vec<String>) {
        let mut held = BTreeMap::new();
        let mut problems = Vec::new();
        for (variable, value) in vars {
            let Some(name) = variable.strip_prefix(PREFIX) else {
                continue;
            };
            if !crate::repo_config::is_secret_name(name) {
                problems.push(format!(
                    "{variable}: `{name}` is not a secret's name a repository can list (capital \
                     letters, digits and `_`, starting with a letter, at most 64 characters)"
                ));
            } else if value.trim().chars().count() < MIN_LEN {
                problems.push(format!(
                    "{variable} is shorter than {MIN_LEN} characters, too short to be masked \
                     wherever it appears"
                ));
            } else {
                held.insert(name.to_string(), SecretString::from(value));
            }
        }
        (RepoSecrets(held), problems)
    }

    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.0.get(name)
    }

    pub fn holds(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// Every value, for the service's masking.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(|v| v.expose_secret())
    }

    /// `NAME=value` for each of `names` held, for a setup command's environment.
    pub fn env_for(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter_map(|name| {
                self.get(name)
                    .map(|value| format!("{name}={}", value.expose_secret()))
            })
            .collect()
    }
}

impl fmt::Debug for RepoSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_their_variables_and_never_show() {
        let vars = [
            ("AMP_REPO_SECRET_NPM_TOKEN", "npm_abc123"),
            ("AMP_REPO_SECRET_lower", "x"),
            ("AMP_REPO_SECRET_EMPTY", " "),
            ("AMP_API_KEY", "not a repository's"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let (secrets, problems) = RepoSecrets::from_vars(vars);
        assert!(secrets.holds("NPM_TOKEN"));
        assert!(!secrets.holds("API_KEY") && !secrets.holds("lower"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("AMP_REPO_SECRET_lower"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("AMP_REPO_SECRET_EMPTY is shorter than 8"),
            "{problems:?}"
        );
        assert_eq!(
            secrets.env_for(&["NPM_TOKEN".into(), "OTHER".into()]),
            ["NPM_TOKEN=npm_abc123"]
        );
        assert_eq!(format!("{secrets:?}"), r#"["NPM_TOKEN"]"#);
        assert_eq!(secrets.values().collect::<Vec<_>>(), ["npm_abc123"]);
    }
}
