//! Everything the egress gateway answers in words. The reader is the agent (or a person reading
//! its log), so each refusal says what was refused and what would change it.

use std::net::IpAddr;

use super::credential::Refusal;

const WHO: &str = "amp-orchestrator egress gateway";

/// The relay's 401 body; the Amp CLI then reports an invalid or missing API key.
pub const RELAY_UNAUTHORIZED: &str = r#"{"error":"invalid or expired credential"}"#;

/// 407: the proxy got no `Proxy-Authorization: Basic …` header.
pub fn proxy_credential_missing() -> String {
    format!(
        "{WHO}: this proxy needs the task's credential (Proxy-Authorization: Basic, as in \
         HTTP_PROXY=http://amp:<credential>@<gateway>:3128); none was sent.\n"
    )
}

/// 407: the proxy got a credential it refuses.
pub fn proxy_credential_refused(why: Refusal) -> String {
    format!("{WHO}: the proxy credential was refused: {why}.\n")
}

/// 403: the client asked for an IP address instead of a host name.
pub fn ip_literal(host: &str) -> String {
    format!(
        "{WHO}: {host} is refused: IP addresses are not allowed, use a host name (one on the \
         allowlist, AGENT_EGRESS_ALLOW).\n"
    )
}

/// 403: the host and port are not on the allowlist.
pub fn not_allowed(host: &str, port: u16) -> String {
    format!(
        "{WHO}: {host}:{port} is not on the allowlist for this task; ask the operator to add it \
         to AGENT_EGRESS_ALLOW (or the repository's egress setting).\n"
    )
}

/// 403: an allowed name resolves to an address that is not on the public internet.
pub fn refused_address(host: &str, port: u16, addr: IpAddr, range: &str) -> String {
    format!(
        "{WHO}: {host}:{port} is refused: it resolves to {addr}, which is {range}, not a public \
         internet address; the operator can open an internal network to agents with \
         GATEWAY_ALLOW_NETWORKS.\n"
    )
}

/// 403: the target is the gateway itself.
pub fn gateway_itself(host: &str, port: u16) -> String {
    format!("{WHO}: {host}:{port} is refused: it is this gateway itself.\n")
}

/// 400: the request's target is not something the proxy forwards.
pub fn bad_target(target: &str) -> String {
    format!(
        "{WHO}: cannot forward to {target:?}: use CONNECT host:port for HTTPS, or an absolute \
         http:// URL for plain HTTP.\n"
    )
}

/// 400: the host is not a valid host name.
pub fn invalid_host() -> String {
    format!(
        "{WHO}: the requested host is not a valid host name (letters, digits, '-', '_' and \
         dots).\n"
    )
}

/// 502: the name did not resolve.
pub fn cannot_resolve(host: &str) -> String {
    format!("{WHO}: {host} could not be resolved.\n")
}

/// 502: no connection could be made to any of the name's addresses.
pub fn unreachable(host: &str, port: u16) -> String {
    format!("{WHO}: {host}:{port} could not be reached.\n")
}

/// 502: the upstream of a plain-HTTP request failed after connecting.
pub fn upstream_failed(host: &str, port: u16) -> String {
    format!("{WHO}: {host}:{port} closed the connection or sent an invalid response.\n")
}

/// 502: the Amp service could not be reached through the relay.
pub fn relay_upstream_failed() -> String {
    format!("{WHO}: the Amp service could not be reached.\n")
}

/// 400: a request to the relay that is not a request for the Amp service.
pub fn relay_bad_request() -> String {
    format!("{WHO}: this request cannot be relayed to the Amp service.\n")
}

/// 431: the request's head is larger than the gateway takes.
pub fn head_too_large(max: usize) -> String {
    format!(
        "{WHO}: the request's headers are larger than {} KiB.\n",
        max / 1024
    )
}

/// 400 on the control port: `/blocked` without `?task=<public id>`.
pub fn control_needs_task() -> String {
    "usage: GET /blocked?task=<public id>\n".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_texts() {
        let all = [
            RELAY_UNAUTHORIZED.to_owned(),
            proxy_credential_missing(),
            proxy_credential_refused(Refusal::Missing),
            proxy_credential_refused(Refusal::Malformed),
            proxy_credential_refused(Refusal::BadSignature),
            proxy_credential_refused(Refusal::Expired),
            ip_literal("169.254.169.254"),
            not_allowed("example.com", 443),
            refused_address(
                "internal.example.com",
                443,
                "10.0.0.7".parse().unwrap(),
                "private (10.0.0.0/8)",
            ),
            gateway_itself("localhost", 3128),
            bad_target("https://example.com/"),
            invalid_host(),
            cannot_resolve("nowhere.example"),
            unreachable("example.com", 443),
            upstream_failed("example.com", 80),
            relay_upstream_failed(),
            relay_bad_request(),
            head_too_large(64 * 1024),
            control_needs_task(),
        ]
        .join("\n---\n");
        insta::assert_snapshot!("gateway_texts", all);
    }
}
