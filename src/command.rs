//! The `/amp` commands in a GitHub comment.
//!
//! People write comments in Markdown. The parser has to tell apart a command
//! the author *gives* from one they only *show*: quoted from someone else,
//! pasted in a code block, or explained in inline code. So it follows just
//! enough CommonMark to skip fenced code, indented code and block quotes. It
//! does not try to render Markdown fully. A missed command costs a retype. A
//! wrong one can start an agent run, which costs money and pushes commits.
//!
//! Rules, line by line (after `\r\n` and lone `\r` become `\n`):
//!
//! * A command line starts, after at most three spaces, with `/amp` in any
//!   case. After that comes the end of the line or whitespace
//!   ([`char::is_whitespace`], so a no-break space also counts). `/ampere`,
//!   `/amp-x` and `see /amp fix` are not commands.
//! * Lines in fenced code (```` ``` ```` or `~~~`), indented code (four
//!   columns or more, where a tab counts as a tab stop) and block quotes (`>`)
//!   are never commands.
//! * `/amp stop`, `/amp retry`, `/amp status`, `/amp help` and `/amp config`
//!   are control commands when the word stands alone on its line. A bare `/amp` is
//!   [`Command::Help`].
//! * Any other `/amp …` is a [`Command::Prompt`]. It runs to the end of the
//!   comment, so nothing after it is parsed.
//!
//! The work takes time linear in the size of the body. Each line is looked at
//! once, and the prompt is cut out of the body in one slice.

use std::borrow::Cow;

/// One request that a user made in a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/amp <text>`: run the agent on `<text>`.
    ///
    /// The text is everything from after `/amp` to the end of the comment,
    /// with the ends trimmed and line endings changed to `\n`. The text runs
    /// to the end so that people can write a long, detailed request (lists,
    /// code blocks, even a line that quotes `/amp stop`) without special
    /// syntax. The text is never empty, since a bare `/amp` is
    /// [`Command::Help`].
    Prompt(String),
    /// `/amp stop`: cancel the agent run on this issue or pull request.
    Stop,
    /// `/amp retry`: run the last prompt again, for example after a flaky
    /// failure.
    Retry,
    /// `/amp status`: report what the agent is doing.
    Status,
    /// `/amp help` or a bare `/amp`: explain the commands. A bare `/amp`
    /// means help because someone who types only the trigger most likely
    /// wants to learn what it does. Running an agent with an empty prompt
    /// would help nobody.
    Help,
    /// `/amp config`: show the repository's effective configuration (its
    /// `.github/amp.toml` on the default branch, over the service's defaults)
    /// and any problem with the file.
    Config,
    /// `/amp config --rebuild`: remove the repository's setup snapshots, so
    /// the next task runs its setup from the start.
    Rebuild,
}

impl Command {
    /// The command's stable lowercase name (`"prompt"`, `"stop"`, `"retry"`,
    /// `"status"`, `"help"`, `"config"` or `"rebuild"`).
    ///
    /// Logs, metrics and replies use this name. It never contains the prompt
    /// text, which can be long and may be private.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Prompt(_) => "prompt",
            Command::Stop => "stop",
            Command::Retry => "retry",
            Command::Status => "status",
            Command::Help => "help",
            Command::Config => "config",
            Command::Rebuild => "rebuild",
        }
    }
}

/// All commands in a comment body, in order.
///
/// The result can hold several control commands (`/amp status` then
/// `/amp stop` gives both, in that order). It holds at most one
/// [`Command::Prompt`], which is always last, because a prompt runs to the end
/// of the comment. An empty or blank body gives no commands.
pub fn parse(body: &str) -> Vec<Command> {
    let body = normalize_line_endings(body);
    let mut commands = Vec::new();
    let mut open_fence: Option<Fence> = None;
    let mut line_start = 0;

    for line in body.split('\n') {
        let this_line_start = line_start;
        line_start += line.len() + 1;

        let (columns, indent_bytes) = indentation(line);
        let text = &line[indent_bytes..];

        if let Some(fence) = open_fence {
            // Everything up to the matching closing fence is code. If the fence
            // never closes, the rest of the comment is code, as in CommonMark.
            if fence.is_closed_by(columns, text) {
                open_fence = None;
            }
            continue;
        }
        if columns >= 4 {
            // Indented code block. Checked before fences, because an indented
            // ``` is code content and does not open a fence.
            continue;
        }
        if let Some(fence) = Fence::open(text) {
            open_fence = Some(fence);
            continue;
        }
        if text.starts_with('>') {
            // A block quote, usually someone else's words quoted in a reply. A
            // fence inside a quote ends with the quote, so the quote's lines
            // must not change `open_fence`. Returning here makes sure of that.
            continue;
        }
        let Some(args) = strip_trigger(text) else {
            continue;
        };
        match control_command(args.trim()) {
            Some(control) => commands.push(control),
            None => {
                // The prompt is the rest of this line plus every later line. It
                // is cut from the body in one slice, which keeps long prompts
                // cheap and keeps their inner indentation.
                let prompt_start = this_line_start + indent_bytes + TRIGGER.len();
                commands.push(Command::Prompt(body[prompt_start..].trim().to_owned()));
                break;
            }
        }
    }
    commands
}

/// Commands in an edited comment that were not already in the previous body
/// (multiset difference: a command present once before and twice now counts
/// once).
///
/// GitHub sends the whole new body when a comment is edited. Fixing a typo in
/// the prose must not start the same prompt again, or stop a run a second
/// time. So only commands that the edit added count. Each command in
/// `previous` cancels one equal command in `current`. Whatever is left comes
/// back in the order it has in `current`. Prompts are compared by their
/// trimmed, newline-normalized text. A changed prompt is therefore new, but
/// added trailing whitespace or a change from CRLF to LF is not.
pub fn new_commands(previous: &str, current: &str) -> Vec<Command> {
    let mut already_there = Tally::of(parse(previous));
    parse(current)
        .into_iter()
        .filter(|command| !already_there.take(command))
        .collect()
}

/// The trigger word. It is ASCII, so matching it on bytes is safe.
const TRIGGER: &str = "/amp";

/// Changes `\r\n` and lone `\r` to `\n`, so that the rest of the parser and the
/// prompts that come out only ever see `\n`.
///
/// Browsers send CRLF in form posts, and a lone `\r` is a line ending in
/// CommonMark. Bodies without `\r` (the usual case) are borrowed, not copied.
fn normalize_line_endings(body: &str) -> Cow<'_, str> {
    if !body.contains('\r') {
        return Cow::Borrowed(body);
    }
    let mut normalized = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(cr) = rest.find('\r') {
        normalized.push_str(&rest[..cr]);
        normalized.push('\n');
        rest = &rest[cr + 1..];
        rest = rest.strip_prefix('\n').unwrap_or(rest);
    }
    normalized.push_str(rest);
    Cow::Owned(normalized)
}

/// The indentation of `line` as `(columns, bytes)`.
///
/// Only spaces and tabs count, as in CommonMark. A tab moves to the next
/// multiple of four columns, so any tab in the first four columns makes the
/// line indented code. Other whitespace, such as a leading no-break space, is
/// text, so a line that starts with one is not a command.
fn indentation(line: &str) -> (usize, usize) {
    let mut columns = 0;
    let mut bytes = 0;
    for byte in line.bytes() {
        match byte {
            b' ' => columns += 1,
            b'\t' => columns += 4 - columns % 4,
            _ => break,
        }
        bytes += 1;
    }
    (columns, bytes)
}

/// An open fenced code block: its marker byte (`` ` `` or `~`) and how many
/// markers opened it.
#[derive(Debug, Clone, Copy)]
struct Fence {
    marker: u8,
    len: usize,
}

impl Fence {
    /// Whether `text` (a line with at most three columns of indentation
    /// removed) opens a fence.
    ///
    /// A fence starts with at least three backticks or tildes. The info string
    /// of a backtick fence may not contain a backtick. Without that rule,
    /// ```` ```x` ```` (inline code) would open a fence and hide the rest of
    /// the comment.
    fn open(text: &str) -> Option<Fence> {
        let marker = *text.as_bytes().first()?;
        if marker != b'`' && marker != b'~' {
            return None;
        }
        let len = run_length(text, marker);
        if len < 3 || (marker == b'`' && text[len..].contains('`')) {
            return None;
        }
        Some(Fence { marker, len })
    }

    /// Whether a line closes this fence. The line needs at most three columns
    /// of indentation, at least as many of the same marker, and then only
    /// spaces or tabs.
    ///
    /// So a longer fence can hold a shorter one, and a `~~~` block can hold
    /// ```` ``` ````. People use both to post examples that contain fences.
    fn is_closed_by(self, columns: usize, text: &str) -> bool {
        if columns >= 4 {
            return false;
        }
        let len = run_length(text, self.marker);
        len >= self.len
            && text[len..]
                .bytes()
                .all(|byte| byte == b' ' || byte == b'\t')
    }
}

/// How many times `byte` (ASCII) repeats at the start of `text`.
fn run_length(text: &str, byte: u8) -> usize {
    text.bytes().take_while(|&b| b == byte).count()
}

/// If `text` starts with the trigger, returns what follows it.
///
/// After the trigger there must be the end of the line or a whitespace
/// character. This keeps `/ampere`, `/amp-x` and `/amp:` from counting. The
/// match ignores case, since `/AMP` on a phone keyboard is still a clear
/// request.
fn strip_trigger(text: &str) -> Option<&str> {
    let head = text.as_bytes().get(..TRIGGER.len())?;
    if !head.eq_ignore_ascii_case(TRIGGER.as_bytes()) {
        return None;
    }
    // The matched bytes are ASCII, so this index is on a char boundary.
    let rest = &text[TRIGGER.len()..];
    rest.chars()
        .next()
        .is_none_or(char::is_whitespace)
        .then_some(rest)
}

/// The control command for the trimmed text after `/amp`, if it is one.
///
/// Only a control word on its own counts. `/amp stop the tests from timing
/// out` is a real request to the agent, not a request to cancel.
fn control_command(args: &str) -> Option<Command> {
    const CONTROLS: [(&str, Command); 5] = [
        ("stop", Command::Stop),
        ("retry", Command::Retry),
        ("status", Command::Status),
        ("help", Command::Help),
        ("config", Command::Config),
    ];
    if args.is_empty() {
        return Some(Command::Help);
    }
    let mut words = args.split_whitespace();
    if let (Some(config), Some(flag), None) = (words.next(), words.next(), words.next())
        && config.eq_ignore_ascii_case("config")
        && flag.eq_ignore_ascii_case("--rebuild")
    {
        return Some(Command::Rebuild);
    }
    CONTROLS
        .into_iter()
        .find(|(word, _)| args.eq_ignore_ascii_case(word))
        .map(|(_, command)| command)
}

/// The commands of the previous body, counted so they can be crossed off.
///
/// Controls are plain counters, so the multiset difference stays linear even
/// for a comment full of `/amp stop` lines. Prompts go in a list. `parse`
/// returns at most one prompt, so searching that list is cheap. `Command` has
/// no `Hash` derive, so a `HashMap` is not an option.
#[derive(Default)]
struct Tally {
    prompts: Vec<String>,
    stop: usize,
    retry: usize,
    status: usize,
    help: usize,
    config: usize,
    rebuild: usize,
}

impl Tally {
    fn of(commands: Vec<Command>) -> Tally {
        let mut tally = Tally::default();
        for command in commands {
            match command {
                Command::Prompt(text) => tally.prompts.push(text),
                Command::Stop => tally.stop += 1,
                Command::Retry => tally.retry += 1,
                Command::Status => tally.status += 1,
                Command::Help => tally.help += 1,
                Command::Config => tally.config += 1,
                Command::Rebuild => tally.rebuild += 1,
            }
        }
        tally
    }

    /// Crosses off one copy of `command` and returns `true` if a copy was
    /// still there.
    fn take(&mut self, command: &Command) -> bool {
        let count = match command {
            Command::Prompt(text) => {
                let Some(index) = self.prompts.iter().position(|p| p == text) else {
                    return false;
                };
                self.prompts.swap_remove(index);
                return true;
            }
            Command::Stop => &mut self.stop,
            Command::Retry => &mut self.retry,
            Command::Status => &mut self.status,
            Command::Help => &mut self.help,
            Command::Config => &mut self.config,
            Command::Rebuild => &mut self.rebuild,
        };
        if *count == 0 {
            return false;
        }
        *count -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command::{Help, Retry, Status, Stop};

    fn prompt(text: &str) -> Command {
        Command::Prompt(text.to_owned())
    }

    /// The body of the 64 KiB prompt case: many lines with multi-byte
    /// characters, fences and `/amp` lines. After the prompt starts, all of it
    /// must come back unchanged.
    fn big_prompt_text() -> String {
        let chunk = "line with 🚀, 修复 and עברית\n```\n/amp stop\n> quoted\n    indented\n";
        let mut text = String::with_capacity(64 * 1024 + chunk.len());
        text.push_str("rewrite the parser");
        while text.len() < 64 * 1024 {
            text.push('\n');
            text.push_str(chunk.trim_end());
        }
        text
    }

    /// `(name, body, expected)` cases for [`parse`].
    fn parse_cases() -> Vec<(&'static str, String, Vec<Command>)> {
        let big = big_prompt_text();
        let cases: Vec<(&str, &str, Vec<Command>)> = vec![
            // Nothing there.
            ("empty body", "", vec![]),
            ("only whitespace", " \n\t\n  \r\n\u{a0}\n", vec![]),
            ("prose without commands", "LGTM, thanks!", vec![]),
            // Prompts.
            (
                "plain prompt",
                "/amp fix the failing test",
                vec![prompt("fix the failing test")],
            ),
            (
                "prompt after prose",
                "Thanks!\n\n/amp fix it",
                vec![prompt("fix it")],
            ),
            (
                "multi-line prompt keeps inner indentation",
                "/amp fix the bug\nin parser.rs:\n\n  - keep this indent\n\n",
                vec![prompt("fix the bug\nin parser.rs:\n\n  - keep this indent")],
            ),
            (
                "prompt is trimmed",
                "/amp    fix it   \n \n\t",
                vec![prompt("fix it")],
            ),
            ("tab separator", "/amp\tfix it", vec![prompt("fix it")]),
            (
                "config --rebuild",
                "/amp config --rebuild",
                vec![Command::Rebuild],
            ),
            (
                "config --rebuild in any case and spacing",
                "/AMP  Config\t--REBUILD ",
                vec![Command::Rebuild],
            ),
            (
                "config with other words is a prompt",
                "/amp config --rebuild the parser",
                vec![prompt("config --rebuild the parser")],
            ),
            (
                "prompt includes code fences verbatim",
                "/amp apply this:\n```diff\n- a\n+ b\n```\n",
                vec![prompt("apply this:\n```diff\n- a\n+ b\n```")],
            ),
            (
                "prompt followed by /amp stop includes it",
                "/amp fix it\n/amp stop",
                vec![prompt("fix it\n/amp stop")],
            ),
            (
                "bare /amp then text on the next line is help",
                "/amp\nfix it",
                vec![Help],
            ),
            // Line endings.
            (
                "CRLF prompt",
                "/amp fix\r\nthe bug\r\n",
                vec![prompt("fix\nthe bug")],
            ),
            (
                "CRLF controls",
                "/amp stop\r\n/amp status\r\n",
                vec![Stop, Status],
            ),
            ("CRLF bare trigger", "/amp\r\n", vec![Help]),
            (
                "lone CR",
                "/amp status\r/amp fix\rthe bug\r",
                vec![Status, prompt("fix\nthe bug")],
            ),
            (
                "mixed line endings",
                "hi\r\n/amp x\ry\nz\r\n",
                vec![prompt("x\ny\nz")],
            ),
            (
                "CR CR LF is two line breaks",
                "/amp a\r\r\nb",
                vec![prompt("a\n\nb")],
            ),
            (
                "CRLF inside fence",
                "```\r\n/amp stop\r\n```\r\n/amp retry",
                vec![Retry],
            ),
            // Indentation.
            ("one leading space", " /amp fix", vec![prompt("fix")]),
            ("two leading spaces", "  /amp fix", vec![prompt("fix")]),
            ("three leading spaces", "   /amp fix", vec![prompt("fix")]),
            ("four spaces is indented code", "    /amp fix", vec![]),
            ("tab is indented code", "\t/amp fix", vec![]),
            ("spaces then tab is indented code", "  \t/amp fix", vec![]),
            (
                "indented code then command",
                "    /amp stop\n/amp retry",
                vec![Retry],
            ),
            ("leading NBSP is not indentation", "\u{a0}/amp fix", vec![]),
            // The trigger word.
            (
                "uppercase trigger",
                "/AMP Fix the Bug",
                vec![prompt("Fix the Bug")],
            ),
            ("mixed case trigger and control", "/Amp STOP", vec![Stop]),
            ("/ampere", "/ampere is a unit", vec![]),
            ("/amp-x", "/amp-x fix", vec![]),
            ("/amp followed by punctuation", "/amp: fix it", vec![]),
            ("too short", "/am", vec![]),
            ("mid-sentence", "please /amp fix this", vec![]),
            ("list item", "- /amp fix", vec![]),
            ("html comment", "<!-- /amp fix -->", vec![]),
            // Inline code and block quotes.
            ("inline code", "`/amp fix`", vec![]),
            ("inline code mid-sentence", "use `/amp fix` to ask", vec![]),
            ("block quote", "> /amp fix", vec![]),
            ("block quote without space", ">/amp stop", vec![]),
            ("indented block quote", "   > /amp fix", vec![]),
            ("nested quote", "> > /amp fix", vec![]),
            ("nested quote without spaces", ">> /amp stop", vec![]),
            (
                "quote then command",
                "> /amp fix\n\n/amp retry",
                vec![Retry],
            ),
            (
                "fence inside quote does not leak",
                "> ```\n/amp stop",
                vec![Stop],
            ),
            // Fenced code.
            ("backtick fence", "```\n/amp fix\n```", vec![]),
            (
                "backtick fence with info string",
                "```sh\n/amp fix\n```\n/amp status",
                vec![Status],
            ),
            ("tilde fence", "~~~\n/amp fix\n~~~\n/amp stop", vec![Stop]),
            (
                "longer fence holds a shorter one",
                "````\n```\n/amp fix\n```\n/amp stop\n````\n/amp retry",
                vec![Retry],
            ),
            (
                "backticks do not close a tilde fence",
                "~~~\n/amp a\n```\n/amp b\n~~~\n/amp status",
                vec![Status],
            ),
            (
                "longer closing fence",
                "```\n/amp a\n`````\n/amp stop",
                vec![Stop],
            ),
            (
                "closing fence with info string does not close",
                "```\n/amp a\n``` rust\n/amp b\n```\n/amp stop",
                vec![Stop],
            ),
            (
                "closing fence with trailing spaces",
                "```\n/amp a\n```  \t\n/amp stop",
                vec![Stop],
            ),
            (
                "fences indented up to three spaces",
                "   ```\n/amp a\n  ```\n/amp stop",
                vec![Stop],
            ),
            (
                "fence indented four spaces is not a fence",
                "    ```\n/amp stop",
                vec![Stop],
            ),
            (
                "closing fence indented four spaces does not close",
                "```\n    ```\n/amp stop",
                vec![],
            ),
            ("unclosed fence", "```\n/amp fix\n\n/amp stop", vec![]),
            (
                "unclosed fence after a command",
                "/amp status\n~~~\n/amp stop",
                vec![Status],
            ),
            ("two backticks are not a fence", "``\n/amp stop", vec![Stop]),
            (
                "backtick in info string is not a fence",
                "``` a`b\n/amp stop",
                vec![Stop],
            ),
            (
                "tilde info string may contain a backtick",
                "~~~ a`b\n/amp stop",
                vec![],
            ),
            // Control commands.
            ("stop", "/amp stop", vec![Stop]),
            ("retry", "/amp retry", vec![Retry]),
            ("status", "/amp status", vec![Status]),
            ("help", "/amp help", vec![Help]),
            (
                "control with surrounding whitespace",
                "  /amp   stop \t ",
                vec![Stop],
            ),
            ("control with tab separator", "/amp\tretry", vec![Retry]),
            (
                "control word plus words is a prompt",
                "/amp stop please",
                vec![prompt("stop please")],
            ),
            (
                "control word plus punctuation is a prompt",
                "/amp stop.",
                vec![prompt("stop.")],
            ),
            ("bare /amp is help", "/amp", vec![Help]),
            ("/amp with trailing spaces is help", "/amp   ", vec![Help]),
            ("/amp with trailing tab is help", "/amp\t", vec![Help]),
            (
                "several controls",
                "/amp status\n/amp stop",
                vec![Status, Stop],
            ),
            (
                "controls with prose between",
                "/amp status\nsome text\n\n/amp retry",
                vec![Status, Retry],
            ),
            ("repeated control", "/amp stop\n/amp stop", vec![Stop, Stop]),
            (
                "control then prompt",
                "/amp status\n/amp fix the bug\nmore",
                vec![Status, prompt("fix the bug\nmore")],
            ),
            // Unicode.
            (
                "emoji and CJK prompt",
                "/amp 修复这个错误 🐛 please",
                vec![prompt("修复这个错误 🐛 please")],
            ),
            (
                "RTL prompt",
                "/amp תקן את הבאג",
                vec![prompt("תקן את הבאג")],
            ),
            ("emoji-only prompt", "/amp 🚀", vec![prompt("🚀")]),
            ("NBSP separator", "/amp\u{a0}fix it", vec![prompt("fix it")]),
            ("NBSP around control", "/amp\u{a0}stop\u{a0}", vec![Stop]),
            (
                "ideographic space separator",
                "/amp\u{3000}修复",
                vec![prompt("修复")],
            ),
            ("multi-byte char right after trigger", "/ampé fix", vec![]),
            ("emoji right after trigger", "/amp🚀", vec![]),
            (
                "zero-width space is not whitespace",
                "/amp\u{200b}fix",
                vec![],
            ),
            ("multi-byte char in first four bytes", "/a€", vec![]),
            ("emoji before trigger", "🚀 /amp fix", vec![]),
        ];
        let mut cases: Vec<(&str, String, Vec<Command>)> = cases
            .into_iter()
            .map(|(name, input, expected)| (name, input.to_owned(), expected))
            .collect();
        cases.push((
            "64 KiB prompt",
            format!("/amp {big}\r\n"),
            vec![Command::Prompt(big.clone())],
        ));
        cases.push((
            "64 KiB prompt with CRLF",
            format!("/amp {}", big.replace('\n', "\r\n")),
            vec![Command::Prompt(big)],
        ));
        cases
    }

    #[test]
    fn parse_table() {
        let mut failures = Vec::new();
        for (name, input, expected) in parse_cases() {
            let actual = parse(&input);
            if actual != expected {
                failures.push(format!(
                    "{name}:\n  input:    {input:?}\n  expected: {expected:?}\n  actual:   {actual:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn prompts_never_contain_carriage_returns_or_outer_whitespace() {
        for (name, input, _) in parse_cases() {
            for command in parse(&input) {
                if let Command::Prompt(text) = command {
                    assert!(!text.contains('\r'), "{name}: prompt has \\r");
                    assert!(!text.is_empty(), "{name}: empty prompt");
                    assert_eq!(text.trim(), text, "{name}: prompt not trimmed");
                }
            }
        }
    }

    #[test]
    fn prompt_is_always_last() {
        for (name, input, _) in parse_cases() {
            let commands = parse(&input);
            let prompts = commands
                .iter()
                .filter(|c| matches!(c, Command::Prompt(_)))
                .count();
            assert!(prompts <= 1, "{name}: {prompts} prompts");
            if prompts == 1 {
                assert!(
                    matches!(commands.last(), Some(Command::Prompt(_))),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn new_commands_table() {
        let cases: Vec<(&str, &str, &str, Vec<Command>)> = vec![
            ("both empty", "", "", vec![]),
            (
                "command added to a plain comment",
                "thanks",
                "thanks\n/amp fix it",
                vec![prompt("fix it")],
            ),
            (
                "edit adds a new command",
                "/amp status",
                "/amp status\n/amp stop",
                vec![Stop],
            ),
            (
                "edit keeps the same control",
                "/amp stop",
                "/amp stop\n\nthanks!",
                vec![],
            ),
            (
                "edit keeps the same prompt",
                "/amp fix it",
                "Hi,\n/amp fix it\n\n",
                vec![],
            ),
            (
                "prompt only changes line endings",
                "/amp fix\r\nit",
                "/amp fix\nit",
                vec![],
            ),
            (
                "edit changes the prompt text",
                "/amp fix the bug",
                "/amp fix the bug in parser.rs",
                vec![prompt("fix the bug in parser.rs")],
            ),
            ("edit removes a command", "/amp stop", "", vec![]),
            (
                "command moved out of a code block",
                "```\n/amp retry\n```",
                "/amp retry",
                vec![Retry],
            ),
            (
                "command moved into a code block",
                "/amp retry",
                "```\n/amp retry\n```",
                vec![],
            ),
            (
                "command moved out of a quote",
                "> /amp fix it",
                "/amp fix it",
                vec![prompt("fix it")],
            ),
            (
                "duplicate: once before, twice now",
                "/amp stop",
                "/amp stop\n/amp stop",
                vec![Stop],
            ),
            (
                "duplicates among others keep current order",
                "/amp stop",
                "/amp stop\n/amp status\n/amp stop\n/amp stop",
                vec![Status, Stop, Stop],
            ),
            (
                "fewer copies than before",
                "/amp stop\n/amp stop",
                "/amp stop",
                vec![],
            ),
            (
                "control added before an unchanged prompt",
                "/amp fix it",
                "/amp stop\n/amp fix it",
                vec![Stop],
            ),
            (
                "control became a prompt",
                "/amp stop",
                "/amp stop now",
                vec![prompt("stop now")],
            ),
            (
                "prompt became a control",
                "/amp stop now",
                "/amp stop",
                vec![Stop],
            ),
            (
                "bare trigger added",
                "/amp status",
                "/amp status\n/amp",
                vec![Help],
            ),
            (
                "help spelled two ways is the same",
                "/amp",
                "/amp help",
                vec![],
            ),
        ];
        let mut failures = Vec::new();
        for (name, previous, current, expected) in cases {
            let actual = new_commands(previous, current);
            if actual != expected {
                failures.push(format!(
                    "{name}:\n  previous: {previous:?}\n  current:  {current:?}\n  expected: {expected:?}\n  actual:   {actual:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn new_commands_of_unchanged_body_is_empty() {
        for (name, input, _) in parse_cases() {
            assert_eq!(new_commands(&input, &input), vec![], "{name}");
        }
    }

    #[test]
    fn new_commands_from_empty_previous_equals_parse() {
        for (name, input, expected) in parse_cases() {
            assert_eq!(new_commands("", &input), expected, "{name}");
        }
    }

    #[test]
    fn many_controls_in_a_large_body() {
        // 64 KiB of control lines between fences. This exercises the per-line
        // path and the counting in `new_commands` at full comment size.
        let block = "/amp stop\n```\n/amp retry\n```\n/amp status\n";
        let body = block.repeat(64 * 1024 / block.len() + 1);
        let n = body.matches(block).count();
        let commands = parse(&body);
        assert_eq!(commands.len(), 2 * n);
        assert!(commands.chunks(2).all(|pair| pair == [Stop, Status]));
        assert_eq!(new_commands(&body, &body), vec![]);
        let added = format!("{body}/amp stop\n");
        assert_eq!(new_commands(&body, &added), vec![Stop]);
    }

    #[test]
    fn names() {
        let cases = [
            (prompt("anything"), "prompt"),
            (Stop, "stop"),
            (Retry, "retry"),
            (Status, "status"),
            (Help, "help"),
        ];
        for (command, name) in cases {
            assert_eq!(command.name(), name, "{command:?}");
        }
    }
}
