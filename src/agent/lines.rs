//! The agent's output cut into lines, with a bound on each line.
//!
//! The agent is not trusted, and nothing obliges it to print a newline: `yes | tr -d '\n'` is
//! an endless line. Each byte of output is looked at once (never rescanned while a line waits
//! for its end), a line keeps at most [`LINE_MAX`] bytes, and the rest of it is counted and
//! dropped as it arrives, so a line never holds more than that in memory however long it is.

/// The most of one line that is kept. A stream-json line is one message of the agent (text, a
/// tool call, a tool's output, which the real CLI shortens); 64 KiB holds any ordinary one.
pub const LINE_MAX: usize = 64 * 1024;

/// A line of output, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    /// Bytes of the line dropped beyond the cap (0: the line is whole).
    pub dropped: usize,
}

impl Line {
    pub fn is_cut(&self) -> bool {
        self.dropped > 0
    }

    /// The line as the log keeps it: a cut line says so at its end.
    pub fn marked(&self) -> String {
        if self.is_cut() {
            format!("{}… [line cut: {} bytes dropped]", self.text, self.dropped)
        } else {
            self.text.clone()
        }
    }
}

/// Splits a stream of text chunks into [`Line`]s of at most `max` bytes each.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    /// The start of the line being read (at most `max` bytes).
    current: String,
    /// Bytes of the current line dropped so far.
    dropped: usize,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max,
            current: String::new(),
            dropped: 0,
        }
    }

    /// Take in a chunk; the lines it completes are added to `out`.
    pub fn push(&mut self, chunk: &str, out: &mut Vec<Line>) {
        let mut rest = chunk;
        while let Some(pos) = rest.find('\n') {
            self.keep(&rest[..pos]);
            out.push(self.take());
            rest = &rest[pos + 1..];
        }
        self.keep(rest);
    }

    /// The last line, when the output ended without a newline.
    pub fn finish(&mut self) -> Option<Line> {
        (!self.current.is_empty() || self.dropped > 0).then(|| self.take())
    }

    /// Bytes held for the line being read.
    pub fn held(&self) -> usize {
        self.current.len()
    }

    fn keep(&mut self, part: &str) {
        let room = self.max.saturating_sub(self.current.len());
        if part.len() <= room {
            self.current.push_str(part);
            return;
        }
        let mut cut = room;
        while !part.is_char_boundary(cut) {
            cut -= 1;
        }
        self.current.push_str(&part[..cut]);
        self.dropped += part.len() - cut;
    }

    fn take(&mut self) -> Line {
        let mut text = std::mem::take(&mut self.current);
        if text.ends_with('\r') {
            text.pop();
        }
        Line {
            text,
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}

/// The last `max` bytes of a stream (the agent's stderr, kept for a failure's reason).
#[derive(Debug)]
pub struct Tail {
    max: usize,
    kept: String,
    /// Whether anything before what is kept was dropped.
    cut: bool,
}

impl Tail {
    pub fn new(max: usize) -> Tail {
        Tail {
            max,
            kept: String::new(),
            cut: false,
        }
    }

    pub fn push(&mut self, chunk: &str) {
        self.kept.push_str(chunk);
        // Dropped in steps, so a stream of small chunks is not copied once per chunk.
        if self.kept.len() > self.max.saturating_mul(2) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.kept.len() <= self.max {
            return;
        }
        let mut from = self.kept.len() - self.max;
        while !self.kept.is_char_boundary(from) {
            from += 1;
        }
        // From the start of a line: a cut inside a secret would leave a piece masking misses.
        if let Some(newline) = self.kept[from..].find('\n') {
            from += newline + 1;
        }
        self.kept.drain(..from);
        self.cut = true;
    }

    /// What was kept, marked when its start was dropped.
    pub fn into_string(mut self) -> String {
        self.trim();
        if self.cut {
            format!("[… earlier output dropped …] {}", self.kept.trim_start())
        } else {
            self.kept
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&str]) -> Vec<Line> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        out.extend(s.finish());
        out
    }

    fn whole(text: &str) -> Line {
        Line {
            text: text.into(),
            dropped: 0,
        }
    }

    #[test]
    fn lines_across_chunks() {
        assert_eq!(
            split(100, &["a", "b\nc\r\n", "", "\nd"]),
            [whole("ab"), whole("c"), whole(""), whole("d")]
        );
        assert_eq!(split(100, &["x\n"]), [whole("x")]);
        assert!(split(100, &[]).is_empty());
    }

    #[test]
    fn a_long_line_is_cut_and_the_rest_counted() {
        let lines = split(4, &["abcdefgh", "ij\nkl", "mnop\nq"]);
        assert_eq!(
            lines,
            [
                Line {
                    text: "abcd".into(),
                    dropped: 6
                },
                Line {
                    text: "klmn".into(),
                    dropped: 2
                },
                whole("q"),
            ]
        );
        assert_eq!(lines[0].marked(), "abcd… [line cut: 6 bytes dropped]");
        // A character is never split.
        let lines = split(4, &["aéé\n"]);
        assert_eq!(lines[0].text, "aé");
        assert_eq!(lines[0].dropped, 2);
    }

    #[test]
    fn an_endless_line_holds_no_more_than_the_cap() {
        let mut s = LineSplitter::new(LINE_MAX);
        let mut out = Vec::new();
        let chunk = "y".repeat(32 * 1024);
        for _ in 0..1000 {
            s.push(&chunk, &mut out);
            assert!(s.held() <= LINE_MAX);
        }
        assert!(out.is_empty());
        let line = s.finish().unwrap();
        assert_eq!(line.text.len(), LINE_MAX);
        assert_eq!(line.dropped, 1000 * chunk.len() - LINE_MAX);
    }

    #[test]
    fn the_tail_keeps_the_end() {
        let mut t = Tail::new(8);
        t.push("short");
        assert_eq!(Tail::new(8).into_string(), "");
        let mut u = Tail::new(8);
        u.push("short");
        assert_eq!(u.into_string(), "short");
        for _ in 0..100 {
            t.push("0123456789");
        }
        t.push("the end");
        let kept = t.into_string();
        assert!(kept.starts_with("[… earlier output dropped …]"), "{kept}");
        assert!(kept.ends_with("the end"), "{kept}");
        assert!(kept.len() < 60, "{kept}");
        // A cut in the middle of a line drops the rest of that line too.
        let mut lines = Tail::new(12);
        lines.push("token=abcdefgh\nend\n");
        assert_eq!(lines.into_string(), "[… earlier output dropped …] end\n");
    }
}
