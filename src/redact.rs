//! Secrets are removed from every log line before it is stored, shown or published.
//!
//! A [`Redactor`] knows the exact secret values in play (installation tokens, `AMP_API_KEY`, the
//! private key's lines, configured extras) and also catches well-known token shapes it was not
//! told about (GitHub tokens, `sgamp_` keys, `Bearer …`, credentials in URLs).

use std::sync::RwLock;

const MASK: &str = "[REDACTED]";

#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a secret value; values shorter than 8 characters are ignored (they would mask ordinary
    /// words). Multi-line values (a PEM key) are added line by line.
    pub fn add(&self, secret: &str) {
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        for part in secret.lines().map(str::trim) {
            if part.len() >= 8 && !part.starts_with("-----") && !secrets.iter().any(|s| s == part) {
                secrets.push(part.to_string());
            }
        }
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        redact_shapes(&out)
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
