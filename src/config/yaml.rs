//! Reading YAML into serde types, with the path and line of what went wrong.
//!
//! serde-saphyr parses and deserializes in one pass and never panics, even
//! on a file that is not YAML at all; its errors carry a location.
//! `serde_path_to_error` wraps its deserializer to add the YAML path
//! (`routes[2].path`), so a refusal names both.

use serde::de::DeserializeOwned;
use serde_saphyr::{Error as SaphyrError, ExternalMessageSource, MessageFormatter};

use super::lines::LineMap;

/// Why a YAML document could not be read into its serde type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ReadError {
    /// The text is not YAML (a bad indent, an unclosed quote, a tab).
    #[error("not valid YAML: {message}")]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    /// YAML, but not the shape the file should have.
    #[error("{message}")]
    Shape {
        /// YAML path such as `routes[2].path`; empty for the whole file.
        path: String,
        line: Option<usize>,
        message: String,
    },
}

impl ReadError {
    /// Where the problem is; empty when it concerns the text, not a value.
    pub(super) fn path(&self) -> &str {
        match self {
            ReadError::Syntax { .. } => "",
            ReadError::Shape { path, .. } => path,
        }
    }

    pub(super) fn line(&self) -> Option<usize> {
        match self {
            ReadError::Syntax { line, .. } | ReadError::Shape { line, .. } => *line,
        }
    }
}

/// Read `source` as one YAML document of type `T`. `lines` is the same
/// source's [`LineMap`], for a line when the error itself has none.
pub(super) fn read<T: DeserializeOwned>(source: &str, lines: &LineMap) -> Result<T, ReadError> {
    // Snippets are for terminals that show the file; ours are one line each.
    let options = serde_saphyr::options! { with_snippet: false };
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(source, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|err| describe(err.without_snippet(), clean_path(&path), lines))
}

/// `serde_path_to_error` prints the root as `.` and a key it was still
/// reading as `?`; neither is a place in the file.
fn clean_path(path: &str) -> String {
    path.split('.')
        .filter(|seg| !seg.is_empty() && *seg != "?")
        .collect::<Vec<_>>()
        .join(".")
}

fn describe(err: &SaphyrError, path: String, lines: &LineMap) -> ReadError {
    let line = err
        .location()
        .and_then(|l| usize::try_from(l.line()).ok())
        .filter(|l| *l > 0)
        .or_else(|| lines.line_of(&path));
    // The message without "at line L, column C": we print the line ourselves.
    let message = serde_saphyr::UserMessageFormatter
        .format_message(err)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if is_syntax(err) {
        ReadError::Syntax { line, message }
    } else {
        ReadError::Shape {
            path,
            line,
            message,
        }
    }
}

/// A parser error: about the text, so the path serde was at means nothing.
fn is_syntax(err: &SaphyrError) -> bool {
    matches!(err, SaphyrError::ExternalMessage { source, .. }
        if matches!(**source, ExternalMessageSource::Parser(_)))
}
