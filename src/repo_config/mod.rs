//! A repository's own configuration, `.github/amp.toml` on its default branch: its text turned
//! into validated values, or into every problem found, each with its line and column; and the
//! effective configuration, those values within the operator's bounds, with the service's
//! defaults for the rest. Everything but `source` is pure; applying the values happens where
//! each is used.
//!
//! - `file`: the keys the file may have, as serde reads them (unknown keys and wrong types);
//! - `rules` and `check`: what each value must be, and the operator's bounds ([`Bounds`]);
//! - `settings`: the validated file ([`RepoConfig`]);
//! - `effective`: what a task runs with ([`Effective`]), and where each value comes from;
//! - `source`: the file read from the repository's default branch ([`read`]), and kept on the
//!   task it starts ([`of_task`]).

mod bounds;
mod check;
mod effective;
mod file;
mod problem;
mod rules;
mod settings;
mod source;
#[cfg(test)]
mod tests;

pub use bounds::{Bounds, NOT_YET_APPLIED};
pub use check::MIN_WAIT_TIMEOUT;
pub use effective::{DEFAULT_CACHE_KEY, Effective, Setting, Source, effective};
pub use problem::Problem;
pub use rules::is_secret_name;
pub use settings::{Mode, RepoConfig, SetupFailure};
pub use source::{Found, of_task, read, settings_of};

use problem::Problems;

/// Where the file lives in a repository.
pub const PATH: &str = ".github/amp.toml";

/// The largest file read.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// The file's text as a configuration within `bounds`, or every problem found in it, in the
/// order they appear. A problem with the file's structure (its TOML syntax, an unknown key, a
/// value of the wrong type) is the only one reported, as checking the values needs a structure
/// to check; past that, every value is checked.
pub fn parse(text: &str, bounds: &Bounds) -> Result<RepoConfig, Vec<Problem>> {
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![Problem::at(
            text,
            0,
            format!(
                "the file is {} bytes, more than the {} KiB read",
                text.len(),
                MAX_FILE_BYTES / 1024
            ),
        )]);
    }
    let file: file::File = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start);
        vec![Problem::at(text, offset, file::in_toml_words(e.message()))]
    })?;
    let mut problems = Problems::new(text);
    let config = check::check(file, bounds, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems.into_sorted())
    }
}
