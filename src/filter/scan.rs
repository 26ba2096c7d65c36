//! A structural reader for JSON: the items of a list and the values at
//! pointers within each item, in one pass over the text.
//!
//! It reads in two modes, chosen at compile time:
//! - **checking** ([`check_document`]) reads the upstream's bytes and
//!   refuses exactly the texts serde_json refuses (RFC 8259's grammar as
//!   serde_json's `IgnoredAny` reads it, with no nesting limit, as
//!   serde_json's skipping has none). The unit tests and the
//!   `answer_filters` fuzz target hold the two to the same answers.
//! - **trusting** ([`walk`]) reads a [`RawValue`] serde_json has already
//!   checked, and only finds where things end.
//!
//! Why our own reader: the list filter used to check the whole body with
//! serde_json and then find each item's ids with a trusting reader. Two
//! passes over every byte of the list, each about a quarter of the
//! filter's time. Checking while the items are read is one pass: the
//! checks are a few comparisons on bytes the reader looks at anyway.
//!
//! The rules are those of the serde walk in [`super::pointer`]: a key on a
//! configured path seen twice in one object is refused, a path through a
//! scalar finds nothing. Keys with escapes are unescaped by serde_json.
//! Nesting is followed with a stack on the heap, never by recursion, so a
//! deeply nested body cannot exhaust the thread's stack; recursion only
//! follows the configured pointers.

use std::borrow::Cow;

use serde_json::value::RawValue;
use smallvec::SmallVec;

use super::pointer::{Failure, SeenKeys, Trie};

/// The list read while its document is checked: the items' trie, room for
/// the values it names, and what to do with each item. `each` sees items
/// of a body that may still be refused further on, so it must only judge
/// them (the list filter's decisions are pure), never act on them.
pub(crate) struct List<'t, 'f, 'e, 'a> {
    pub(crate) trie: &'t Trie,
    pub(crate) found: &'f mut [Option<&'a str>],
    pub(crate) each: &'e mut dyn FnMut(&'a str, &[Option<&'a str>]),
}

/// Check `text` as one whole JSON document and fill `found` (cleared
/// first) with the values `trie` names. With `list`, the array at pointer
/// 0 of `trie` is read item by item as it is checked: for each item,
/// `list.found` is filled with the values `list.trie` names in it and
/// `list.each` is called. A value at pointer 0 that is not an array is
/// only recorded, as any other.
pub(crate) fn check_document<'a>(
    text: &'a str,
    trie: &Trie,
    found: &mut [Option<&'a str>],
    mut list: Option<List<'_, '_, '_, 'a>>,
) -> Result<(), Failure> {
    let reader = Reader::<true> { text };
    found.iter_mut().for_each(|v| *v = None);
    let start = reader.ws(0);
    let end = reader.walk(trie, start, found, &mut list)?;
    let end = reader.ws(end);
    if end < text.len() {
        return Err(reader.bad(end));
    }
    Ok(())
}

/// Fill `found` (cleared first) with the values `trie` names within
/// `value`, a value serde_json has checked.
pub(crate) fn walk<'a>(
    trie: &Trie,
    value: &'a RawValue,
    found: &mut [Option<&'a str>],
) -> Result<(), Failure> {
    found.iter_mut().for_each(|v| *v = None);
    let reader = Reader::<false> { text: value.get() };
    reader.walk(trie, 0, found, &mut None).map(|_| ())
}

/// Reads `text` by byte offsets. With `CHECK`, every step refuses what is
/// not JSON; without, the text is known to be JSON and each step only
/// finds where something ends. Offsets handed in are where a value, key or
/// delimiter should start, whitespace skipped; the result is just past
/// what was read.
struct Reader<'a, const CHECK: bool> {
    text: &'a str,
}

type Step = Result<usize, Failure>;

impl<'a, const CHECK: bool> Reader<'a, CHECK> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The text is not JSON at byte `at`: where, as a line and a column
    /// (in characters, from 1) a person can find in the body.
    #[cold]
    fn bad(&self, at: usize) -> Failure {
        let before = self.text.get(..at).unwrap_or(self.text);
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        Failure::Syntax {
            truncated: at >= self.text.len(),
            line: before.matches('\n').count() + 1,
            column: before.get(line_start..).unwrap_or("").chars().count() + 1,
        }
    }

    fn ws(&self, mut at: usize) -> usize {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(at) {
            at += 1;
        }
        at
    }

    /// Walk the value at `start` with `trie`, filling `found`.
    fn walk(
        &self,
        trie: &Trie,
        start: usize,
        found: &mut [Option<&'a str>],
        list: &mut Option<List<'_, '_, '_, 'a>>,
    ) -> Step {
        let bytes = self.bytes();
        if !trie.leaf().is_empty() {
            let end = match list {
                Some(list) if trie.leaf().contains(&0) && bytes.get(start) == Some(&b'[') => {
                    self.items(start, list)?
                }
                _ => self.value_end(start)?,
            };
            let value = self.text.get(start..end);
            for &i in trie.leaf() {
                if let Some(slot) = found.get_mut(i) {
                    *slot = value;
                }
            }
            return Ok(end);
        }
        if trie.is_end() {
            return self.value_end(start);
        }
        match bytes.get(start) {
            Some(b'{') => self.walk_object(trie, start, found, list),
            Some(b'[') => self.walk_array(trie, start, found, list),
            // Scalars have no children: a path through one finds nothing.
            _ => self.value_end(start),
        }
    }

    fn walk_object(
        &self,
        trie: &Trie,
        start: usize,
        found: &mut [Option<&'a str>],
        list: &mut Option<List<'_, '_, '_, 'a>>,
    ) -> Step {
        let bytes = self.bytes();
        let mut seen = SeenKeys::of(trie);
        let mut at = self.ws(start + 1);
        if bytes.get(at) == Some(&b'}') {
            return Ok(at + 1);
        }
        loop {
            if CHECK && bytes.get(at) != Some(&b'"') {
                return Err(self.bad(at));
            }
            let (key_end, escaped) = self.string(at)?;
            let key = key_text(self.text.get(at..key_end).unwrap_or_default(), escaped)?;
            let value = self.colon(key_end)?;
            let end = match trie.child(&key) {
                Some((i, child)) => {
                    if seen.again(i) {
                        return Err(Failure::Duplicate);
                    }
                    self.walk(child, value, found, list)?
                }
                None => self.value_end(value)?,
            };
            match self.next(end, b'}')? {
                Next::More(next) => at = next,
                Next::Closed(end) => return Ok(end),
            }
        }
    }

    fn walk_array(
        &self,
        trie: &Trie,
        start: usize,
        found: &mut [Option<&'a str>],
        list: &mut Option<List<'_, '_, '_, 'a>>,
    ) -> Step {
        let mut at = self.ws(start + 1);
        if self.bytes().get(at) == Some(&b']') {
            return Ok(at + 1);
        }
        let mut index = 0;
        loop {
            let end = match trie.index(index) {
                Some(child) => self.walk(child, at, found, list)?,
                None => self.value_end(at)?,
            };
            match self.next(end, b']')? {
                Next::More(next) => at = next,
                Next::Closed(end) => return Ok(end),
            }
            index += 1;
        }
    }

    /// The items of the array at `start`, each walked with `list.trie`
    /// and handed to `list.each`.
    fn items(&self, start: usize, list: &mut List<'_, '_, '_, 'a>) -> Step {
        let mut at = self.ws(start + 1);
        if self.bytes().get(at) == Some(&b']') {
            return Ok(at + 1);
        }
        loop {
            list.found.iter_mut().for_each(|v| *v = None);
            let end = self.walk(list.trie, at, list.found, &mut None)?;
            (list.each)(self.text.get(at..end).unwrap_or_default(), list.found);
            match self.next(end, b']')? {
                Next::More(next) => at = next,
                Next::Closed(end) => return Ok(end),
            }
        }
    }

    /// After a member or element ending at `end`: a `,` and where the
    /// next one starts, or `close` and just past it.
    fn next(&self, end: usize, close: u8) -> Result<Next, Failure> {
        let at = self.ws(end);
        match self.bytes().get(at) {
            Some(b',') => Ok(Next::More(self.ws(at + 1))),
            Some(&b) if b == close => Ok(Next::Closed(at + 1)),
            _ if !CHECK => Ok(Next::Closed(at + 1)),
            _ => Err(self.bad(at)),
        }
    }

    /// Past the `:` after a key ending at `end`, to where the value starts.
    fn colon(&self, end: usize) -> Step {
        let at = self.ws(end);
        if CHECK && self.bytes().get(at) != Some(&b':') {
            return Err(self.bad(at));
        }
        Ok(self.ws(at + 1))
    }

    /// Just past the value that starts at `start`.
    fn value_end(&self, start: usize) -> Step {
        match self.bytes().get(start) {
            Some(b'"') => self.string(start).map(|(end, _)| end),
            Some(b'{' | b'[') if CHECK => self.container(start),
            Some(b'{' | b'[') => Ok(self.trusted_container(start)),
            _ => self.scalar(start),
        }
    }

    /// Just past the object or array at `start`, checking it whole. The
    /// open containers are kept on a stack, not in recursion.
    fn container(&self, start: usize) -> Step {
        let bytes = self.bytes();
        // Innermost last: `{` or `[`.
        let mut open: SmallVec<[u8; 32]> = SmallVec::new();
        let mut at = start;
        loop {
            // A value starts at `at`.
            match bytes.get(at) {
                Some(&b @ (b'{' | b'[')) => {
                    let close = if b == b'{' { b'}' } else { b']' };
                    at = self.ws(at + 1);
                    if bytes.get(at) == Some(&close) {
                        at += 1;
                    } else {
                        open.push(b);
                        if b == b'{' {
                            at = self.member(at)?;
                        }
                        continue;
                    }
                }
                Some(b'"') => at = self.string(at)?.0,
                _ => at = self.scalar(at)?,
            }
            // A value ended at `at`: close what it ends, or go on to the
            // next member or element.
            loop {
                let Some(&inner) = open.last() else {
                    return Ok(at);
                };
                let close = if inner == b'{' { b'}' } else { b']' };
                match self.next(at, close)? {
                    Next::More(next) => {
                        at = if inner == b'{' {
                            self.member(next)?
                        } else {
                            next
                        };
                        break;
                    }
                    Next::Closed(end) => {
                        open.pop();
                        at = end;
                    }
                }
            }
        }
    }

    /// A member's key (which must start at `at`) and its `:`, to where
    /// its value starts.
    fn member(&self, at: usize) -> Step {
        if self.bytes().get(at) != Some(&b'"') {
            return Err(self.bad(at));
        }
        let (end, _) = self.string(at)?;
        self.colon(end)
    }

    /// Just past the object or array at `start` of text known to be JSON:
    /// brackets counted, strings skipped.
    fn trusted_container(&self, start: usize) -> usize {
        let bytes = self.bytes();
        let mut depth = 0usize;
        let mut at = start;
        while let Some(&b) = bytes.get(at) {
            match b {
                b'"' => {
                    at = self.string(at).map_or(bytes.len(), |(end, _)| end);
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return at + 1;
                    }
                }
                _ => {}
            }
            at += 1;
        }
        bytes.len()
    }

    /// Just past the string that starts (with its `"`) at `start`, and
    /// whether it holds an escape. Eight bytes at a time while none is a
    /// quote, a backslash or (checking) a control character, which JSON
    /// strings may not hold; then byte by byte. A vectorised search
    /// (`memchr`) costs more to set up than the few bytes of a typical API
    /// string take to read.
    fn string(&self, start: usize) -> Result<(usize, bool), Failure> {
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
        const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
        const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
        // High bit set in each byte of `v` below `n` (of `ONES * n`); exact
        // for the lowest such byte, which is all that is used.
        let below = |v: u64, n: u64| v.wrapping_sub(n) & !v & HIGHS;
        let bytes = self.bytes();
        let mut at = start + 1;
        let mut escaped = false;
        loop {
            if let Some(word) = bytes.get(at..at + 8) {
                let mut eight = [0; 8];
                eight.copy_from_slice(word);
                let word = u64::from_le_bytes(eight);
                let mut stops = below(word ^ QUOTES, ONES) | below(word ^ BACKSLASHES, ONES);
                if CHECK {
                    stops |= below(word, SPACES);
                }
                if stops == 0 {
                    at += 8;
                    continue;
                }
                at += (stops.trailing_zeros() / 8) as usize;
            }
            match bytes.get(at) {
                Some(b'"') => return Ok((at + 1, escaped)),
                Some(b'\\') => {
                    escaped = true;
                    at = self.escape(at)?;
                }
                Some(&b) if CHECK && b < 0x20 => return Err(self.bad(at)),
                Some(_) => at += 1,
                None if CHECK => return Err(self.bad(at)),
                None => return Ok((bytes.len(), escaped)),
            }
        }
    }

    /// Just past the escape whose `\` is at `at`. Checking, it must be one
    /// of JSON's: `\uXXXX` with four hex digits, whatever they encode (as
    /// serde_json's skipping; a lone surrogate in a key is refused when
    /// the key is read, see [`key_text`]).
    fn escape(&self, at: usize) -> Step {
        if !CHECK {
            // `\` and one character; `\uXXXX` goes on with hex digits,
            // never a quote.
            return Ok(at + 2);
        }
        let bytes = self.bytes();
        match bytes.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
            Some(b'u') => {
                let hex = at + 2..at + 6;
                match bytes.get(hex.clone()) {
                    Some(digits) => match digits.iter().position(|d| !d.is_ascii_hexdigit()) {
                        None => Ok(hex.end),
                        Some(i) => Err(self.bad(hex.start + i)),
                    },
                    None => Err(self.bad(bytes.len())),
                }
            }
            _ => Err(self.bad(at + 1)),
        }
    }

    /// Just past the number, `true`, `false` or `null` at `start`.
    fn scalar(&self, start: usize) -> Step {
        let bytes = self.bytes();
        if !CHECK {
            let mut at = start;
            while let Some(&b) = bytes.get(at) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                at += 1;
            }
            return Ok(at);
        }
        let word = |w: &[u8]| {
            let end = start + w.len();
            match bytes.get(start..end) {
                Some(b) if b == w => Ok(end),
                _ => Err(self.bad(start)),
            }
        };
        match bytes.get(start) {
            Some(b't') => word(b"true"),
            Some(b'f') => word(b"false"),
            Some(b'n') => word(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(start),
            _ => Err(self.bad(start)),
        }
    }

    /// Just past the number at `start`: `-`, `0` or digits not starting
    /// with `0`, then an optional fraction and exponent, each with at least
    /// one digit. What follows is the caller's to check (`01` is refused
    /// there, as a `1` where a `,` should be).
    fn number(&self, start: usize) -> Step {
        let bytes = self.bytes();
        let digits = |mut at: usize| {
            while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            at
        };
        let mut at = start + usize::from(bytes.get(start) == Some(&b'-'));
        at = match bytes.get(at) {
            Some(b'0') => at + 1,
            Some(b'1'..=b'9') => digits(at + 1),
            _ => return Err(self.bad(at)),
        };
        if bytes.get(at) == Some(&b'.') {
            let end = digits(at + 1);
            if end == at + 1 {
                return Err(self.bad(end));
            }
            at = end;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            let end = digits(at);
            if end == at {
                return Err(self.bad(end));
            }
            at = end;
        }
        Ok(at)
    }
}

/// What follows a member or element.
enum Next {
    /// A `,`: the next one starts here.
    More(usize),
    /// The closing bracket: just past it.
    Closed(usize),
}

/// A key as the application reads it: `quoted` is the key with its
/// quotes, `escaped` whether [`Reader::string`] met a backslash in it (so
/// keys without one, nearly all, are not searched again). Escapes are
/// left to serde_json; one it refuses (a lone surrogate, which its
/// skipping lets pass) refuses the body.
fn key_text(quoted: &str, escaped: bool) -> Result<Cow<'_, str>, Failure> {
    let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or("");
    if !escaped {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(quoted)
        .map(Cow::Owned)
        .map_err(|_| Failure::BadKey)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::de::IgnoredAny;

    use super::super::pointer::{Pointer, Trie};
    use super::*;

    /// Pieces of JSON and of near-JSON: soups of them are mostly not JSON,
    /// in every way a piece can be out of place.
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\n",
        "\"",
        "\"k\"",
        "\"a\"",
        "\"data\"",
        "\"b\"",
        "\"\\u00e9\"",
        "\"\\ud800\"",
        "\"\\x\"",
        "\\",
        "\\u12",
        "u",
        "\"é\"",
        "\u{1}",
        "\t",
        "0",
        "1",
        "-",
        ".",
        "e",
        "E",
        "+",
        "12",
        "-0.5e+3",
        "01",
        "1.",
        "true",
        "false",
        "null",
        "tru",
        "nul",
        "x",
    ];

    fn soup() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(PIECES), 0..24).prop_map(|p| p.concat())
    }

    /// Valid documents, to be sure the soups are not only refusals.
    fn document() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[ {} ]", v.join(" ,\n"))),
                prop::collection::vec(("[a-c]{1,2}", inner), 0..6).prop_map(|m| {
                    let members: Vec<String> = m
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\" :{v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<IgnoredAny>(text).is_ok()
    }

    fn trie(pointers: &[&str]) -> Trie {
        let pointers: Vec<Pointer> = pointers
            .iter()
            .map(|p| Pointer::parse(p).unwrap())
            .collect();
        Trie::new(&pointers)
    }

    /// With no pointers: exactly the texts serde_json accepts.
    fn check_alone(text: &str) {
        let ours = check_document(text, &Trie::default(), &mut [], None);
        assert_eq!(ours.is_ok(), serde_accepts(text), "{text:?}: {ours:?}");
    }

    /// With pointers and a list read item by item: never a text serde_json
    /// refuses; and a text it accepts is refused only for the walk's own
    /// reasons (a key on a path twice, a key it cannot read), never as not
    /// JSON.
    fn check_walked(text: &str) {
        let outer = trie(&["/data", "/meta/total", "/a/1/b"]);
        let items = trie(&["/k", "/a/b", "/b/0"]);
        let mut found = [None; 3];
        let mut item_found = [None; 3];
        let mut seen = Vec::new();
        let mut each = |item: &str, _: &[Option<&str>]| seen.push(item.len());
        let ours = check_document(
            text,
            &outer,
            &mut found,
            Some(List {
                trie: &items,
                found: &mut item_found,
                each: &mut each,
            }),
        );
        match ours {
            Ok(()) => assert!(serde_accepts(text), "{text:?} accepted"),
            // Refused either way: the walk stops where it meets them.
            Err(Failure::Duplicate | Failure::BadKey) => {}
            Err(_) => assert!(!serde_accepts(text), "{text:?}: {ours:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn the_checking_reader_accepts_what_serde_json_accepts(text in soup()) {
            check_alone(&text);
            check_walked(&text);
            check_walked(&format!("{{\"data\": [{text}]}}"));
            check_walked(&format!("{{\"data\": [{{\"k\": {text}}}], \"meta\": {{}}}}"));
        }

        #[test]
        fn documents_are_accepted_whole_and_cut_short_are_refused(doc in document(), cut in any::<prop::sample::Index>()) {
            check_alone(&doc);
            check_walked(&doc);
            let wrapped = format!("{{\"data\": [{doc}, {doc}], \"a\": [0, {{\"b\": {doc}}}]}}");
            check_walked(&wrapped);
            let at = cut.index(wrapped.len());
            if wrapped.is_char_boundary(at) {
                check_alone(&wrapped[..at]);
                check_walked(&wrapped[..at]);
            }
        }
    }

    #[test]
    fn nesting_far_past_serde_json_s_recursion_limit_is_read_without_recursion() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        check_alone(&deep);
        check_walked(&format!("{{\"data\": [{deep}]}}"));
        check_alone(&deep[..deep.len() - 1]);
    }
}
