//! Configuration errors, each tied to the place a user has to edit.
//!
//! Owns the error type and its rendering (`file:line:column: message`).
//! It must not decide what is valid; `settings.rs` and `xml.rs` do that.

use std::fmt;
use std::path::PathBuf;

/// Where a value came from, so an error can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A position in a web.config file (1-based line and column).
    File {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// A command-line flag, e.g. `--listen`.
    Flag(&'static str),
    /// An environment variable, e.g. `HPGATE_LISTEN`.
    Env(&'static str),
    /// A file as a whole (it could not be read, or something is missing from it).
    WholeFile(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => {
                write!(f, "{}:{}:{}", path.display(), line, column)
            }
            Origin::Flag(flag) => write!(f, "command line {flag}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::WholeFile(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    pub origin: Origin,
    pub message: String,
}

impl ConfigError {
    pub fn new(origin: Origin, message: impl Into<String>) -> Self {
        ConfigError {
            origin,
            message: message.into(),
        }
    }
}

/// Every problem found in one load; loading goes on after the first so a
/// user can fix them all in one edit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Turns a byte offset into a 1-based line and column (in characters).
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    // Step back to a char boundary so slicing cannot panic on odd offsets.
    let mut end = offset;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let t = "ab\ncd\néf";
        assert_eq!(line_column(t, 0), (1, 1));
        assert_eq!(line_column(t, 3), (2, 1));
        assert_eq!(line_column(t, 4), (2, 2));
        assert_eq!(line_column(t, 8), (3, 2));
        // Inside a multi-byte char: clamps back instead of panicking.
        assert_eq!(line_column(t, 7), (3, 1));
        assert_eq!(line_column(t, 999), (3, 3));
    }
}
