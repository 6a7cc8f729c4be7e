//! `X-Hub-Signature-256` verification.
//!
//! GitHub signs the raw body with HMAC-SHA256 under the webhook secret and sends
//! `sha256=<hex>`. The comparison is constant-time (`Mac::verify_slice`), and every configured
//! secret is tried so a secret can be rotated without dropping deliveries in between.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body under any configured secret")]
    Mismatch,
}

/// Check `header` (the raw `X-Hub-Signature-256` value) against `body` under each secret.
pub fn verify(
    secrets: &[SecretString],
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    verify_digest(secrets, &parse_header(header)?, [body])
}

/// The digest a `X-Hub-Signature-256` header names, so a request without a well-formed one is
/// refused before its body is read.
pub fn parse_header(header: Option<&[u8]>) -> Result<[u8; 32], SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut expected).map_err(|_| SignatureError::Malformed)?;
    Ok(expected)
}

/// Check a body, given as its chunks in order, against a digest from [`parse_header`] under
/// each secret.
pub fn verify_digest<'a>(
    secrets: &[SecretString],
    expected: &[u8; 32],
    body: impl IntoIterator<Item = &'a [u8]> + Clone,
) -> Result<(), SignatureError> {
    let matched = secrets.iter().any(|secret| {
        let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        for chunk in body.clone() {
            mac.update(chunk);
        }
        mac.verify_slice(expected).is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `X-Hub-Signature-256` header value for `body` under `secret`: what GitHub sends. Used by the
/// GitHub simulator and the load generator.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<SecretString> {
        values
            .iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect()
    }

    #[test]
    fn matches_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let sig = sign("It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            verify(
                &secrets(&["It's a Secret to Everybody"]),
                Some(sig.as_bytes()),
                b"Hello, World!"
            ),
            Ok(())
        );
    }

    #[test]
    fn a_body_in_chunks_verifies_as_a_whole() {
        let sig = sign("k", b"{\"zen\":\"hi\"}");
        let digest = parse_header(Some(sig.as_bytes())).unwrap();
        let chunks: [&[u8]; 3] = [b"{\"zen\"", b":", b"\"hi\"}"];
        assert_eq!(verify_digest(&secrets(&["k"]), &digest, chunks), Ok(()));
        let reordered: [&[u8]; 3] = [b":", b"{\"zen\"", b"\"hi\"}"];
        assert_eq!(
            verify_digest(&secrets(&["k"]), &digest, reordered),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_rotation_secret_verifies() {
        let sig = sign("new", b"{}");
        assert_eq!(
            verify(&secrets(&["old", "new"]), Some(sig.as_bytes()), b"{}"),
            Ok(())
        );
        assert_eq!(
            verify(&secrets(&["old"]), Some(sig.as_bytes()), b"{}"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rejects_missing_malformed_and_tampered() {
        let s = secrets(&["k"]);
        assert_eq!(verify(&s, None, b"{}"), Err(SignatureError::Missing));
        assert_eq!(
            verify(&s, Some(b"sha1=abc"), b"{}"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&s, Some(b"sha256=zz"), b"{}"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&s, Some(b"sha256="), b"{}"),
            Err(SignatureError::Malformed)
        );
        let sig = sign("k", b"{\"a\":1}");
        assert_eq!(
            verify(&s, Some(sig.as_bytes()), b"{\"a\":2}"),
            Err(SignatureError::Mismatch)
        );
        // Upper-case hex is what some proxies produce; it still decodes to the same digest.
        let upper = format!("sha256={}", sig[7..].to_uppercase());
        assert_eq!(verify(&s, Some(upper.as_bytes()), b"{\"a\":1}"), Ok(()));
    }
}
