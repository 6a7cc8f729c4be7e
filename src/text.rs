//! Small text helpers shared by the failure report, the status page and what the App posts.

/// Remove ANSI escape sequences (colours, cursor moves) from a line.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// At most `max` bytes of `s` (on a character boundary), with ` […]` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} […]", &s[..cut])
}

/// GitHub's closing keywords: followed by an issue reference, they close that issue when the pull
/// request (or a commit on the default branch) is merged.
const CLOSING_KEYWORDS: [&str; 9] = [
    "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved",
];

/// A zero-width joiner: invisible where GitHub renders the text, and it breaks the patterns GitHub
/// acts on.
const JOINER: char = '\u{200D}';

/// Whether `token` (the word after a closing keyword) refers to an issue: `#12`, `GH-12`,
/// `owner/repo#12`, or a URL.
fn is_issue_reference(token: &str) -> bool {
    let lower = token.to_ascii_lowercase();
    let digit_after = |prefix: &str| {
        lower
            .find(prefix)
            .and_then(|i| lower[i + prefix.len()..].chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    };
    lower.starts_with("http")
        || digit_after("#")
        || (lower.starts_with("gh-") && digit_after("gh-"))
}

/// Text someone else wrote (the agent), made inert before the App posts it: `@name` and
/// `@org/team` no longer mention anyone, and a closing keyword followed by an issue reference
/// (`fixes #3`, `Closes: org/repo#3`, `resolves https://…`) no longer closes anything. A zero-width
/// joiner goes after the `@` and inside the keyword; the text reads the same.
pub fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut previous: Option<char> = None;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        // `_` does not count as part of a word here: `_fixes #3_` is emphasis around a keyword.
        let starts_word = previous.is_none_or(|p| !p.is_alphanumeric());
        if c == '@'
            && previous.is_none_or(|p| !(p.is_alphanumeric() || matches!(p, '_' | '-' | '.' | '/')))
            && rest[1..].starts_with(|n: char| n.is_ascii_alphanumeric())
        {
            out.push('@');
            out.push(JOINER);
            rest = &rest[1..];
            previous = Some('@');
            continue;
        }
        if starts_word && c.is_ascii_alphabetic() {
            let word_len = rest
                .find(|w: char| !w.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let word = &rest[..word_len];
            let after = rest[word_len..]
                .strip_prefix(':')
                .unwrap_or(&rest[word_len..]);
            let spaced = after.starts_with(char::is_whitespace);
            let next_token = after.split_whitespace().next().unwrap_or("");
            if CLOSING_KEYWORDS
                .iter()
                .any(|k| k.eq_ignore_ascii_case(word))
                && spaced
                && is_issue_reference(next_token)
            {
                out.push_str(&word[..1]);
                out.push(JOINER);
                out.push_str(&word[1..]);
            } else {
                out.push_str(word);
            }
            previous = word.chars().last();
            rest = &rest[word_len..];
            continue;
        }
        out.push(c);
        previous = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_and_clipping() {
        assert_eq!(strip_ansi("\u{1b}[1;31merror\u{1b}[0m: x"), "error: x");
        assert_eq!(clip("héllo", 2), "h […]");
        assert_eq!(clip("short", 10), "short");
    }

    #[test]
    fn agent_text_is_made_inert() {
        let j = JOINER;
        assert_eq!(
            inert("ping @octocat and @octo-org/admins"),
            format!("ping @{j}octocat and @{j}octo-org/admins")
        );
        assert_eq!(inert("@octocat first"), format!("@{j}octocat first"));
        assert_eq!(
            inert("Closes #4, fixes: #5"),
            format!("C{j}loses #4, f{j}ixes: #5")
        );
        assert_eq!(
            inert("RESOLVES octo-org/other#9"),
            format!("R{j}ESOLVES octo-org/other#9")
        );
        assert_eq!(
            inert("fixed https://github.com/o/r/issues/2"),
            format!("f{j}ixed https://github.com/o/r/issues/2")
        );
        assert_eq!(inert("closes GH-7"), format!("c{j}loses GH-7"));
        assert_eq!(inert("_fixes #3_"), format!("_f{j}ixes #3_"));
        // Ordinary words, addresses and code stay as they are.
        for plain in [
            "This fixes the flaky test.",
            "mail me at dev@example.com",
            "fixtures #1 and prefixes #2",
            "the fix: see below",
            "@ alone, @@, and a trailing @",
            "héllo wörld — fix",
        ] {
            assert_eq!(inert(plain), plain);
        }
    }
}
