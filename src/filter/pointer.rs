//! JSON pointers (RFC 6901) and the one-pass walk that finds the values
//! several pointers name.
//!
//! The walk reads the document once with serde_json's borrowed
//! deserializer: values off every configured path are skipped without
//! being built (`IgnoredAny`), values at a path's end are taken as
//! [`RawValue`] slices of the input. A slice's place in the input is what
//! lets the list filter splice the body instead of re-serialising it, so
//! the output keeps the upstream's bytes (key order, number spelling,
//! escapes) everywhere it did not have to change.
//!
//! A key that names a configured path twice in one object is refused:
//! parsers disagree on which duplicate wins (serde_json and JavaScript take
//! the last, some take the first), and a filter that reads one while the
//! client reads the other would let unfiltered data through.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::FilterError;

/// An RFC 6901 pointer, split into unescaped reference tokens once, when
/// the rules are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// Parse `text`: `""` (the whole document) or `/`-separated tokens with
    /// `~1` for `/` and `~0` for `~`.
    pub(crate) fn parse(text: &str) -> Result<Pointer, FilterError> {
        let bad = |reason: &str| FilterError::Rule {
            rule: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Ok(Pointer {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(bad("a JSON pointer starts with '/' (or is empty)"));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    token.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => return Err(bad("'~' in a JSON pointer must be '~0' or '~1'")),
                }
            }
            tokens.push(token);
        }
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pointer as configured, for messages.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Whether `self` names `other` or something inside it.
    pub(crate) fn contains(&self, other: &Pointer) -> bool {
        other.tokens.starts_with(&self.tokens)
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str("the document root")
        } else {
            f.write_str(&self.text)
        }
    }
}

/// Several pointers merged by their common prefixes, so one walk of a
/// document serves them all. Leaves carry the index of the pointer that
/// ends there, in the order given to [`Trie::new`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Trie {
    /// The pointers that end here (two rules may read one field).
    leaf: Vec<usize>,
    children: Vec<(String, Trie)>,
}

impl Trie {
    /// Callers have refused pointers that contain one another (see
    /// [`Pointer::contains`]) unless they are equal, so a leaf never has
    /// children.
    pub(crate) fn new<'p>(pointers: impl IntoIterator<Item = &'p Pointer>) -> Trie {
        let mut root = Trie::default();
        for (i, p) in pointers.into_iter().enumerate() {
            let mut node = &mut root;
            for t in p.tokens() {
                let at = match node.children.iter().position(|(k, _)| k == t) {
                    Some(at) => at,
                    None => {
                        node.children.push((t.clone(), Trie::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            node.leaf.push(i);
        }
        root
    }

    /// The child under `key` and its position among the children.
    pub(crate) fn child(&self, key: &str) -> Option<(usize, &Trie)> {
        self.children
            .iter()
            .enumerate()
            .find(|(_, (k, _))| k == key)
            .map(|(i, (_, t))| (i, t))
    }

    /// The child for array index `i`.
    pub(crate) fn index(&self, i: usize) -> Option<&Trie> {
        self.children
            .iter()
            .find(|(k, _)| array_index(k) == Some(i))
            .map(|(_, t)| t)
    }

    /// How many children this node has.
    pub(crate) fn width(&self) -> usize {
        self.children.len()
    }

    /// Whether no pointer goes on below this node.
    pub(crate) fn is_end(&self) -> bool {
        self.children.is_empty()
    }

    /// The pointers that end at this node.
    pub(crate) fn leaf(&self) -> &[usize] {
        &self.leaf
    }

    /// The node under `key` of this object node.
    pub(crate) fn under(&self, key: &str) -> Option<&Trie> {
        self.child(key).map(|(_, t)| t)
    }

    /// Walk `json` (one whole document, checked to its end) and fill
    /// `found`.
    pub(crate) fn walk<'a>(&self, json: &'a str, found: &mut Found<'a>) -> Result<(), Failure> {
        let mut de = serde_json::Deserializer::from_str(json);
        let walked = Walk {
            trie: self,
            found: &mut *found,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        walked.map_err(|e| found.failure.take().unwrap_or(Failure::Json(e)))
    }
}

/// What a walk found: the value at each pointer, by its index.
pub(crate) struct Found<'a> {
    pub(crate) values: Vec<Option<&'a RawValue>>,
    failure: Option<Failure>,
}

impl<'a> Found<'a> {
    /// Room for `n` pointers' values.
    pub(crate) fn new(n: usize) -> Self {
        Found {
            values: vec![None; n],
            failure: None,
        }
    }

    /// Record why the walk stops, and the serde error that stops it.
    fn fail<E: de::Error>(&mut self, f: Failure) -> E {
        self.failure = Some(f);
        E::custom("filter walk stopped")
    }
}

/// Why a walk stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The document is not JSON (or is truncated), as serde_json found.
    Json(serde_json::Error),
    /// The document is not JSON, as the checking reader of [`super::scan`]
    /// found: where, and whether because it ended too soon.
    Syntax {
        truncated: bool,
        line: usize,
        column: usize,
    },
    /// A key on a configured path appears twice in one object.
    Duplicate,
    /// An object key that must be compared has an escape serde_json's
    /// skipping accepts but its reading refuses (a lone surrogate).
    BadKey,
}

/// An object key, borrowed from the input unless it had escapes.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The seed that walks one value at one trie node.
struct Walk<'t, 'f, 'a> {
    trie: &'t Trie,
    found: &'f mut Found<'a>,
}

impl<'de, 't, 'f> DeserializeSeed<'de> for Walk<'t, 'f, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if !self.trie.leaf.is_empty() {
            let v = <&'de RawValue>::deserialize(d)?;
            for &i in &self.trie.leaf {
                if let Some(slot) = self.found.values.get_mut(i) {
                    *slot = Some(v);
                }
            }
            return Ok(());
        }
        if self.trie.children.is_empty() {
            return IgnoredAny::deserialize(d).map(|_| ());
        }
        d.deserialize_any(self)
    }
}

/// Which children of one trie node an object has named so far: a
/// configured key given twice in one object is refused, as the app might
/// read either copy. Both readers of a body (the serde walk here and the
/// list scanner in `scan.rs`) keep one per object.
pub(crate) struct SeenKeys {
    /// Bit i: child i was seen. Pointers share a prefix per object, so a
    /// node has a handful of children at most.
    small: u64,
    /// For a node with more than 64 children (empty otherwise).
    big: Vec<bool>,
}

impl SeenKeys {
    pub(crate) fn of(node: &Trie) -> SeenKeys {
        let width = node.width();
        SeenKeys {
            small: 0,
            big: if width > 64 {
                vec![false; width]
            } else {
                Vec::new()
            },
        }
    }

    /// Mark child `i` seen; whether it had been seen already.
    pub(crate) fn again(&mut self, i: usize) -> bool {
        if i < 64 && self.big.is_empty() {
            let was = self.small & (1 << i) != 0;
            self.small |= 1 << i;
            was
        } else {
            self.big
                .get_mut(i)
                .is_some_and(|s| std::mem::replace(s, true))
        }
    }
}

impl<'de, 't, 'f> Visitor<'de> for Walk<'t, 'f, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = SeenKeys::of(self.trie);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.trie.child(&key.0) {
                Some((i, child)) => {
                    if seen.again(i) {
                        return Err(self.found.fail(Failure::Duplicate));
                    }
                    map.next_value_seed(Walk {
                        trie: child,
                        found: &mut *self.found,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let more = match self.trie.index(index) {
                Some(child) => seq
                    .next_element_seed(Walk {
                        trie: child,
                        found: &mut *self.found,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    // Scalars have no children: a path through one finds nothing.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An RFC 6901 array index: `0` or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node of `n` children: one pointer per child key.
    fn node(n: usize) -> Trie {
        let pointers: Vec<Pointer> = (0..n)
            .map(|i| Pointer::parse(&format!("/k{i}")).unwrap())
            .collect();
        Trie::new(&pointers)
    }

    #[test]
    fn a_child_seen_again_is_told_under_and_over_64_children() {
        for width in [1, 3, 64, 65, 200] {
            let trie = node(width);
            assert_eq!(trie.width(), width);
            let mut seen = SeenKeys::of(&trie);
            for i in 0..width {
                assert!(!seen.again(i), "width {width}: child {i} is new");
            }
            for i in 0..width {
                assert!(seen.again(i), "width {width}: child {i} was seen");
            }
        }
    }

    #[test]
    fn children_are_told_apart() {
        let trie = node(70);
        let mut seen = SeenKeys::of(&trie);
        assert!(!seen.again(3));
        assert!(!seen.again(66));
        assert!(!seen.again(4));
        assert!(seen.again(3));
        assert!(seen.again(66));
    }
}
