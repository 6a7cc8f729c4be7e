//! A problem in the file, at the line and column of the key or value it is about.

use std::fmt;

use super::PATH;

/// One thing wrong with `.github/amp.toml`. `line` and `column` are 1-based; the column counts
/// characters, as editors do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Problem {
    /// A problem at byte `offset` of `text` (clamped to the text, and to the start of the
    /// character it falls in).
    pub fn at(text: &str, offset: usize, message: impl Into<String>) -> Problem {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Problem {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PATH}:{}:{}: {}", self.line, self.column, self.message)
    }
}

/// The problems found while checking one file, each at a byte offset until they are handed out.
pub(super) struct Problems<'a> {
    text: &'a str,
    found: Vec<(usize, String)>,
}

impl<'a> Problems<'a> {
    pub fn new(text: &'a str) -> Self {
        Problems {
            text,
            found: Vec::new(),
        }
    }

    /// A problem with the key or value that starts at byte `offset`.
    pub fn at(&mut self, offset: usize, message: impl Into<String>) {
        self.found.push((offset, message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Every problem, in the order they appear in the file (those at one place in the order
    /// they were found).
    pub fn into_sorted(self) -> Vec<Problem> {
        let mut found = self.found;
        found.sort_by_key(|(offset, _)| *offset);
        found
            .into_iter()
            .map(|(offset, message)| Problem::at(self.text, offset, message))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        let at = |offset| {
            let p = Problem::at(text, offset, "m");
            (p.line, p.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        // `=` on line 2 comes after `bé `: three characters, four bytes.
        assert_eq!(at(10), (2, 4));
        // Inside `é`, and past the end.
        assert_eq!(at(8), (2, 2));
        assert_eq!(at(999), (3, 1));
        assert_eq!(
            Problem::at(text, 6, "is wrong").to_string(),
            ".github/amp.toml:2:1: is wrong"
        );
    }
}
