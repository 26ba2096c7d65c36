//! JSON lists, single records and field redaction.
//!
//! A list is checked and read in one pass by guise's own reader
//! ([`super::scan`]), which refuses what serde_json refuses and finds each
//! item's references as it checks the item. A single record and a
//! redaction read the body once with serde_json's borrowed deserializer
//! (see [`super::pointer`]). The output is the input with spans cut out or
//! replaced: removed items, corrected counts, redacted items. Everything
//! else keeps the upstream's bytes, so key order, number spelling and
//! escapes survive without `serde_json`'s `preserve_order` (which would
//! change the order of every `serde_json::Value` map in the crate) and
//! without building a `Value` tree, the slow part of a round trip.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::pointer::{Failure, Found, Key, Pointer, Trie};
use super::scan;
use super::{FilterError, Filtered, Keep, KeepValues};

/// Where items name records: resource names and the pointers, within an
/// item, to their ids.
#[derive(Debug, Clone)]
struct Refs {
    resources: Vec<String>,
    pointers: Vec<Pointer>,
    trie: Trie,
}

impl Refs {
    fn new<R, P>(refs: impl IntoIterator<Item = (R, P)>) -> Result<Refs, FilterError>
    where
        R: Into<String>,
        P: AsRef<str>,
    {
        let mut resources = Vec::new();
        let mut pointers = Vec::new();
        for (r, p) in refs {
            resources.push(r.into());
            pointers.push(Pointer::parse(p.as_ref())?);
        }
        if pointers.is_empty() {
            // Every item would be removed: surely not what was meant.
            return Err(FilterError::Rule {
                rule: String::new(),
                reason: "a filter needs at least one reference".into(),
            });
        }
        disjoint(&pointers, "two references")?;
        let trie = Trie::new(&pointers);
        Ok(Refs {
            resources,
            pointers,
            trie,
        })
    }

    /// Whether an item whose references hold `found` (by index, as the
    /// [`scan`] walk of `self.trie` fills it) names a record `keep`
    /// accepts.
    fn keeps(&self, found: &[Option<&str>], judge: Judge<'_>) -> bool {
        match judge {
            Judge::Ids(keep) => self.resources.iter().zip(found).any(|(resource, value)| {
                value
                    .and_then(id_of)
                    .is_some_and(|id| keep.keep(resource, &id))
            }),
            Judge::Values(keep) => {
                let decoded: smallvec::SmallVec<[Option<Cow<'_, str>>; 8]> =
                    found.iter().map(|v| v.and_then(value_of)).collect();
                // Borrowed into an array rather than collected: this runs
                // once per list item, and a second collect was a twentieth
                // of filtering a list.
                let mut borrowed = [None; 8];
                if let Some(slots) = borrowed.get_mut(..decoded.len()) {
                    for (slot, v) in slots.iter_mut().zip(&decoded) {
                        *slot = v.as_deref();
                    }
                    return keep.keep_values(slots);
                }
                let values: Vec<Option<&str>> = decoded.iter().map(|v| v.as_deref()).collect();
                keep.keep_values(&values)
            }
        }
    }
}

/// How items are judged: by the records their references name, or by
/// their references' values together.
#[derive(Clone, Copy)]
enum Judge<'a> {
    Ids(&'a dyn Keep),
    Values(&'a dyn KeepValues),
}

/// A field's value as a rule reads it: a string's text (empty included),
/// a number as written, `true` or `false`. Null, objects and arrays have
/// none.
fn value_of(text: &str) -> Option<Cow<'_, str>> {
    match text.as_bytes().first()? {
        b'"' => {
            let inner = text.get(1..text.len().saturating_sub(1))?;
            if inner.contains('\\') {
                serde_json::from_str::<String>(text).ok().map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(inner))
            }
        }
        b'-' | b'0'..=b'9' | b't' | b'f' => Some(Cow::Borrowed(text)),
        _ => None,
    }
}

/// Refuse pointers that contain one another (equal ones may be read by two
/// rules): their spans would overlap in the output.
fn disjoint(pointers: &[Pointer], what: &str) -> Result<(), FilterError> {
    for (i, a) in pointers.iter().enumerate() {
        for b in &pointers[i + 1..] {
            if a != b && (a.contains(b) || b.contains(a)) {
                return Err(FilterError::Rule {
                    rule: format!("{} and {}", a.as_str(), b.as_str()),
                    reason: format!("{what} may not point inside one another"),
                });
            }
        }
    }
    Ok(())
}

/// A record id: a JSON string's value or a JSON number as written. Any
/// other value (null, a boolean, an object) names no record, and neither
/// does an empty string.
fn id_of(text: &str) -> Option<Cow<'_, str>> {
    let id = match text.as_bytes().first()? {
        b'"' => {
            let inner = text.get(1..text.len().saturating_sub(1))?;
            if inner.contains('\\') {
                Cow::Owned(serde_json::from_str::<String>(text).ok()?)
            } else {
                Cow::Borrowed(inner)
            }
        }
        b'-' | b'0'..=b'9' => Cow::Borrowed(text),
        _ => return None,
    };
    (!id.is_empty()).then_some(id)
}

/// The body as text: JSON is UTF-8 (RFC 8259).
fn text(body: &[u8]) -> Result<&str, FilterError> {
    std::str::from_utf8(body).map_err(|_| FilterError::malformed("the body is not UTF-8 JSON"))
}

/// A walk failure as the client may read it: serde_json's own messages can
/// quote the body, so only its category and position are kept.
fn failure(f: Failure, pointer: &Pointer) -> FilterError {
    match f {
        Failure::Json(e) => {
            let what = match e.classify() {
                serde_json::error::Category::Eof => "the body is truncated JSON",
                serde_json::error::Category::Syntax => "the body is not JSON",
                serde_json::error::Category::Data | serde_json::error::Category::Io => {
                    "the body is not JSON of the expected shape"
                }
            };
            FilterError::malformed(format!("{what} (line {}, column {})", e.line(), e.column()))
        }
        Failure::Syntax {
            truncated,
            line,
            column,
        } => {
            let what = if truncated {
                "the body is truncated JSON"
            } else {
                "the body is not JSON"
            };
            FilterError::malformed(format!("{what} (line {line}, column {column})"))
        }
        Failure::Duplicate => FilterError::malformed(format!(
            "a key on the path to {pointer} appears twice in one object"
        )),
        Failure::BadKey => FilterError::malformed(format!(
            "an object key within {pointer} is not valid Unicode"
        )),
    }
}

/// Where a slice of `text` starts in it. Every slice handed out by the
/// borrowed deserializer lies inside its input.
fn offset(text: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize)
}

/// What replaces a span of the body.
enum Edit<'a> {
    Text(Vec<u8>),
    /// These items, comma-separated: written straight into the output
    /// rather than joined first, as a list is most of a body.
    Items(Vec<&'a str>),
}

/// Replace spans of `text` (sorted, not overlapping) and return the result.
fn splice(text: &str, edits: &mut [(usize, usize, Edit<'_>)]) -> Result<Bytes, FilterError> {
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for (start, end, with) in edits.iter() {
        let before = text
            .as_bytes()
            .get(at..*start)
            .ok_or_else(|| FilterError::malformed("overlapping filter spans"))?;
        out.extend_from_slice(before);
        match with {
            Edit::Text(text) => out.extend_from_slice(text),
            Edit::Items(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(item.as_bytes());
                }
            }
        }
        at = *end;
    }
    out.extend_from_slice(text.as_bytes().get(at..).unwrap_or_default());
    Ok(Bytes::from(out))
}

// === impl JsonList ===

/// A JSON list filter: the array at `pointer` keeps the items that name a
/// record [`Keep`] accepts (by any of `refs`), and the numbers at `counts`
/// (`/meta/total`) are decreased by the number removed.
#[derive(Debug, Clone)]
pub struct JsonList {
    pointer: Pointer,
    refs: Refs,
    counts: Vec<Pointer>,
    /// The list pointer (index 0) and the counts (1..), walked together.
    walk: Trie,
}

impl JsonList {
    /// `pointer` (RFC 6901) to the array, e.g. `/data`; `refs` as
    /// `(resource, pointer within an item)`, e.g. `("company",
    /// "/company_id")`; `counts` as pointers to numbers, e.g.
    /// `/meta/total`.
    pub fn new<R, P, C>(
        pointer: &str,
        refs: impl IntoIterator<Item = (R, P)>,
        counts: impl IntoIterator<Item = C>,
    ) -> Result<JsonList, FilterError>
    where
        R: Into<String>,
        P: AsRef<str>,
        C: AsRef<str>,
    {
        let pointer = Pointer::parse(pointer)?;
        let refs = Refs::new(refs)?;
        let counts = counts
            .into_iter()
            .map(|c| Pointer::parse(c.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut all = vec![pointer.clone()];
        all.extend(counts.iter().cloned());
        if let Some(c) = counts.iter().find(|c| **c == pointer) {
            return Err(FilterError::Rule {
                rule: c.as_str().to_string(),
                reason: "a count may not be the list itself".into(),
            });
        }
        disjoint(&all, "the list and its counts")?;
        let walk = Trie::new(&all);
        Ok(JsonList {
            pointer,
            refs,
            counts,
            walk,
        })
    }

    /// Filter `body`, a whole JSON document (bounded by the caller, see
    /// [`super::Buffer`]). A count that is absent or `null` is left alone;
    /// one that is not a non-negative integer makes the body malformed, as
    /// does a list pointer that names nothing or no array.
    pub fn apply(&self, body: &[u8], keep: &dyn Keep) -> Result<Filtered, FilterError> {
        self.apply_judged(body, Judge::Ids(keep))
    }

    /// As [`JsonList::apply`], judging each item by its references' values
    /// together (see [`KeepValues`]) rather than by the records they name.
    pub fn apply_values(
        &self,
        body: &[u8],
        keep: &dyn KeepValues,
    ) -> Result<Filtered, FilterError> {
        self.apply_judged(body, Judge::Values(keep))
    }

    fn apply_judged(&self, body: &[u8], keep: Judge<'_>) -> Result<Filtered, FilterError> {
        let text = text(body)?;
        // One pass checks the whole body, finds the list and the counts,
        // and reads each item's references as it goes (see `scan`).
        let mut found = vec![None; 1 + self.counts.len()];
        // Spans of every item, and whether it stays.
        let mut items: Vec<(&str, bool)> = Vec::new();
        let mut removed = 0usize;
        let mut scratch = vec![None; self.refs.pointers.len()];
        let mut each = |item, found: &[Option<&str>]| {
            let kept = self.refs.keeps(found, keep);
            removed += usize::from(!kept);
            items.push((item, kept));
        };
        scan::check_document(
            text,
            &self.walk,
            &mut found,
            Some(scan::List {
                trie: &self.refs.trie,
                found: &mut scratch,
                each: &mut each,
            }),
        )
        .map_err(|f| failure(f, &self.pointer))?;
        let counts = found.split_off(1);
        let Some(list) = found.first().copied().flatten() else {
            return Err(FilterError::malformed(format!(
                "{} names nothing",
                self.pointer
            )));
        };
        if !list.starts_with('[') {
            return Err(FilterError::malformed(format!(
                "{} is not an array",
                self.pointer
            )));
        }
        // Counts are checked even when nothing is removed, so a body is
        // refused or not whatever the decision.
        let mut edits = Vec::with_capacity(1 + counts.len());
        for (pointer, value) in self.counts.iter().zip(counts) {
            let Some(value) = value else { continue };
            if value == "null" {
                continue;
            }
            let n: u64 = value.parse().map_err(|_| {
                FilterError::malformed(format!("the count at {pointer} is not a whole number"))
            })?;
            let start = offset(text, value);
            let corrected = n.saturating_sub(removed as u64).to_string();
            edits.push((
                start,
                start + value.len(),
                Edit::Text(corrected.into_bytes()),
            ));
        }
        if removed == 0 {
            return Ok(Filtered {
                body: Bytes::copy_from_slice(body),
                removed: 0,
            });
        }
        if let (Some(first), Some(last)) = (items.first(), items.last()) {
            let start = offset(text, first.0);
            let end = offset(text, last.0) + last.0.len();
            let kept = items
                .iter()
                .filter(|(_, kept)| *kept)
                .map(|(item, _)| *item)
                .collect();
            edits.push((start, end, Edit::Items(kept)));
        }
        Ok(Filtered {
            body: splice(text, &mut edits)?,
            removed,
        })
    }
}

// === impl JsonRecord ===

/// A single JSON record (`GET /api/companies/co-1` answering `{"data":
/// {...}}`): may it be shown?
#[derive(Debug, Clone)]
pub struct JsonRecord {
    pointer: Pointer,
    refs: Refs,
    walk: Trie,
}

impl JsonRecord {
    /// `pointer` to the record, `refs` as for [`JsonList::new`].
    pub fn new<R, P>(
        pointer: &str,
        refs: impl IntoIterator<Item = (R, P)>,
    ) -> Result<JsonRecord, FilterError>
    where
        R: Into<String>,
        P: AsRef<str>,
    {
        let pointer = Pointer::parse(pointer)?;
        let walk = Trie::new([&pointer]);
        Ok(JsonRecord {
            pointer,
            refs: Refs::new(refs)?,
            walk,
        })
    }

    /// Whether the record in `body` may be shown. A pointer that names
    /// nothing makes the body malformed: the caller cannot show an answer
    /// it cannot judge.
    pub fn check(&self, body: &[u8], keep: &dyn Keep) -> Result<bool, FilterError> {
        self.check_judged(body, Judge::Ids(keep))
    }

    /// As [`JsonRecord::check`], judging the record by its references'
    /// values together (see [`KeepValues`]).
    pub fn check_values(&self, body: &[u8], keep: &dyn KeepValues) -> Result<bool, FilterError> {
        self.check_judged(body, Judge::Values(keep))
    }

    fn check_judged(&self, body: &[u8], keep: Judge<'_>) -> Result<bool, FilterError> {
        let text = text(body)?;
        let mut found = Found::new(1);
        self.walk
            .walk(text, &mut found)
            .map_err(|f| failure(f, &self.pointer))?;
        let Some(record) = found.values.first().copied().flatten() else {
            return Err(FilterError::malformed(format!(
                "{} names nothing",
                self.pointer
            )));
        };
        let mut found = vec![None; self.refs.pointers.len()];
        scan::walk(&self.refs.trie, record, &mut found).map_err(|f| failure(f, &self.pointer))?;
        Ok(self.refs.keeps(&found, keep))
    }
}

// === impl JsonRedact ===

/// Field redaction: the named fields are taken out of each item of the
/// array at `pointer` (or out of the object there), the rest of the item
/// kept. For what an impersonator may see of a record but not all of it.
#[derive(Debug, Clone)]
pub struct JsonRedact {
    pointer: Pointer,
    walk: Trie,
    fields: Trie,
}

impl JsonRedact {
    /// `fields` are pointers within an item (`/email`, `/owner/phone`)
    /// through objects only.
    pub fn new<F: AsRef<str>>(
        pointer: &str,
        fields: impl IntoIterator<Item = F>,
    ) -> Result<JsonRedact, FilterError> {
        let pointer = Pointer::parse(pointer)?;
        let fields = fields
            .into_iter()
            .map(|f| Pointer::parse(f.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(f) = fields.iter().find(|f| f.tokens().is_empty()) {
            return Err(FilterError::Rule {
                rule: f.as_str().to_string(),
                reason: "a redacted field cannot be the whole item".into(),
            });
        }
        disjoint(&fields, "redacted fields")?;
        let walk = Trie::new([&pointer]);
        Ok(JsonRedact {
            pointer,
            walk,
            fields: Trie::new(&fields),
        })
    }

    /// Redact `body`; [`Filtered::removed`] counts the fields taken out. A
    /// pointer that names nothing, or something other than an array or an
    /// object, makes the body malformed.
    pub fn apply(&self, body: &[u8]) -> Result<Filtered, FilterError> {
        let text = text(body)?;
        let mut found = Found::new(1);
        self.walk
            .walk(text, &mut found)
            .map_err(|f| failure(f, &self.pointer))?;
        let Some(target) = found.values.first().copied().flatten() else {
            return Err(FilterError::malformed(format!(
                "{} names nothing",
                self.pointer
            )));
        };
        let items: Vec<&RawValue> = match target.get().as_bytes().first() {
            Some(b'[') => serde_json::from_str(target.get())
                .map_err(|e| failure(Failure::Json(e), &self.pointer))?,
            Some(b'{') => vec![target],
            _ => {
                return Err(FilterError::malformed(format!(
                    "{} is neither an array nor an object",
                    self.pointer
                )))
            }
        };
        let mut removed = 0;
        let mut edits = Vec::new();
        for item in items {
            if let Some(redacted) = redact(item, &self.fields, &mut removed)
                .map_err(|e| failure(Failure::Json(e), &self.pointer))?
            {
                let start = offset(text, item.get());
                edits.push((
                    start,
                    start + item.get().len(),
                    Edit::Text(redacted.into_bytes()),
                ));
            }
        }
        if edits.is_empty() {
            return Ok(Filtered {
                body: Bytes::copy_from_slice(body),
                removed,
            });
        }
        Ok(Filtered {
            body: splice(text, &mut edits)?,
            removed,
        })
    }
}

/// `value` without the fields `trie` names, if it had any (`None`: leave it
/// as it is). Members are written back compactly in their order.
fn redact(
    value: &RawValue,
    trie: &Trie,
    removed: &mut usize,
) -> Result<Option<String>, serde_json::Error> {
    if !value.get().starts_with('{') {
        return Ok(None);
    }
    let members: Members<'_> = serde_json::from_str(value.get())?;
    let mut changed = false;
    let mut out = String::with_capacity(value.get().len());
    out.push('{');
    for (key, v) in &members.0 {
        let replaced = match trie.under(key) {
            Some(t) if !t.leaf().is_empty() => {
                *removed += 1;
                changed = true;
                continue;
            }
            Some(t) => redact(v, t, removed)?,
            None => None,
        };
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key.as_ref())?);
        out.push(':');
        match replaced {
            Some(r) => {
                changed = true;
                out.push_str(&r);
            }
            None => out.push_str(v.get()),
        }
    }
    out.push('}');
    Ok(changed.then_some(out))
}

/// An object's members in their order, values unparsed.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    members.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}
