//! Reading YAML into serde types, with the path and line of what went wrong.
//!
//! serde-saphyr parses and deserializes in one pass and never panics, even
//! on a file that is not YAML at all; its errors carry a location.
//! `serde_path_to_error` wraps its deserializer to add the YAML path
//! (`routes[2].path`), so a refusal names both.
//!
//! Messages are worded here, from the error's structure rather than its
//! text: what the file should hold at that path, in the file's terms, and
//! what it holds instead ("expected a mapping with `address` (found a
//! sequence)"). The path and line are printed once, by
//! [`super::ConfigIssue`]; Rust type names never reach the message.

use serde::de::DeserializeOwned;
use serde_saphyr::{Error as SaphyrError, ExternalMessageSource, MessageFormatter};

use super::lines::{Found, LineMap};
use super::raw;

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
/// source's [`LineMap`]: a line when the error has none, and what a value
/// of the wrong shape is. `root` is where the document sits in the
/// configuration (`""` for the file itself, `users_file` for that list), so
/// a message can say what belongs at a path.
pub(super) fn read<T: DeserializeOwned>(
    source: &str,
    lines: &LineMap,
    root: &str,
) -> Result<T, ReadError> {
    // Snippets are for terminals that show the file; ours are one line each.
    let options = serde_saphyr::options! { with_snippet: false };
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(source, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|err| describe(err.without_snippet(), clean_path(&path), lines, root))
}

/// `serde_path_to_error` prints the root as `.` and a key it was still
/// reading as `?`; neither is a place in the file.
fn clean_path(path: &str) -> String {
    path.split('.')
        .filter(|seg| !seg.is_empty() && *seg != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// `path` under `root`, with indices left out: the key of
/// [`raw::expected_at`].
fn pattern(root: &str, path: &str) -> String {
    let full = if root.is_empty() || path.is_empty() || path.starts_with('[') {
        format!("{root}{path}")
    } else {
        format!("{root}.{path}")
    };
    let mut out = String::with_capacity(full.len());
    let mut in_index = false;
    for c in full.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

fn describe(err: &SaphyrError, path: String, lines: &LineMap, root: &str) -> ReadError {
    let line = err
        .location()
        .and_then(|l| usize::try_from(l.line()).ok())
        .filter(|l| *l > 0)
        .or_else(|| lines.line_of(&path));
    if is_syntax(err) {
        return ReadError::Syntax {
            line,
            message: library_message(err),
        };
    }
    let here = raw::expected_at(&pattern(root, &path));
    let found = lines.found_at(&path);
    let message = match err {
        SaphyrError::Unexpected { expected, .. } => {
            let what = match *expected {
                "mapping start" => here.unwrap_or("a mapping"),
                "sequence start" => here.unwrap_or("a sequence"),
                "string scalar" => here.unwrap_or("a string"),
                "scalar" => here.unwrap_or("a single value"),
                _ => return shape(path, line, library_message(err)),
            };
            expected_found(what, found)
        }
        SaphyrError::ExternallyTaggedEnumExpectedScalarOrMapping { .. } => {
            expected_found(here.unwrap_or("one of the allowed words"), found)
        }
        SaphyrError::InvalidScalar { ty, .. } => {
            expected_found(scalar(ty).unwrap_or("another kind of value"), found)
        }
        SaphyrError::InvalidBooleanStrict { .. } => expected_found("`true` or `false`", found),
        SaphyrError::NullIntoString { .. } => {
            expected_found(here.unwrap_or("a string"), Some(&Found::Empty))
        }
        SaphyrError::SerdeInvalidType { expected, .. }
        | SaphyrError::SerdeInvalidValue { expected, .. } => {
            expected_found(here.unwrap_or(&serde_expected(expected)), found)
        }
        SaphyrError::SerdeUnknownVariant {
            variant, expected, ..
        } => format!("expected {} (found `{variant}`)", one_of(expected)),
        SaphyrError::SerdeUnknownField {
            field, expected, ..
        } => match expected.as_slice() {
            [] => format!("unknown key `{field}`; nothing is expected here"),
            keys => format!("unknown key `{field}`; expected {}", one_of(keys)),
        },
        SaphyrError::SerdeMissingField { field, .. } => {
            format!("missing required key `{field}`")
        }
        SaphyrError::DuplicateMappingKey { key: Some(k), .. } => {
            format!("the key `{k}` is given twice")
        }
        SaphyrError::Eof { .. } => format!(
            "expected {} (found the end of the file)",
            here.unwrap_or("more")
        ),
        _ => library_message(err),
    };
    shape(path, line, message)
}

fn shape(path: String, line: Option<usize>, message: String) -> ReadError {
    ReadError::Shape {
        path,
        line,
        message,
    }
}

/// serde-saphyr's own user-facing wording, for errors not worded here.
/// It has no "at line L, column C": we print the line ourselves.
fn library_message(err: &SaphyrError) -> String {
    serde_saphyr::UserMessageFormatter
        .format_message(err)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn expected_found(what: &str, found: Option<&Found>) -> String {
    match found {
        Some(f) => format!("expected {what} (found {f})"),
        None => format!("expected {what}"),
    }
}

/// A scalar type as serde-saphyr and serde name it (`u16`, `boolean`), in
/// words; `None` for a name that is not a scalar type.
fn scalar(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "u128" | "usize" => "a whole number of 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" | "floating point" => "a number",
        "bool" | "boolean" | "a boolean" => "`true` or `false`",
        "char" | "a character" => "a single character",
        "a string" | "a borrowed string" => "a string",
        _ => return None,
    })
}

/// What a serde visitor expected, without the Rust type names some give
/// (`struct RawUpstream`, `enum StoreKind`).
fn serde_expected(expected: &str) -> String {
    if let Some(words) = scalar(expected) {
        words.into()
    } else if expected.starts_with("struct ") || expected.starts_with("a map") {
        "a mapping".into()
    } else if expected.starts_with("enum ") || expected.starts_with("variant") {
        "one of the allowed words".into()
    } else if expected.starts_with("tuple") || expected.starts_with("a sequence") {
        "a sequence".into()
    } else if expected.chars().any(|c| c.is_ascii_uppercase()) {
        // A type name of some other shape; say nothing rather than it.
        "another kind of value".into()
    } else {
        expected.into()
    }
}

/// `a`, `a` or `b`, one of `a`, `b`, `c`.
fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.as_slice() {
        [] => "nothing".into(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        many => format!("one of {}", many.join(", ")),
    }
}

/// A parser error: about the text, so the path serde was at means nothing.
fn is_syntax(err: &SaphyrError) -> bool {
    matches!(err, SaphyrError::ExternalMessage { source, .. }
        if matches!(**source, ExternalMessageSource::Parser(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_leave_out_indices_and_sit_under_their_root() {
        assert_eq!(pattern("", ""), "");
        assert_eq!(pattern("", "routes[12].methods[0]"), "routes[].methods[]");
        assert_eq!(pattern("users_file", "[3].roles"), "users_file[].roles");
        assert_eq!(pattern("users_file", ""), "users_file");
    }

    #[test]
    fn serde_type_names_are_never_repeated() {
        for t in [
            "struct RawUpstream",
            "enum StoreKind",
            "RawThing",
            "Option<RawX>",
        ] {
            let said = serde_expected(t);
            assert!(
                !said.contains("Raw") && !said.contains("struct"),
                "{t}: {said}"
            );
        }
        assert_eq!(serde_expected("u16"), "a whole number from 0 to 65535");
        assert_eq!(serde_expected("a boolean"), "`true` or `false`");
    }
}
