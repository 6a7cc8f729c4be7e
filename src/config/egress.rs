//! What the agent may reach: `AGENT_EGRESS` and the settings of its sandbox (the egress gateway,
//! the task networks, the git helpers' network).

use std::net::{IpAddr, Ipv4Addr};

use crate::sandbox::{DEFAULT_SUBNET_POOL, SubnetPool};

/// Hosts the gateway's proxy lets every agent reach: the package registries a build needs.
/// `AGENT_EGRESS_ALLOW` adds to them.
pub const DEFAULT_ALLOW: &[&str] = &[
    // npm
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    // PyPI and its files
    "pypi.org",
    "files.pythonhosted.org",
    // crates.io, its index and its downloads
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    // Debian
    "deb.debian.org",
    "security.debian.org",
    // The Go module proxy and checksum database
    "proxy.golang.org",
    "sum.golang.org",
];

/// `AGENT_EGRESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressMode {
    /// The agent's only way out is the gateway: the Amp relay and the allowlist proxy.
    Proxy,
    /// The gateway's Amp relay and nothing else.
    None,
    /// No sandbox: the agent sits on `AGENT_NETWORK` and holds the Amp key.
    Open,
}

impl EgressMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EgressMode::Proxy => "proxy",
            EgressMode::None => "none",
            EgressMode::Open => "open",
        }
    }

    /// Whether agents run in the sandbox (their own network, the gateway, a placeholder key).
    pub fn is_sandboxed(self) -> bool {
        self != EgressMode::Open
    }
}

/// The sandbox's settings.
#[derive(Debug, Clone)]
pub struct Egress {
    pub mode: EgressMode,
    /// Allowlist entries (`host`, `host:port`, `*.suffix`, `*.suffix:port`): the defaults and
    /// `AGENT_EGRESS_ALLOW`. Empty in `none` mode.
    pub allow: Vec<String>,
    /// `AGENT_EGRESS_ALLOW_NETWORKS`: CIDRs the proxy may connect to although they are private
    /// (an internal package mirror).
    pub allow_networks: Vec<String>,
    /// `AGENT_EGRESS_HOSTS`: names the gateway resolves to fixed addresses (`name=address`, as
    /// an `/etc/hosts` line), for an internal mirror without DNS. The addresses still have to
    /// be public or in `allow_networks`.
    pub hosts: Vec<(String, IpAddr)>,
    /// `GATEWAY_NETWORK`: the network by which the gateway reaches the outside.
    pub gateway_network: String,
    /// `GATEWAY_IMAGE`: an image to run the gateway from instead of one built from this binary.
    pub gateway_image: Option<String>,
    /// `AGENT_SUBNETS`: the block each task's network takes a /28 of.
    pub subnets: SubnetPool,
    /// `GIT_NETWORK`: the network of the short-lived containers that clone and push with the
    /// installation token.
    pub git_network: String,
}

impl Egress {
    /// Read the sandbox's settings; problems are added to `problems`. `agent_network` is
    /// `AGENT_NETWORK`, which the git helpers use by default when there is no sandbox.
    pub fn from_env(
        get: &impl Fn(&str) -> Option<String>,
        agent_network: &str,
        problems: &mut Vec<String>,
    ) -> Egress {
        let mode = match get("AGENT_EGRESS").as_deref().map(str::trim) {
            None | Some("proxy") => EgressMode::Proxy,
            Some("none") => EgressMode::None,
            Some("open") => EgressMode::Open,
            Some(other) => {
                problems.push(format!(
                    "AGENT_EGRESS must be proxy, none or open, got {other:?}"
                ));
                EgressMode::Proxy
            }
        };
        let mut allow: Vec<String> = Vec::new();
        if mode == EgressMode::Proxy {
            allow.extend(DEFAULT_ALLOW.iter().map(|h| h.to_string()));
            for entry in list(get("AGENT_EGRESS_ALLOW")) {
                match allow_entry(&entry) {
                    Ok(entry) if !allow.contains(&entry) => allow.push(entry),
                    Ok(_) => {}
                    Err(why) => problems.push(format!("AGENT_EGRESS_ALLOW: {entry:?} {why}")),
                }
            }
        }
        let mut allow_networks = Vec::new();
        for cidr in list(get("AGENT_EGRESS_ALLOW_NETWORKS")) {
            match parse_cidr(&cidr) {
                Ok(_) => allow_networks.push(cidr),
                Err(why) => problems.push(format!("AGENT_EGRESS_ALLOW_NETWORKS: {cidr:?} {why}")),
            }
        }
        let mut hosts = Vec::new();
        for pair in list(get("AGENT_EGRESS_HOSTS")) {
            let parsed = pair.split_once('=').and_then(|(name, addr)| {
                let name = allow_entry(name).ok().filter(|n| !n.contains(['*', ':']))?;
                Some((name, addr.trim().parse::<IpAddr>().ok()?))
            });
            match parsed {
                Some(host) => hosts.push(host),
                None => problems.push(format!(
                    "AGENT_EGRESS_HOSTS: {pair:?} is not `name=address`, such as \
                     mirror.internal=10.0.0.5"
                )),
            }
        }
        let default_pool = || {
            DEFAULT_SUBNET_POOL
                .parse::<SubnetPool>()
                .expect("the default pool is a valid one")
        };
        let subnets = match get("AGENT_SUBNETS") {
            None => default_pool(),
            Some(value) => value.parse::<SubnetPool>().unwrap_or_else(|why| {
                problems.push(format!(
                    "AGENT_SUBNETS must be an IPv4 block of /28 or larger, such as \
                     10.213.0.0/16: {why}"
                ));
                default_pool()
            }),
        };
        let default_git_network = if mode == EgressMode::Open {
            agent_network
        } else {
            "bridge"
        };
        Egress {
            mode,
            allow,
            allow_networks,
            hosts,
            gateway_network: get("GATEWAY_NETWORK").unwrap_or_else(|| "bridge".into()),
            gateway_image: get("GATEWAY_IMAGE"),
            subnets,
            git_network: get("GIT_NETWORK").unwrap_or_else(|| default_git_network.into()),
        }
    }
}

/// The non-empty items of a comma-separated list.
fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// An allowlist entry, lowercased; why it is not one otherwise.
pub fn allow_entry(entry: &str) -> Result<String, String> {
    let entry = entry.trim().to_ascii_lowercase();
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(p) if p > 0 => (host, Some(p)),
            _ => return Err("has a port that is not a number from 1 to 65535".into()),
        },
        None => (entry.as_str(), None),
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.parse::<IpAddr>().is_ok() || name.parse::<Ipv4Addr>().is_ok() {
        return Err("is an IP address; the allowlist takes host names".into());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(
            "is not a host name (letters, digits, dashes and dots, optionally \
                    `*.` before and `:port` after)"
                .into(),
        );
    }
    if host.starts_with("*.") && !name.contains('.') {
        return Err("allows every subdomain of a top-level domain".into());
    }
    let host = if host.starts_with("*.") {
        format!("*.{name}")
    } else {
        name.to_string()
    };
    Ok(match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// `address/prefix`.
pub fn parse_cidr(value: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = value
        .split_once('/')
        .ok_or("is not a CIDR block such as 10.0.0.0/8")?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| "does not start with an IP address")?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("has a prefix length that is not 0 to {max}"))?;
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn egress(vars: &[(&str, &str)]) -> (Egress, Vec<String>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut problems = Vec::new();
        let e = Egress::from_env(&|k| vars.get(k).cloned(), "host", &mut problems);
        (e, problems)
    }

    #[test]
    fn the_defaults_are_the_sandbox_with_the_registries() {
        let (e, problems) = egress(&[]);
        assert!(problems.is_empty());
        assert_eq!(e.mode, EgressMode::Proxy);
        assert!(e.allow.iter().any(|h| h == "registry.npmjs.org"));
        assert_eq!(e.subnets.to_string(), "10.213.0.0/16");
        assert_eq!(e.git_network, "bridge");
        assert_eq!(e.gateway_network, "bridge");
    }

    #[test]
    fn extra_hosts_are_added_and_bad_ones_named() {
        let (e, problems) = egress(&[(
            "AGENT_EGRESS_ALLOW",
            "Mirror.Example.com., *.corp.example:8443, registry.npmjs.org",
        )]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(e.allow.ends_with(&[
            "mirror.example.com".to_string(),
            "*.corp.example:8443".to_string()
        ]));
        assert_eq!(
            e.allow
                .iter()
                .filter(|h| *h == "registry.npmjs.org")
                .count(),
            1
        );
        for bad in [
            "10.0.0.1",
            "*.com",
            "a_b.example",
            "host:0",
            "host:x",
            "[::1]:80",
        ] {
            let (_, problems) = egress(&[("AGENT_EGRESS_ALLOW", bad)]);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        }
    }

    #[test]
    fn none_allows_nothing_and_open_keeps_the_agent_network_for_git() {
        let (e, _) = egress(&[
            ("AGENT_EGRESS", "none"),
            ("AGENT_EGRESS_ALLOW", "a.example"),
        ]);
        assert_eq!(e.mode, EgressMode::None);
        assert!(e.allow.is_empty());
        let (e, _) = egress(&[("AGENT_EGRESS", "open")]);
        assert_eq!((e.mode, e.git_network.as_str()), (EgressMode::Open, "host"));
        let (_, problems) = egress(&[("AGENT_EGRESS", "closed")]);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn networks_and_subnets_are_checked() {
        let (e, problems) = egress(&[
            ("AGENT_EGRESS_ALLOW_NETWORKS", "172.30.0.0/16, fd00::/8"),
            ("AGENT_SUBNETS", "10.99.0.0/20"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(e.allow_networks.len(), 2);
        let (h, problems) = egress(&[(
            "AGENT_EGRESS_HOSTS",
            "Mirror.internal=10.0.0.5, v6.internal=fd00::1",
        )]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            h.hosts[0],
            ("mirror.internal".to_string(), "10.0.0.5".parse().unwrap())
        );
        assert_eq!(h.hosts.len(), 2);
        for bad in [
            "mirror.internal",
            "*.x.internal=10.0.0.5",
            "m.internal=host",
        ] {
            let (_, problems) = egress(&[("AGENT_EGRESS_HOSTS", bad)]);
            assert_eq!(problems.len(), 1, "{bad}");
        }
        assert_eq!(e.subnets.to_string(), "10.99.0.0/20");
        for (name, bad) in [
            ("AGENT_EGRESS_ALLOW_NETWORKS", "172.30.0.0"),
            ("AGENT_EGRESS_ALLOW_NETWORKS", "172.30.0.0/33"),
            ("AGENT_SUBNETS", "10.0.0.0/29"),
            ("AGENT_SUBNETS", "fd00::/8"),
            // Host bits set: the block is 10.213.0.0/16.
            ("AGENT_SUBNETS", "10.213.5.0/16"),
        ] {
            let (_, problems) = egress(&[(name, bad)]);
            assert_eq!(problems.len(), 1, "{name}={bad}");
        }
    }
}
