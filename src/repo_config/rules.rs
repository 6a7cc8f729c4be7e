//! What one value must look like, each rule a pure function of the value: `Err` says why it is
//! not one, in words that follow the value (`"a b" contains whitespace`).

use crate::text::clip;

/// A value of the file, quoted and cut short, for a message.
pub(super) fn shown(value: &str) -> String {
    format!("{:?}", clip(value, 60))
}

const MAX_IMAGE_LEN: usize = 255;

/// An image reference: Docker checks the rest when it pulls it.
pub(super) fn image(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err("is empty".into())
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!(
            "{} contains whitespace or a control character",
            shown(value)
        ))
    } else if value.chars().count() > MAX_IMAGE_LEN {
        Err(format!("is longer than {MAX_IMAGE_LEN} characters"))
    } else {
        Ok(())
    }
}

/// A path inside the repository: relative, without `..`, normalised (`./a//` is refused for its
/// empty component, `./a/b/` is `a/b`).
pub(super) fn relative_path(value: &str) -> Result<String, String> {
    if value.starts_with('/') {
        return Err(format!(
            "{} is an absolute path; paths are relative to the repository's root",
            shown(value)
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{} contains a control character", shown(value)));
    }
    let trimmed = value.trim_end_matches('/');
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "." => {}
            ".." => return Err(format!("{} has a `..` component", shown(value))),
            "" => {
                return Err(format!(
                    "{} is empty or has an empty component (`//`)",
                    shown(value)
                ));
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(format!("{} names no file or directory", shown(value)));
    }
    Ok(parts.join("/"))
}

/// `^[A-Z][A-Z0-9_]{0,63}$`.
pub fn is_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `^[A-Za-z_][A-Za-z0-9_]{0,63}$`.
pub(super) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a variable name belongs to the service, which sets it in the container itself; `None`
/// when a repository may set it. Any case: a tool may read `https_proxy` as well as `HTTPS_PROXY`.
pub(super) fn reserved_variable(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("AMP_") {
        Some("names starting with `AMP_` belong to the service")
    } else if upper.starts_with("GIT_") {
        Some("names starting with `GIT_` belong to the service")
    } else if ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"].contains(&upper.as_str()) {
        Some("the proxy variables belong to the service's sandbox")
    } else {
        None
    }
}

/// A GitHub login: `^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`.
pub(super) fn is_login(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 39
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images() {
        assert!(image("rust:1-bookworm").is_ok());
        assert!(image("ghcr.io/o/i@sha256:abc").is_ok());
        for bad in ["", "rust 1", "rust\t1", "a\u{7}", &"a".repeat(256)] {
            assert!(image(bad).is_err(), "{bad:?}");
        }
        assert!(image(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn paths_are_relative_and_normalised() {
        let ok = |p: &str| relative_path(p).unwrap();
        assert_eq!(ok("services/api"), "services/api");
        assert_eq!(ok("./services/api/"), "services/api");
        assert_eq!(ok("services/./api"), "services/api");
        assert_eq!(ok("Cargo.lock"), "Cargo.lock");
        for bad in [
            "", ".", "./", "/abs", "../x", "a/../b", "a//b", "a\nb", "..",
        ] {
            assert!(relative_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for good in ["NPM_TOKEN", "A", "A1_B", &format!("A{}", "B".repeat(63))] {
            assert!(is_secret_name(good), "{good}");
        }
        for bad in [
            "",
            "npm_token",
            "1A",
            "_A",
            "A-B",
            &format!("A{}", "B".repeat(64)),
        ] {
            assert!(!is_secret_name(bad), "{bad}");
        }
        for good in ["RUST_BACKTRACE", "_x", "path", "a1"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["", "1a", "A-B", "A B", "é"] {
            assert!(!is_variable_name(bad), "{bad}");
        }
        for reserved in [
            "AMP_API_KEY",
            "amp_url",
            "https_proxy",
            "No_Proxy",
            "GIT_DIR",
        ] {
            assert!(reserved_variable(reserved).is_some(), "{reserved}");
        }
        for free in ["PATH", "HOME", "AMPLE", "GITHUB_TOKEN", "HTTP_PROXY_X"] {
            assert_eq!(reserved_variable(free), None, "{free}");
        }
        for good in ["octocat", "a", "mona-lisa", "A1", &"a".repeat(39)] {
            assert!(is_login(good), "{good}");
        }
        for bad in ["", "-a", "a_b", "a b", "@octocat", &"a".repeat(40)] {
            assert!(!is_login(bad), "{bad}");
        }
    }
}
