//! A structural reader for JSON that serde_json has already validated: the
//! items of a list and the values at pointers within each item, in one
//! pass over the list.
//!
//! The list filter reads the body once with serde_json, which checks all
//! of it and hands out the list as a [`RawValue`]. Reading each item again
//! with serde_json (to find its ids) was half the filter's time, because
//! serde_json's skipping still checks every value it skips. Text that is
//! known to be JSON needs no checking: where a value ends is a matter of
//! strings and brackets, found here with byte loops. This module only
//! ever reads a [`RawValue`] serde_json produced, never the upstream's
//! bytes unchecked, so it cannot read a value differently from a JSON
//! parser; the keys it compares are unescaped by serde_json.
//!
//! The rules are those of the serde walk in [`super::pointer`]: a key on a
//! configured path seen twice in one object is refused, a path through a
//! scalar finds nothing.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::pointer::{Failure, Trie};

/// For each item of `array` (a JSON array; anything else has no items):
/// fill `found[i]` with the value at pointer `i` of `trie` within the item
/// (`None` where it names nothing) and call `each` with the item's text
/// and `found`.
pub(crate) fn each_item<'a>(
    array: &'a RawValue,
    trie: &Trie,
    found: &mut [Option<&'a str>],
    mut each: impl FnMut(&'a str, &[Option<&'a str>]),
) -> Result<(), Failure> {
    let text = array.get();
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'[') {
        return Ok(());
    }
    let mut at = skip_ws(bytes, 1);
    if bytes.get(at) == Some(&b']') {
        return Ok(());
    }
    while at < bytes.len() {
        found.iter_mut().for_each(|v| *v = None);
        let end = walk_at(trie, text, at, found)?;
        each(text.get(at..end).unwrap_or_default(), found);
        // `,` and the next item, or `]`.
        let next = skip_ws(bytes, end);
        if bytes.get(next) != Some(&b',') {
            break;
        }
        at = skip_ws(bytes, next + 1);
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
    walk_at(trie, value.get(), 0, found).map(|_| ())
}

/// Walk the value that starts at `start` of `text` and return where it
/// ends.
fn walk_at<'a>(
    trie: &Trie,
    text: &'a str,
    start: usize,
    found: &mut [Option<&'a str>],
) -> Result<usize, Failure> {
    let bytes = text.as_bytes();
    if !trie.leaf().is_empty() {
        let end = value_end(bytes, start);
        let value = text.get(start..end);
        for &i in trie.leaf() {
            if let Some(slot) = found.get_mut(i) {
                *slot = value;
            }
        }
        return Ok(end);
    }
    if trie.is_end() {
        return Ok(value_end(bytes, start));
    }
    match bytes.get(start) {
        Some(b'{') => walk_object(trie, text, start, found),
        Some(b'[') => {
            let mut at = skip_ws(bytes, start + 1);
            if bytes.get(at) == Some(&b']') {
                return Ok(at + 1);
            }
            let mut index = 0;
            while at < bytes.len() {
                let end = match trie.index(index) {
                    Some(child) => walk_at(child, text, at, found)?,
                    None => value_end(bytes, at),
                };
                let next = skip_ws(bytes, end);
                if bytes.get(next) != Some(&b',') {
                    return Ok(next + 1);
                }
                at = skip_ws(bytes, next + 1);
                index += 1;
            }
            Ok(bytes.len())
        }
        // Scalars have no children: a path through one finds nothing.
        _ => Ok(value_end(bytes, start)),
    }
}

fn walk_object<'a>(
    trie: &Trie,
    text: &'a str,
    start: usize,
    found: &mut [Option<&'a str>],
) -> Result<usize, Failure> {
    let bytes = text.as_bytes();
    // Bit i: child i's key was seen, as in the serde walk.
    let mut seen_small: u64 = 0;
    let mut seen_big: Vec<bool> = Vec::new();
    if trie.width() > 64 {
        seen_big = vec![false; trie.width()];
    }
    let mut at = skip_ws(bytes, start + 1);
    while bytes.get(at) == Some(&b'"') {
        let (key_end, escaped) = string_span(bytes, at);
        let key = key_text(text.get(at..key_end).unwrap_or_default(), escaped)?;
        let colon = skip_ws(bytes, key_end);
        let value = skip_ws(bytes, colon + 1);
        let end = match trie.child(&key) {
            Some((i, child)) => {
                let dup = if i < 64 && seen_big.is_empty() {
                    let was = seen_small & (1 << i) != 0;
                    seen_small |= 1 << i;
                    was
                } else {
                    seen_big
                        .get_mut(i)
                        .is_some_and(|s| std::mem::replace(s, true))
                };
                if dup {
                    return Err(Failure::Duplicate);
                }
                walk_at(child, text, value, found)?
            }
            None => value_end(bytes, value),
        };
        // `,` and the next key, or `}`.
        let next = skip_ws(bytes, end);
        if bytes.get(next) != Some(&b',') {
            return Ok(next + 1);
        }
        at = skip_ws(bytes, next + 1);
    }
    // `{}`.
    Ok(at + 1)
}

/// A key as the application reads it: `quoted` is the key with its
/// quotes, `escaped` whether [`string_span`] met a backslash in it (so
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

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// Just past the string that starts (with its `"`) at `start`. Eight
/// bytes at a time while none is a quote or a backslash (most string
/// bytes), then byte by byte; a vectorised search (`memchr`) costs more
/// to set up than the few bytes of a typical API string take to read.
fn string_end(bytes: &[u8], start: usize) -> usize {
    string_span(bytes, start).0
}

/// Just past the string that starts at `start`, and whether it holds an
/// escape.
fn string_span(bytes: &[u8], start: usize) -> (usize, bool) {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    // High bit set in each byte of `v` that is zero (exact for the first
    // one, which is all that is used).
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut at = start + 1;
    let mut escaped = false;
    loop {
        if let Some(word) = bytes.get(at..at + 8) {
            let mut eight = [0; 8];
            eight.copy_from_slice(word);
            let word = u64::from_le_bytes(eight);
            let stops = zero(word ^ QUOTES) | zero(word ^ BACKSLASHES);
            if stops == 0 {
                at += 8;
                continue;
            }
            at += (stops.trailing_zeros() / 8) as usize;
        }
        match bytes.get(at) {
            Some(b'"') => return (at + 1, escaped),
            // An escape is `\` and one character (`\uXXXX` goes on with
            // hex digits, never a quote): skip both.
            Some(b'\\') => {
                escaped = true;
                at += 2;
            }
            Some(_) => at += 1,
            None => return (bytes.len(), escaped),
        }
    }
}

/// Just past the value that starts at `start`.
fn value_end(bytes: &[u8], start: usize) -> usize {
    match bytes.get(start) {
        Some(b'"') => string_end(bytes, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut at = start;
            while let Some(&b) = bytes.get(at) {
                match b {
                    b'"' => {
                        at = string_end(bytes, at);
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
        // A number, `true`, `false` or `null`.
        _ => {
            let mut at = start;
            while let Some(&b) = bytes.get(at) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                at += 1;
            }
            at
        }
    }
}
