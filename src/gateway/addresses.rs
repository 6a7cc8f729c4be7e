//! Which IP addresses the forward proxy may connect to.
//!
//! Only globally routable unicast addresses, so an agent cannot reach the host, the Docker
//! networks, the cloud's metadata service or anything else inside — whatever a name on the
//! allowlist resolves to. An operator can open networks of their own (an internal package
//! mirror) with `GATEWAY_ALLOW_NETWORKS`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An IPv4 or IPv6 network in CIDR notation (`10.1.0.0/16`, `fd00::/8`; a bare address is a
/// network of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Cidr {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not a network (like 10.1.0.0/16 or fd00::/8)"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{s:?} has no valid prefix length (0 to {max})")),
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parse `GATEWAY_ALLOW_NETWORKS`: comma-separated networks; empty means none.
pub fn parse_networks(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(Cidr::from_str)
        .collect()
}

/// IPv4 ranges that are not the public internet, with the name a refusal gives them. Checked in
/// order, so a narrower range comes before a wider one that contains it.
const REFUSED_V4: &[(Cidr, &str)] = &[
    (Cidr::v4(0, 0, 0, 0, 8), "\"this network\" (0.0.0.0/8)"),
    (Cidr::v4(10, 0, 0, 0, 8), "private (10.0.0.0/8)"),
    (
        Cidr::v4(100, 64, 0, 0, 10),
        "carrier-grade NAT (100.64.0.0/10)",
    ),
    (Cidr::v4(127, 0, 0, 0, 8), "loopback (127.0.0.0/8)"),
    (Cidr::v4(169, 254, 0, 0, 16), "link-local (169.254.0.0/16)"),
    (Cidr::v4(172, 16, 0, 0, 12), "private (172.16.0.0/12)"),
    (
        Cidr::v4(192, 0, 0, 0, 24),
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    (Cidr::v4(192, 0, 2, 0, 24), "documentation (192.0.2.0/24)"),
    (Cidr::v4(192, 88, 99, 0, 24), "6to4 relay (192.88.99.0/24)"),
    (Cidr::v4(192, 168, 0, 0, 16), "private (192.168.0.0/16)"),
    (Cidr::v4(198, 18, 0, 0, 15), "benchmarking (198.18.0.0/15)"),
    (
        Cidr::v4(198, 51, 100, 0, 24),
        "documentation (198.51.100.0/24)",
    ),
    (
        Cidr::v4(203, 0, 113, 0, 24),
        "documentation (203.0.113.0/24)",
    ),
    (Cidr::v4(224, 0, 0, 0, 4), "multicast (224.0.0.0/4)"),
    (
        Cidr::v4(255, 255, 255, 255, 32),
        "broadcast (255.255.255.255)",
    ),
    (Cidr::v4(240, 0, 0, 0, 4), "reserved (240.0.0.0/4)"),
];

/// IPv6 ranges refused even though they are inside global unicast 2000::/3, or that need naming
/// outside it. Anything else outside 2000::/3 is refused as not global unicast.
const REFUSED_V6: &[(Cidr, &str)] = &[
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified (::)"),
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback (::1)"),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (::/96, deprecated)",
    ),
    (
        Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    (
        Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only (100::/64)",
    ),
    (
        Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation (2001:db8::/32)",
    ),
    (
        Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments and Teredo (2001::/23)",
    ),
    (
        Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
        "6to4 (2002::/16)",
    ),
    (
        Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation (3fff::/20)",
    ),
    (
        Cidr::v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "segment routing (5f00::/16)",
    ),
    (
        Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique local (fc00::/7)",
    ),
    (
        Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local (fe80::/10)",
    ),
    (
        Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (fec0::/10, deprecated)",
    ),
    (
        Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "multicast (ff00::/8)",
    ),
];

const GLOBAL_UNICAST_V6: Cidr = Cidr::v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);
const NAT64_V6: Cidr = Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);

/// The name of the non-public range `ip` is in, or `None` for a public unicast address.
/// IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) addresses are judged by the IPv4
/// address they carry.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            let ip = IpAddr::V6(v6);
            if NAT64_V6.contains(ip) {
                let [.., a, b, c, d] = v6.octets();
                return refused_v4(Ipv4Addr::new(a, b, c, d));
            }
            if let Some((_, name)) = REFUSED_V6.iter().find(|(net, _)| net.contains(ip)) {
                return Some(name);
            }
            if !GLOBAL_UNICAST_V6.contains(ip) {
                return Some("not global unicast (outside 2000::/3)");
            }
            None
        }
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    REFUSED_V4
        .iter()
        .find(|(net, _)| net.contains(IpAddr::V4(ip)))
        .map(|(_, name)| *name)
}

/// The addresses of this machine's (this network namespace's) interfaces, read from
/// `/proc/net/fib_trie` and `/proc/net/if_inet6`, re-read at most every few seconds (a container
/// can be attached to another network while it runs). Empty where `/proc` is not there.
pub struct LocalAddresses {
    cache: Mutex<Option<(Instant, std::sync::Arc<Vec<IpAddr>>)>>,
}

const LOCAL_ADDRESSES_TTL: Duration = Duration::from_secs(2);

impl LocalAddresses {
    pub fn new() -> LocalAddresses {
        LocalAddresses {
            cache: Mutex::new(None),
        }
    }

    pub fn get(&self) -> std::sync::Arc<Vec<IpAddr>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, addrs)) = cache.as_ref()
            && at.elapsed() < LOCAL_ADDRESSES_TTL
        {
            return addrs.clone();
        }
        let mut addrs = std::fs::read_to_string("/proc/net/fib_trie")
            .map(|s| parse_fib_trie(&s))
            .unwrap_or_default();
        addrs.extend(
            std::fs::read_to_string("/proc/net/if_inet6")
                .map(|s| parse_if_inet6(&s))
                .unwrap_or_default(),
        );
        addrs.sort();
        addrs.dedup();
        let addrs = std::sync::Arc::new(addrs);
        *cache = Some((Instant::now(), addrs.clone()));
        addrs
    }
}

impl Default for LocalAddresses {
    fn default() -> Self {
        LocalAddresses::new()
    }
}

/// The local IPv4 addresses in `/proc/net/fib_trie`: a `|-- a.b.c.d` leaf followed by a
/// `/32 host LOCAL` line.
fn parse_fib_trie(s: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in s.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(addr) = leaf
        {
            out.push(IpAddr::V4(addr));
        }
    }
    out
}

/// The IPv6 addresses in `/proc/net/if_inet6`: 32 hex digits first on each line.
fn parse_if_inet6(s: &str) -> Vec<IpAddr> {
    s.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|hex| {
            u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32)
        })
        .map(|n| IpAddr::V6(Ipv6Addr::from(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_are_allowed() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(refused_range(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn every_non_public_range_is_refused() {
        for (a, name) in [
            ("0.0.0.0", "\"this network\""),
            ("0.1.2.3", "\"this network\""),
            ("10.0.0.1", "private (10."),
            ("10.255.255.255", "private (10."),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private (172.16."),
            ("172.31.255.255", "private (172.16."),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 relay"),
            ("192.168.1.1", "private (192.168."),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback (::1)"),
            ("::7f00:1", "IPv4-compatible"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("100::1", "discard-only"),
            ("2001::1", "Teredo"),
            ("2001:2::1", "IETF protocol assignments"),
            ("2001:db8::1", "documentation (2001:db8"),
            ("2002:a00:1::1", "6to4"),
            ("3fff::1", "documentation (3fff"),
            ("5f00::1", "segment routing"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("4000::1", "not global unicast"),
            ("1::1", "not global unicast"),
        ] {
            let got = refused_range(ip(a));
            assert!(got.is_some_and(|g| g.contains(name)), "{a}: {got:?}");
        }
    }

    #[test]
    fn ipv4_mapped_and_nat64_addresses_are_judged_by_their_ipv4_address() {
        for (a, name) in [
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:0.0.0.0", "\"this network\""),
            ("::ffff:100.64.0.1", "carrier-grade NAT"),
            ("::ffff:192.168.0.1", "private"),
            ("::ffff:224.0.0.1", "multicast"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b::ac10:1", "private"),
        ] {
            let got = refused_range(ip(a));
            assert!(got.is_some_and(|g| g.contains(name)), "{a}: {got:?}");
        }
    }

    #[test]
    fn networks_parse_and_contain() {
        let nets = parse_networks(" 127.0.0.0/8, fd00::/8 ,10.1.2.3,, ::1").unwrap();
        assert_eq!(nets.len(), 4);
        assert!(nets[0].contains(ip("127.5.6.7")));
        assert!(nets[0].contains(ip("::ffff:127.0.0.1")));
        assert!(!nets[0].contains(ip("128.0.0.1")));
        assert!(nets[1].contains(ip("fd12::1")));
        assert!(!nets[1].contains(ip("fe80::1")));
        assert!(nets[2].contains(ip("10.1.2.3")));
        assert!(!nets[2].contains(ip("10.1.2.4")));
        assert!(nets[3].contains(ip("::1")));
        assert!(!nets[3].contains(ip("127.0.0.1")));
        let all = parse_networks("0.0.0.0/0").unwrap();
        assert!(all[0].contains(ip("1.2.3.4")));
        assert!(!all[0].contains(ip("::2")));
        assert!(parse_networks("::/0").unwrap()[0].contains(ip("fe80::1")));
        assert_eq!(parse_networks("").unwrap(), vec![]);
        assert_eq!(nets[0].to_string(), "127.0.0.0/8");
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "fd00::/129",
            "example.com",
            "10.0.0.0/",
            "10.0.0/8",
        ] {
            assert!(parse_networks(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_addresses_are_read_from_proc() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 4\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
                   \x20          |-- 127.0.0.1\n              /32 host LOCAL\n\
                   \x20       |-- 172.17.255.255\n           /32 link BROADCAST\n\
                   \x20          |-- 172.17.0.1\n              /32 host LOCAL\n";
        assert_eq!(parse_fib_trie(fib), vec![ip("127.0.0.1"), ip("172.17.0.1")]);
        let inet6 = "fe80000000000000004247fffee12b7e 05 40 20 80  docker0\n\
                     00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(
            parse_if_inet6(inet6),
            vec![ip("fe80::42:47ff:fee1:2b7e"), ip("::1")]
        );
        // On Linux the loopback address is always there.
        if std::path::Path::new("/proc/net/fib_trie").exists() {
            assert!(LocalAddresses::new().get().contains(&ip("127.0.0.1")));
        }
    }
}
