//! `amp-orchestrator gateway-probe <path>`: one GET to the gateway's control port, for a
//! container image with no shell and no curl (Docker's HEALTHCHECK, and the service's
//! `docker exec … gateway-probe /blocked?task=…`).

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::DEFAULT_CONTROL;

const TIMEOUT: Duration = Duration::from_secs(5);
/// More than any answer of the control port.
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// The address to probe: `GATEWAY_CONTROL` (default 127.0.0.1:3129); an unspecified address
/// (0.0.0.0, ::) means the loopback address.
pub fn control_address(lookup: impl Fn(&str) -> Option<String>) -> Result<SocketAddr, String> {
    let value = lookup("GATEWAY_CONTROL")
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_CONTROL.into());
    let mut addr: SocketAddr = value.trim().parse().map_err(|_| {
        format!("GATEWAY_CONTROL must be an address and port like {DEFAULT_CONTROL}, got {value:?}")
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

/// GET `path` from `addr` with HTTP/1.0; the status code and the body.
pub fn probe(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the path must start with / and have no spaces or control characters: {path:?}"
            ),
        ));
    }
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(invalid)?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_comes_from_gateway_control() {
        assert_eq!(
            control_address(|_| None).unwrap(),
            "127.0.0.1:3129".parse().unwrap()
        );
        assert_eq!(
            control_address(|_| Some("0.0.0.0:9000".into())).unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(
            control_address(|_| Some("[::]:9000".into())).unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert!(control_address(|_| Some("localhost".into())).is_err());
    }

    #[test]
    fn a_bad_path_is_refused_before_connecting() {
        let addr = "127.0.0.1:9".parse().unwrap();
        for bad in ["healthz", "/a b", "/a\r\nX: y"] {
            let e = probe(addr, bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
