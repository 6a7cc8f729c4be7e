//! The per-task placeholder credential the agent holds instead of the Amp key.
//!
//! `amp-sbx.<task>.<expires>.<mac>`: the task's public id, the expiry in unix seconds and an
//! HMAC-SHA256 over `<task>|<expires>|<agent ip>` with a key derived from `AMP_API_KEY`. A task
//! whose repository adds hosts to the proxy's allowlist (`egress.allow` in `.github/amp.toml`)
//! carries them in the token, signed with the rest:
//! `amp-sbx.<task>.<expires>.<hosts>.<mac>`, `<hosts>` the comma-separated entries in unpadded
//! base64url and the HMAC over `<task>|<expires>|<agent ip>|<hosts>`. The
//! service mints it when it starts the agent's container; the gateway verifies it against the TCP
//! peer of the connection, so a token copied out of one container is useless from another, and a
//! token is useless after the task's deadline. Nothing is stored: the key and the peer address
//! are all the gateway needs.

use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::allowlist::Allowlist;

type HmacSha256 = Hmac<Sha256>;

/// Every token starts with this, so it is recognisable (and redactable) in logs.
pub const PREFIX: &str = "amp-sbx.";

/// What the derivation of [`Key`] from `AMP_API_KEY` is bound to; a new scheme gets a new label.
const DERIVATION_LABEL: &[u8] = b"amp-orchestrator egress credential v1";

/// The longest task id accepted (public ids are far shorter; this bounds the work on garbage).
const MAX_TASK_LEN: usize = 64;

/// The longest list of added hosts a token carries, encoded (a repository may add 50 hosts).
const MAX_HOSTS_LEN: usize = 24 * 1024;

/// The key tokens are signed with, derived once from `AMP_API_KEY`.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    /// HMAC-SHA256(key = the Amp key's bytes, message = the derivation label).
    pub fn derive(amp_key: &str) -> Key {
        let mut mac = HmacSha256::new_from_slice(amp_key.as_bytes()).expect("HMAC takes any key");
        mac.update(DERIVATION_LABEL);
        Key(mac.finalize().into_bytes().into())
    }

    fn mac(&self, task: &str, expires: u64, ip: IpAddr, hosts: Option<&str>) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(format!("{task}|{expires}|{}", canonical(ip)).as_bytes());
        if let Some(hosts) = hosts {
            mac.update(format!("|{hosts}").as_bytes());
        }
        mac
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key([REDACTED])")
    }
}

/// The task a valid token was minted for (its public id: ASCII letters, digits, `-` and `_`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskName(String);

impl TaskName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no credential was given")]
    Missing,
    #[error("the credential is not an egress credential of this service")]
    Malformed,
    #[error("the credential is not valid from this container")]
    BadSignature,
    #[error("the credential has expired")]
    Expired,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub task: TaskName,
    /// Hosts the task may reach besides the gateway's own allowlist.
    pub allow: Allowlist,
}

/// Mint a token for `task`, valid until `expires`, usable only from `agent_ip`.
///
/// `task` must be the task's public id (ASCII letters, digits, `-` and `_`); a token for anything else is
/// refused by [`verify`].
pub fn mint(amp_key: &str, task: &str, expires: SystemTime, agent_ip: IpAddr) -> String {
    mint_allowing(amp_key, task, expires, agent_ip, &[])
}

/// [`mint`] for a task that may also reach `hosts` (allowlist entries, as
/// [`Allowlist::parse`] reads them).
pub fn mint_allowing(
    amp_key: &str,
    task: &str,
    expires: SystemTime,
    agent_ip: IpAddr,
    hosts: &[String],
) -> String {
    let key = Key::derive(amp_key);
    let expires = unix_seconds(expires);
    if hosts.is_empty() {
        let mac = key
            .mac(task, expires, agent_ip, None)
            .finalize()
            .into_bytes();
        return format!("{PREFIX}{task}.{expires}.{}", URL_SAFE_NO_PAD.encode(mac));
    }
    let hosts = URL_SAFE_NO_PAD.encode(hosts.join(","));
    let mac = key
        .mac(task, expires, agent_ip, Some(&hosts))
        .finalize()
        .into_bytes();
    format!(
        "{PREFIX}{task}.{expires}.{hosts}.{}",
        URL_SAFE_NO_PAD.encode(mac)
    )
}

/// Whether `task` can be a task's public id: ASCII letters, digits, `-` and `_` (base64url),
/// never the token's separator `.`.
pub fn is_task_name(task: &str) -> bool {
    !task.is_empty()
        && task.len() <= MAX_TASK_LEN
        && task
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Check a token presented by a connection from `peer` at `now`.
pub fn verify(
    key: &Key,
    token: &str,
    peer: IpAddr,
    now: SystemTime,
) -> Result<Credential, Refusal> {
    let rest = token.strip_prefix(PREFIX).ok_or(Refusal::Malformed)?;
    let parts: Vec<&str> = rest.splitn(5, '.').collect();
    let (task, expires, hosts, mac) = match parts[..] {
        [task, expires, mac] => (task, expires, None, mac),
        [task, expires, hosts, mac] if !hosts.is_empty() && hosts.len() <= MAX_HOSTS_LEN => {
            (task, expires, Some(hosts), mac)
        }
        _ => return Err(Refusal::Malformed),
    };
    if !is_task_name(task) {
        return Err(Refusal::Malformed);
    }
    if expires.is_empty() || expires.len() > 20 || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Malformed);
    }
    let expires: u64 = expires.parse().map_err(|_| Refusal::Malformed)?;
    // A SHA-256 MAC is 43 characters in unpadded base64url.
    if mac.len() != 43 {
        return Err(Refusal::Malformed);
    }
    let mac = URL_SAFE_NO_PAD
        .decode(mac)
        .map_err(|_| Refusal::Malformed)?;
    key.mac(task, expires, peer, hosts)
        .verify_slice(&mac)
        .map_err(|_| Refusal::BadSignature)?;
    if unix_seconds(now) >= expires {
        return Err(Refusal::Expired);
    }
    // Signed by the service, so a list that does not read is a bug there, not an attack.
    let allow = match hosts {
        None => Allowlist::default(),
        Some(hosts) => URL_SAFE_NO_PAD
            .decode(hosts)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|list| Allowlist::parse(&list).ok())
            .ok_or(Refusal::Malformed)?,
    };
    Ok(Credential {
        task: TaskName(task.to_owned()),
        allow,
    })
}

/// An IPv4-mapped IPv6 address is the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    const AMP_KEY: &str = "sgamp_user_test_key";

    fn ip() -> IpAddr {
        "172.30.0.5".parse().unwrap()
    }

    fn later(secs: u64) -> SystemTime {
        SystemTime::now() + Duration::from_secs(secs)
    }

    #[test]
    fn a_minted_token_verifies_for_its_task_and_address() {
        let token = mint(AMP_KEY, "abc123XYZ", later(3600), ip());
        assert!(token.starts_with("amp-sbx.abc123XYZ."));
        let task = verify(&Key::derive(AMP_KEY), &token, ip(), SystemTime::now()).unwrap();
        assert_eq!(task.task.as_str(), "abc123XYZ");
        assert!(task.allow.is_empty());
    }

    #[test]
    fn a_public_id_with_dashes_and_underscores_is_a_task_name() {
        // Public ids are base64url.
        let token = mint(AMP_KEY, "l_5iRi0yIcz-E1ZyTOBGpcTj", later(3600), ip());
        let task = verify(&Key::derive(AMP_KEY), &token, ip(), SystemTime::now()).unwrap();
        assert_eq!(task.task.as_str(), "l_5iRi0yIcz-E1ZyTOBGpcTj");
        assert!(!is_task_name("a.b"));
        assert!(!is_task_name(""));
    }

    #[test]
    fn the_derived_key_is_hmac_of_the_label() {
        // Another implementation (the service side) derives the same key.
        let mut mac = HmacSha256::new_from_slice(AMP_KEY.as_bytes()).unwrap();
        mac.update(b"amp-orchestrator egress credential v1");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(Key::derive(AMP_KEY).0, expected);
        let expires = 2_000_000_000u64;
        let mut mac = HmacSha256::new_from_slice(&expected).unwrap();
        mac.update(b"t1|2000000000|172.30.0.5");
        let mac = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(
            mint(
                AMP_KEY,
                "t1",
                UNIX_EPOCH + Duration::from_secs(expires),
                ip()
            ),
            format!("amp-sbx.t1.{expires}.{mac}")
        );
    }

    #[test]
    fn another_address_is_refused() {
        let token = mint(AMP_KEY, "task1", later(3600), ip());
        let other: IpAddr = "172.30.0.6".parse().unwrap();
        assert_eq!(
            verify(&Key::derive(AMP_KEY), &token, other, SystemTime::now()),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn an_ipv4_mapped_peer_is_its_ipv4_address() {
        let token = mint(AMP_KEY, "task1", later(3600), ip());
        let mapped = IpAddr::V6(Ipv4Addr::new(172, 30, 0, 5).to_ipv6_mapped());
        assert!(verify(&Key::derive(AMP_KEY), &token, mapped, SystemTime::now()).is_ok());
        // And the other way round.
        let token = mint(AMP_KEY, "task1", later(3600), mapped);
        assert!(verify(&Key::derive(AMP_KEY), &token, ip(), SystemTime::now()).is_ok());
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5));
        let token = mint(AMP_KEY, "task1", later(3600), v6);
        assert!(verify(&Key::derive(AMP_KEY), &token, v6, SystemTime::now()).is_ok());
    }

    #[test]
    fn another_task_name_is_refused() {
        let token = mint(AMP_KEY, "task1", later(3600), ip());
        let swapped = token.replacen("task1", "task2", 1);
        assert_eq!(
            verify(&Key::derive(AMP_KEY), &swapped, ip(), SystemTime::now()),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn another_amp_key_is_refused() {
        let token = mint("another key", "task1", later(3600), ip());
        assert_eq!(
            verify(&Key::derive(AMP_KEY), &token, ip(), SystemTime::now()),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let expires = SystemTime::now() - Duration::from_secs(1);
        let token = mint(AMP_KEY, "task1", expires, ip());
        assert_eq!(
            verify(&Key::derive(AMP_KEY), &token, ip(), SystemTime::now()),
            Err(Refusal::Expired)
        );
        // Valid until the second it expires, not at it.
        let expires = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let token = mint(AMP_KEY, "task1", expires, ip());
        let key = Key::derive(AMP_KEY);
        assert!(verify(&key, &token, ip(), expires - Duration::from_secs(1)).is_ok());
        assert_eq!(verify(&key, &token, ip(), expires), Err(Refusal::Expired));
    }

    #[test]
    fn a_later_expiry_is_refused() {
        let token = mint(AMP_KEY, "task1", later(60), ip());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[2] = (parts[2].parse::<u64>().unwrap() + 3600).to_string();
        assert_eq!(
            verify(
                &Key::derive(AMP_KEY),
                &parts.join("."),
                ip(),
                SystemTime::now()
            ),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn a_token_carries_its_tasks_added_hosts_signed() {
        let hosts = [
            "registry.example.com".to_string(),
            "*.example.org:8443".to_string(),
        ];
        let token = mint_allowing(AMP_KEY, "task1", later(3600), ip(), &hosts);
        let key = Key::derive(AMP_KEY);
        let credential = verify(&key, &token, ip(), SystemTime::now()).unwrap();
        assert_eq!(credential.task.as_str(), "task1");
        assert!(credential.allow.allows("registry.example.com", 443));
        assert!(credential.allow.allows("a.example.org", 8443));
        assert!(!credential.allow.allows("example.net", 443));
        // Another list in the same token is not the service's.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[3] = URL_SAFE_NO_PAD.encode("example.net");
        assert_eq!(
            verify(&key, &parts.join("."), ip(), SystemTime::now()),
            Err(Refusal::BadSignature)
        );
        // Nor is a token without the list, with the same MAC.
        parts.remove(3);
        assert_eq!(
            verify(&key, &parts.join("."), ip(), SystemTime::now()),
            Err(Refusal::BadSignature)
        );
        // An empty list is the plain token.
        assert_eq!(
            mint_allowing(AMP_KEY, "task1", later(60), ip(), &[])
                .split('.')
                .count(),
            4
        );
    }

    #[test]
    fn a_tampered_mac_is_refused() {
        let token = mint(AMP_KEY, "task1", later(3600), ip());
        let last = token.chars().last().unwrap();
        // Another last character whose unused low bits are zero too (A, E, I, …), so the MAC
        // decodes and is wrong rather than malformed.
        let flipped = if last == 'A' { 'E' } else { 'A' };
        let tampered = format!("{}{flipped}", &token[..token.len() - 1]);
        assert_eq!(
            verify(&Key::derive(AMP_KEY), &tampered, ip(), SystemTime::now()),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let key = Key::derive(AMP_KEY);
        let good = mint(AMP_KEY, "task1", later(3600), ip());
        let mac = good.rsplit('.').next().unwrap().to_owned();
        let far = unix_seconds(later(3600));
        for bad in [
            String::new(),
            "sgamp_user_real_key".into(),
            "amp-sbx.".into(),
            "amp-sbx.task1".into(),
            format!("amp-sbx.task1.{far}"),
            format!("amp-sbx.task1.{far}.{mac}.extra"),
            format!("amp-sbx..{far}.{mac}"),
            format!("amp-sbx.ta sk.{far}.{mac}"),
            format!("amp-sbx.tásk.{far}.{mac}"),
            format!("amp-sbx.{}.{far}.{mac}", "a".repeat(65)),
            format!("amp-sbx.task1.-5.{mac}"),
            format!("amp-sbx.task1.+5.{mac}"),
            format!("amp-sbx.task1.99999999999999999999.{mac}"),
            format!("amp-sbx.task1.{far}.{mac}="),
            format!("amp-sbx.task1.{far}.{}", &mac[1..]),
            format!("amp-sbx.task1.{far}.{}+", &mac[1..]),
            format!("AMP-SBX.task1.{far}.{mac}"),
        ] {
            assert_eq!(
                verify(&key, &bad, ip(), SystemTime::now()),
                Err(Refusal::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_key_does_not_show_in_debug_output() {
        assert_eq!(format!("{:?}", Key::derive(AMP_KEY)), "Key([REDACTED])");
    }
}
