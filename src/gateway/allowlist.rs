//! The hosts the forward proxy lets an agent reach (`GATEWAY_ALLOW`).
//!
//! Entries: `host` (ports 80 and 443), `host:port` (that port only), `*.suffix` and
//! `*.suffix:port` (any subdomain of suffix, not suffix itself). Case-insensitive; a trailing dot
//! is ignored. IP addresses are not entries: the proxy refuses IP literals outright.

use std::fmt;

/// The longest DNS name.
const MAX_HOST_LEN: usize = 253;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Name {
    Exact(String),
    /// Matches `*.suffix`: one or more labels, then the suffix.
    Subdomains(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    name: Name,
    /// `None`: ports 80 and 443.
    port: Option<u16>,
}

/// A parsed `GATEWAY_ALLOW`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// Parse comma-separated entries; empty means nothing is allowed.
    pub fn parse(s: &str) -> Result<Allowlist, String> {
        let mut entries = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            entries.push(parse_entry(raw)?);
        }
        Ok(Allowlist { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `host:port` is allowed. `host` is a host name as a client sent it (any case, maybe
    /// with a trailing dot).
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let Some(host) = normalize_host(host) else {
            return false;
        };
        self.entries.iter().any(|e| {
            let port_ok = match e.port {
                Some(p) => p == port,
                None => port == 80 || port == 443,
            };
            port_ok
                && match &e.name {
                    Name::Exact(name) => *name == host,
                    Name::Subdomains(suffix) => host
                        .strip_suffix(suffix.as_str())
                        .and_then(|rest| rest.strip_suffix('.'))
                        .is_some_and(|label| !label.is_empty()),
                }
        })
    }
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match &e.name {
                Name::Exact(n) => f.write_str(n)?,
                Name::Subdomains(s) => write!(f, "*.{s}")?,
            }
            if let Some(p) = e.port {
                write!(f, ":{p}")?;
            }
        }
        Ok(())
    }
}

fn parse_entry(raw: &str) -> Result<Entry, String> {
    let bad = |why: &str| format!("GATEWAY_ALLOW entry {raw:?}: {why}");
    let (name, port) = match raw.rsplit_once(':') {
        Some((name, port)) => {
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("the port must be a number from 1 to 65535"));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => (name, Some(p)),
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            }
        }
        None => (raw, None),
    };
    let (wildcard, name) = match name.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, name),
    };
    let Some(name) = normalize_host(name) else {
        return Err(bad(
            "not a host name (letters, digits, '-', '_' and dots; `*.` only as a prefix)",
        ));
    };
    if is_ip_literal(&name) {
        return Err(bad(
            "IP addresses cannot be allowed, only host names (for internal networks see \
             GATEWAY_ALLOW_NETWORKS)",
        ));
    }
    Ok(Entry {
        name: if wildcard {
            Name::Subdomains(name)
        } else {
            Name::Exact(name)
        },
        port,
    })
}

/// A host name in canonical form (lower case, no trailing dot), or `None` when it is not a
/// syntactically valid host name: letters, digits, `-` and `_` in non-empty dot-separated labels
/// of at most 63 characters, at most 253 in all.
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let valid = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    valid.then(|| host.to_ascii_lowercase())
}

/// Whether a request's host is an IP address (`1.2.3.4`, `[::1]`, `::1`) rather than a name.
/// Numeric forms the resolver would also read as an address (`2130706433`, `127.1`, `0x7f.1`)
/// count too: a host whose last label is all digits, or a hex number, is not a name.
pub fn is_ip_literal(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if unbracketed.parse::<std::net::IpAddr>().is_ok() || unbracketed.contains(':') {
        return true;
    }
    let last = unbracketed.rsplit('.').next().unwrap_or("");
    let lower = last.to_ascii_lowercase();
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || lower
            .strip_prefix("0x")
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_allows_ports_80_and_443() {
        let list = Allowlist::parse("registry.npmjs.org").unwrap();
        assert!(list.allows("registry.npmjs.org", 443));
        assert!(list.allows("registry.npmjs.org", 80));
        assert!(!list.allows("registry.npmjs.org", 8080));
        assert!(!list.allows("npmjs.org", 443));
        assert!(!list.allows("x.registry.npmjs.org", 443));
        assert!(!list.allows("registry.npmjs.org.evil.com", 443));
        assert!(!list.allows("evilregistry.npmjs.org", 443));
    }

    #[test]
    fn a_port_allows_that_port_only() {
        let list = Allowlist::parse("mirror.internal:8443").unwrap();
        assert!(list.allows("mirror.internal", 8443));
        assert!(!list.allows("mirror.internal", 443));
        assert!(!list.allows("mirror.internal", 80));
    }

    #[test]
    fn a_wildcard_allows_subdomains_not_the_suffix() {
        let list = Allowlist::parse("*.githubusercontent.com, *.pkg.dev:444").unwrap();
        assert!(list.allows("raw.githubusercontent.com", 443));
        assert!(list.allows("a.b.githubusercontent.com", 80));
        assert!(!list.allows("githubusercontent.com", 443));
        assert!(!list.allows("evilgithubusercontent.com", 443));
        assert!(!list.allows("raw.githubusercontent.com", 22));
        assert!(list.allows("europe-docker.pkg.dev", 444));
        assert!(!list.allows("europe-docker.pkg.dev", 443));
        assert!(!list.allows("pkg.dev", 444));
    }

    #[test]
    fn matching_ignores_case_and_a_trailing_dot() {
        let list = Allowlist::parse("Crates.IO., *.Example.COM:8080").unwrap();
        assert!(list.allows("crates.io", 443));
        assert!(list.allows("CRATES.IO.", 443));
        assert!(list.allows("A.example.com.", 8080));
        assert_eq!(list.to_string(), "crates.io,*.example.com:8080");
    }

    #[test]
    fn empty_allows_nothing() {
        for s in ["", " ", ",,"] {
            let list = Allowlist::parse(s).unwrap();
            assert!(list.is_empty());
            assert!(!list.allows("example.com", 443));
        }
    }

    #[test]
    fn invalid_hosts_never_match() {
        let list = Allowlist::parse("example.com").unwrap();
        for host in [
            "",
            ".",
            "example..com",
            "exa mple.com",
            "example.com:443",
            "é.com",
        ] {
            assert!(!list.allows(host, 443), "{host:?}");
        }
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "*",
            "*.",
            "*.com:0",
            "example.com:",
            "example.com:65536",
            "example.com:+443",
            "example.com:https",
            "exa*mple.com",
            "a.*.example.com",
            "10.0.0.1",
            "10.0.0.1:443",
            "[::1]:443",
            "http://example.com",
            "example.com/path",
        ] {
            assert!(Allowlist::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ip_literals_are_recognised() {
        for host in [
            "1.2.3.4",
            "127.0.0.1.",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]",
            "2130706433",
            "127.1",
            "0x7f.1",
            "0x7f000001",
        ] {
            assert!(is_ip_literal(host), "{host}");
        }
        for host in [
            "example.com",
            "1.2.3.example",
            "localhost",
            "0xdead.com",
            "x0",
        ] {
            assert!(!is_ip_literal(host), "{host}");
        }
    }
}
