//! Where each YAML path sits in the file, and what it holds.
//!
//! serde forgets positions once a value is deserialized, but a refusal is
//! only useful if it names the line. This walks the file's event stream once
//! and records the line of every node under the same path syntax that
//! `serde_path_to_error` prints (`routes[2].path`), so semantic checks made
//! after deserializing can still point at the spot. It also notes what kind
//! of node each value is, so a type error can say what was found there.
//!
//! The events come from granit-parser, the parser serde-saphyr itself reads
//! the file with (taken through its re-export so the two cannot drift
//! apart): the line map and the deserializer always agree on what the
//! document is.

use std::collections::HashMap;
use std::fmt;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver};

/// Longest scalar quoted back in a message; a longer one is cut with `…`.
const SHOWN_SCALAR_CHARS: usize = 40;

/// Line numbers (1-based) and node kinds by YAML path.
#[derive(Debug, Default)]
pub struct LineMap {
    lines: HashMap<String, usize>,
    found: HashMap<String, Found>,
}

/// What a value in the file is, as a message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Mapping,
    Sequence,
    /// Nothing written (`key:`), or `~` / `null`.
    Empty,
    /// A scalar, as written (cut to a readable length).
    Scalar(String),
    /// `*name`: a reference to an anchored node.
    Alias,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Mapping => f.write_str("a mapping"),
            Found::Sequence => f.write_str("a sequence"),
            Found::Empty => f.write_str("an empty value"),
            Found::Scalar(s) => write!(f, "`{s}`"),
            Found::Alias => f.write_str("an alias"),
        }
    }
}

impl Found {
    fn scalar(value: &str, style: ScalarStyle) -> Found {
        let plain = matches!(style, ScalarStyle::Plain);
        if plain && matches!(value, "" | "~" | "null" | "Null" | "NULL") {
            return Found::Empty;
        }
        let mut shown = String::new();
        for c in value.chars().take(SHOWN_SCALAR_CHARS) {
            // Quoted back into a terminal: no control characters.
            if c.is_control() {
                shown.extend(c.escape_default());
            } else {
                shown.push(c);
            }
        }
        if value.chars().nth(SHOWN_SCALAR_CHARS).is_some() {
            shown.push('…');
        }
        Found::Scalar(shown)
    }
}

impl LineMap {
    /// Index `source`. A file that does not parse gives an empty map: the
    /// parse error itself carries its own position.
    pub fn build(source: &str) -> LineMap {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut walker, false).is_err() {
            return LineMap::default();
        }
        LineMap {
            lines: walker.lines,
            found: walker.found,
        }
    }

    /// The line of `path`, or of its nearest ancestor that is in the file
    /// (a missing key is reported at the map that should hold it).
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
            if p.is_empty() {
                return None;
            }
        }
    }

    /// What the file holds at exactly `path` (`""` is the whole document).
    pub fn found_at(&self, path: &str) -> Option<&Found> {
        self.found.get(path)
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
    found: HashMap<String, Found>,
}

impl Walker {
    /// Path of the node that is about to start, if it is a value (not a key).
    fn next_value_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Map { path, key: Some(k) }) => Some(join(path, k)),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Seq { path, index }) => Some(format!("{path}[{index}]")),
        }
    }

    /// A value finished: the parent moves on to its next key or item.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn record(&mut self, path: &str, span: &Span) {
        if !path.is_empty() {
            // Keep the first position: for a map entry that is the key's line.
            self.lines
                .entry(path.to_string())
                .or_insert(span.start.line().max(1));
        }
    }

    /// Note what the value at `path` is; the first note wins, as for lines.
    fn found(&mut self, path: String, found: Found) {
        self.found.entry(path).or_insert(found);
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl<'input> SpannedEventReceiver<'input> for Walker {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        match ev {
            Event::Scalar(value, style, ..) => {
                if let Some(Frame::Map {
                    path,
                    key: key @ None,
                }) = self.stack.last_mut()
                {
                    let full = join(path, &value);
                    *key = Some(value.into_owned());
                    self.record(&full, &span);
                } else {
                    if let Some(p) = self.next_value_path() {
                        self.record(&p, &span);
                        self.found(p, Found::scalar(&value, style));
                    }
                    self.value_done();
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.next_value_path() {
                    self.found(p, Found::Alias);
                }
                self.value_done();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.record(&path, &span);
                let (frame, found) = if matches!(ev, Event::MappingStart(..)) {
                    (
                        Frame::Map {
                            path: path.clone(),
                            key: None,
                        },
                        Found::Mapping,
                    )
                } else {
                    (
                        Frame::Seq {
                            path: path.clone(),
                            index: 0,
                        },
                        Found::Sequence,
                    )
                };
                self.found(path, found);
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
upstream:
  address: 127.0.0.1:1
routes:
  - path: /a
    methods: [GET]
  - path: /b
    area: x
";

    #[test]
    fn nested_keys_and_sequence_items_have_their_lines() {
        let m = LineMap::build(SRC);
        assert_eq!(m.line_of("upstream"), Some(1));
        assert_eq!(m.line_of("upstream.address"), Some(2));
        assert_eq!(m.line_of("routes[0].path"), Some(4));
        assert_eq!(m.line_of("routes[0].methods[0]"), Some(5));
        assert_eq!(m.line_of("routes[1].area"), Some(7));
    }

    #[test]
    fn a_missing_key_falls_back_to_its_parent() {
        let m = LineMap::build(SRC);
        assert_eq!(m.line_of("routes[1].resource"), Some(6));
        assert_eq!(m.line_of("nothing.here"), None);
    }

    #[test]
    fn each_value_says_what_it_is() {
        let m = LineMap::build(&format!("{SRC}empty:\nquoted: \"~\"\nodd: \"a\\tb\"\n"));
        assert_eq!(m.found_at(""), Some(&Found::Mapping));
        assert_eq!(m.found_at("upstream"), Some(&Found::Mapping));
        assert_eq!(m.found_at("routes"), Some(&Found::Sequence));
        assert_eq!(
            m.found_at("routes[0].methods[0]"),
            Some(&Found::Scalar("GET".into()))
        );
        assert_eq!(m.found_at("empty"), Some(&Found::Empty));
        // Quoted, `~` is text, not null.
        assert_eq!(m.found_at("quoted"), Some(&Found::Scalar("~".into())));
        assert_eq!(m.found_at("odd"), Some(&Found::Scalar("a\\tb".into())));
        assert_eq!(m.found_at("routes[1].resource"), None);
    }
}
