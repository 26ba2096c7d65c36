//! Where each YAML path sits in the file.
//!
//! serde forgets positions once a value is deserialized, but a refusal is
//! only useful if it names the line. This walks the file's event stream once
//! and records the line of every node under the same path syntax that
//! `serde_path_to_error` prints (`routes[2].path`), so semantic checks made
//! after deserializing can still point at the spot.
//!
//! The events come from granit-parser, the parser serde-saphyr itself reads
//! the file with (taken through its re-export so the two cannot drift
//! apart): the line map and the deserializer always agree on what the
//! document is.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, Span, SpannedEventReceiver};

/// Line numbers (1-based) by YAML path.
#[derive(Debug, Default)]
pub struct LineMap {
    lines: HashMap<String, usize>,
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
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
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
            Event::Scalar(value, ..) => {
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
                    }
                    self.value_done();
                }
            }
            Event::Alias(_) => self.value_done(),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.record(&path, &span);
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                };
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
}
