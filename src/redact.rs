//! Secrets are removed from every log line before it is stored, shown or published.
//!
//! A [`Redactor`] knows the exact secret values in play (installation tokens, `AMP_API_KEY`, the
//! private key's lines, configured extras) and also catches well-known token shapes it was not
//! told about (GitHub tokens, `sgamp_` keys, `Bearer …`, credentials in URLs).

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

const MASK: &str = "[REDACTED]";

/// How long a secret that expires is still masked after it expires (clocks differ, and a log
/// line may be shown after the fact).
const EXPIRED_GRACE: Duration = Duration::from_secs(60 * 60);

#[derive(Debug)]
struct Known {
    value: String,
    /// When the value stops being a secret worth masking (an installation token's expiry);
    /// `None` for the service's own secrets.
    until: Option<SystemTime>,
}

#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<Known>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a secret value; values shorter than 8 characters are ignored (they would mask ordinary
    /// words). Multi-line values (a PEM key) are added line by line.
    pub fn add(&self, secret: &str) {
        self.remember(secret, None);
    }

    /// Add a GitHub token valid until `expires_at`, with the forms it travels in (git's Basic
    /// credentials, `x-access-token:<token>` in base64); masked until an hour after it expires,
    /// then forgotten, so the list does not grow with every token minted.
    pub fn add_token(&self, token: &str, expires_at: SystemTime) {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        self.remember(token, Some(expires_at));
        self.remember(&basic, Some(expires_at));
    }

    fn remember(&self, secret: &str, until: Option<SystemTime>) {
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        secrets.retain(|known| known.until.is_none_or(|until| until + EXPIRED_GRACE > now));
        for part in secret.lines().map(str::trim) {
            if part.len() >= 8
                && !part.starts_with("-----")
                && !secrets.iter().any(|known| known.value == part)
            {
                secrets.push(Known {
                    value: part.to_string(),
                    until,
                });
            }
        }
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|known| std::cmp::Reverse(known.value.len()));
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for known in self
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if out.contains(known.value.as_str()) {
                out = out.replace(known.value.as_str(), MASK);
            }
        }
        redact_shapes(&out)
    }

    #[cfg(test)]
    fn known(&self) -> usize {
        self.secrets.read().unwrap().len()
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Mask tokens by their well-known shapes.
fn redact_shapes(text: &str) -> String {
    const PREFIXES: [&str; 7] = [
        "ghs_",
        "ghp_",
        "gho_",
        "ghu_",
        "ghr_",
        "github_pat_",
        "sgamp_",
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for prefix in PREFIXES {
            if rest.starts_with(prefix) {
                let len = prefix.len()
                    + rest[prefix.len()..]
                        .find(|c: char| !is_token_char(c))
                        .unwrap_or(rest.len() - prefix.len());
                if len >= prefix.len() + 8 {
                    out.push_str(MASK);
                    rest = &rest[len..];
                    continue 'outer;
                }
            }
        }
        // Credentials in a URL: scheme://user:password@host. The user part ends at the first
        // `@`, and has no `/` or space before it; looking no further than that keeps a line
        // full of `://` from being searched to its end once for each.
        if rest.starts_with("://")
            && let Some(at) = rest[3..].find(['@', '/', ' ', '\n'])
            && rest.as_bytes()[3 + at] == b'@'
        {
            let userinfo = &rest[3..3 + at];
            if userinfo.contains(':') {
                out.push_str("://");
                out.push_str(MASK);
                out.push('@');
                rest = &rest[3 + at + 1..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix("Bearer ") {
            let len = after
                .find(|c: char| c.is_whitespace())
                .unwrap_or(after.len());
            if len >= 8 {
                out.push_str("Bearer ");
                out.push_str(MASK);
                rest = &after[len..];
                continue;
            }
        }
        let mut chars = rest.chars();
        let c = chars.next().unwrap_or_default();
        out.push(c);
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_and_token_shapes_are_masked() {
        let r = Redactor::new();
        r.add("sk-very-secret-value");
        r.add("short");
        r.add("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx1\nabcdefghijklmnop\n-----END RSA PRIVATE KEY-----");
        let cases = [
            ("key is sk-very-secret-value.", "key is [REDACTED]."),
            ("short stays", "short stays"),
            ("line abcdefghijklmnop here", "line [REDACTED] here"),
            (
                "token ghs_16C7e42F292c6912E7710c838347Ae178B4a ok",
                "token [REDACTED] ok",
            ),
            ("AMP_API_KEY=sgamp_user_01ABCDEF", "AMP_API_KEY=[REDACTED]"),
            (
                "remote: https://x-access-token:ghx123456789@github.com/o/r.git",
                "remote: https://[REDACTED]@github.com/o/r.git",
            ),
            (
                "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.x.y",
                "Authorization: Bearer [REDACTED]",
            ),
            ("ghs_ is not a token", "ghs_ is not a token"),
            (
                "email me: a@b.c, see https://example.com/x@y",
                "email me: a@b.c, see https://example.com/x@y",
            ),
            ("ünïcödé ✓ stays", "ünïcödé ✓ stays"),
        ];
        for (input, expected) in cases {
            assert_eq!(r.redact(input), expected, "{input}");
        }
    }

    #[test]
    fn tokens_are_masked_in_their_git_form_and_forgotten_after_expiry() {
        let r = Redactor::new();
        // A token of no well-known shape, so only its registration can mask it.
        let token = "v1.0123456789abcdef0123456789abcdef01234567";
        r.add_token(token, SystemTime::now() + Duration::from_secs(3600));
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        assert_eq!(r.redact(&format!("t={token}")), "t=[REDACTED]");
        assert_eq!(
            r.redact(&format!("AUTHORIZATION: basic {basic}")),
            "AUTHORIZATION: basic [REDACTED]"
        );
        assert_eq!(r.known(), 2);
        // Long expired tokens are dropped when the next one comes.
        let old = SystemTime::now() - EXPIRED_GRACE - Duration::from_secs(1);
        r.add_token("v1.expired-token-0123456789", old);
        r.add_token("v1.another-token-0123456789", SystemTime::now());
        assert_eq!(
            r.known(),
            4,
            "the expired token and its git form are forgotten"
        );
        r.add("kept-forever-secret");
        assert_eq!(r.redact("kept-forever-secret"), "[REDACTED]");
    }

    #[test]
    fn a_line_full_of_url_starts_is_read_once() {
        let r = Redactor::new();
        let line = "x://a:b".repeat(20_000) + " @host";
        assert_eq!(r.redact(&line), line);
        let line = "://".repeat(30_000);
        assert_eq!(r.redact(&line), line);
        let line = "x://a:b".repeat(20_000) + "@host";
        assert!(r.redact(&line).ends_with("x://[REDACTED]@host"));
    }
}
