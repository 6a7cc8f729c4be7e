//! The file as written: every key it may have, each value with the bytes it spans, so a problem
//! found later can point at it. Unknown keys and wrong types are refused here, by serde.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(super) type Text = Spanned<String>;
pub(super) type List = Spanned<Vec<Text>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub image: Option<Text>,
    pub setup: Option<List>,
    pub setup_failure: Option<Text>,
    pub cache_key: Option<List>,
    pub secrets: Option<List>,
    pub env: Option<Spanned<BTreeMap<Text, Text>>>,
    pub agent: Option<Agent>,
    pub ci: Option<Ci>,
    pub permissions: Option<Permissions>,
    pub paths: Option<Paths>,
    pub egress: Option<Egress>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Agent {
    pub mode: Option<Text>,
    pub instructions: Option<Text>,
    pub turn_timeout: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Ci {
    pub max_rounds: Option<Spanned<i64>>,
    pub wait_timeout: Option<Text>,
    pub required: Option<List>,
    pub ignore: Option<List>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Permissions {
    pub minimum: Option<Text>,
    pub users: Option<List>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Paths {
    pub workdir: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Egress {
    pub allow: Option<List>,
}

/// serde's words for TOML's types, in the words of TOML: an array, a table, an integer. Only
/// what follows the last `expected` is translated (before it may be the file's own text), and the
/// message is put on one line.
pub(super) fn in_toml_words(message: &str) -> String {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some((head, wanted)) = message.rsplit_once("expected ") else {
        return message;
    };
    let wanted = match wanted {
        "a sequence" => "an array",
        "a map" => "a table",
        "i64" => "an integer",
        other => other,
    };
    let head = head.replace("` as i128,", "`,");
    format!("{head}expected {wanted}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_words_become_toml_words() {
        assert_eq!(
            in_toml_words("invalid type: string \"x\", expected a sequence"),
            "invalid type: string \"x\", expected an array"
        );
        assert_eq!(
            in_toml_words("invalid type: integer `9999` as i128, expected i64"),
            "invalid type: integer `9999`, expected an integer"
        );
        assert_eq!(
            in_toml_words("unclosed array,\nexpected `]`"),
            "unclosed array, expected `]`"
        );
    }
}
