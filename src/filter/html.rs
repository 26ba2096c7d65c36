//! HTML pages: the elements of records a user may not see, removed while
//! the page streams through.
//!
//! lol_html (Cloudflare's streaming rewriter) matches CSS selectors on start
//! tags as they pass, so a decision is made when an element opens and its
//! content is dropped as it arrives: memory stays at the rewriter's
//! buffers (bounded by a [`Limit`]) whatever the page's size, and the page
//! starts reaching the client before the upstream has finished it.
//!
//! The `send` flavour of the rewriter is used so that an [`HtmlStream`] can
//! live in the proxy's per-request context, which pingora moves between
//! threads; it is `Send` but not `Sync`, so the proxy keeps it behind an
//! (uncontended) `std::sync::Mutex`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use lol_html::errors::RewritingError;
use lol_html::html_content::ContentType;
use lol_html::send;
use lol_html::{MemorySettings, OutputSink, Selector};

use super::{FilterError, Keep, KeepValues, Limit};

/// Where an element names a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdFrom {
    /// The value of this attribute (`data-company-id`).
    Attribute(String),
    /// The element's own `href`, read against a path pattern with one
    /// `{id}` (`/companies/{id}`). Query and fragment are ignored, and so
    /// is anything after the pattern's end that starts a new path segment
    /// (`/companies/co-1/contacts` names `co-1`); an absolute URL is read
    /// by its path. The id is percent-decoded.
    Href(String),
}

/// Elements that name records: a CSS selector and where each matched
/// element names its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtmlRule {
    pub selector: String,
    /// `(resource, where its id is)`: the element stays if any names a
    /// record the decision keeps. None: the element is never shown (a
    /// total over records the decision may not keep, which cannot be
    /// recounted here).
    pub refs: Vec<(String, IdFrom)>,
}

/// What becomes of a matched element whose records may not be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hide {
    /// Removed with its content.
    Remove,
    /// Replaced, content and all, by this text (escaped as text, so it
    /// cannot inject markup). Inside a table a bare text replaces a row
    /// only where the browser allows text; a notice suits `div`/`li` lists
    /// best.
    Notice(String),
}

/// A rule ready to match: its selector parsed once, its patterns split.
#[derive(Debug)]
struct Compiled {
    selector: Selector,
    refs: Vec<(String, Source)>,
}

#[derive(Debug)]
enum Source {
    Attribute(String),
    Href(HrefPattern),
}

/// `/companies/{id}/overview` as the path before the id, what ends the
/// id's own segment (`.pdf` in `/files/{id}.pdf`) and the path after it.
#[derive(Debug)]
struct HrefPattern {
    prefix: String,
    segment_end: String,
    after: String,
}

/// Compiled HTML rules, built once from configuration and shared by every
/// response's [`HtmlStream`].
#[derive(Debug, Clone)]
pub struct HtmlRules {
    rules: Vec<Arc<Compiled>>,
    hide: Arc<Hide>,
    memory: Limit,
}

impl HtmlRules {
    /// Compile `rules`. `memory` bounds each stream's buffers (a tag split
    /// across many chunks is held until it ends); past it the stream fails
    /// with [`FilterError::TooLarge`].
    pub fn new(rules: Vec<HtmlRule>, hide: Hide, memory: Limit) -> Result<HtmlRules, FilterError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            let selector: Selector = rule.selector.parse().map_err(|e| FilterError::Rule {
                rule: rule.selector.clone(),
                reason: format!("not a selector lol_html supports: {e}"),
            })?;
            let mut refs = Vec::with_capacity(rule.refs.len());
            for (resource, from) in rule.refs {
                let source = match from {
                    IdFrom::Attribute(name) => Source::Attribute(name),
                    IdFrom::Href(pattern) => Source::Href(HrefPattern::parse(&pattern)?),
                };
                refs.push((resource, source));
            }
            compiled.push(Arc::new(Compiled { selector, refs }));
        }
        Ok(HtmlRules {
            rules: compiled,
            hide: Arc::new(hide),
            memory,
        })
    }

    /// A streaming filter for one response, deciding with `keep`.
    ///
    /// The selectors are not parsed again: each rewriter gets a copy of the
    /// parsed form. (lol_html still builds its matching program per
    /// rewriter from them; that is its design, and cheap next to a page.)
    pub fn stream(&self, keep: Arc<dyn Keep>) -> HtmlStream {
        self.stream_judged(Judge::Ids(keep))
    }

    /// As [`HtmlRules::stream`], judging each element by its references'
    /// values together (see [`KeepValues`]).
    pub fn stream_values(&self, keep: Arc<dyn KeepValues>) -> HtmlStream {
        self.stream_judged(Judge::Values(keep))
    }

    fn stream_judged(&self, keep: Judge) -> HtmlStream {
        let out = Arc::new(Mutex::new(BytesMut::new()));
        let removed = Arc::new(AtomicUsize::new(0));
        let mut settings = send::Settings::new_send().with_memory_settings(
            MemorySettings::new().with_max_allowed_memory_usage(self.memory.0),
        );
        for rule in &self.rules {
            let handler = {
                let rule = Arc::clone(rule);
                let keep = keep.clone();
                let removed = Arc::clone(&removed);
                let hide = Arc::clone(&self.hide);
                move |el: &mut send::Element<'_, '_>| {
                    // Another rule may have hidden it already.
                    if el.removed() || shown(&rule, el, &keep) {
                        return Ok(());
                    }
                    match hide.as_ref() {
                        Hide::Remove => el.remove(),
                        Hide::Notice(text) => el.replace(text, ContentType::Text),
                    }
                    removed.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            };
            settings = settings.append_element_content_handler((
                Cow::Owned(rule.selector.clone()),
                send::ElementContentHandlers::default().element(handler),
            ));
        }
        let rewriter = send::HtmlRewriter::new(settings, Sink(Arc::clone(&out)));
        HtmlStream {
            rewriter: Some(rewriter),
            out,
            removed,
            limit: self.memory,
        }
    }
}

/// How elements are judged: by the records their references name, or by
/// their references' values together.
#[derive(Clone)]
enum Judge {
    Ids(Arc<dyn Keep>),
    Values(Arc<dyn KeepValues>),
}

/// The value of one reference of a matched element.
fn value(el: &send::Element<'_, '_>, source: &Source) -> Option<String> {
    match source {
        Source::Attribute(name) => el
            .get_attribute(name)
            .map(|v| decode_entities(&v).into_owned()),
        Source::Href(pattern) => el
            .get_attribute("href")
            .and_then(|h| pattern.id(&decode_entities(&h))),
    }
}

/// Whether a matched element names a record `keep` accepts, or (judged by
/// values) has values it accepts.
fn shown(rule: &Compiled, el: &send::Element<'_, '_>, keep: &Judge) -> bool {
    if rule.refs.is_empty() {
        return false;
    }
    match keep {
        Judge::Ids(keep) => rule.refs.iter().any(|(resource, source)| {
            value(el, source).is_some_and(|id| !id.is_empty() && keep.keep(resource, &id))
        }),
        Judge::Values(keep) => {
            let values: Vec<Option<String>> = rule
                .refs
                .iter()
                .map(|(_, source)| value(el, source))
                .collect();
            let values: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
            keep.keep_values(&values)
        }
    }
}

impl HrefPattern {
    fn parse(pattern: &str) -> Result<HrefPattern, FilterError> {
        let bad = |reason: &str| FilterError::Rule {
            rule: pattern.to_string(),
            reason: reason.to_string(),
        };
        let Some((prefix, rest)) = pattern.split_once("{id}") else {
            return Err(bad("a link pattern has one {id}"));
        };
        if rest.contains("{id}") {
            return Err(bad("a link pattern has one {id}"));
        }
        if !prefix.starts_with('/') {
            return Err(bad("a link pattern is a path starting with '/'"));
        }
        let (segment_end, after) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        Ok(HrefPattern {
            prefix: prefix.to_string(),
            segment_end: segment_end.to_string(),
            after: after.to_string(),
        })
    }

    /// The id in `href` (entities already decoded), if it fits the pattern.
    ///
    /// The link is read the way a browser would resolve it as far as that
    /// can change which record it names: tabs and newlines are dropped
    /// (the URL parser drops them anywhere), and a path with a `.` or `..`
    /// segment (also as `%2e`, also between backslashes, which browsers
    /// read as slashes) names nothing, because `/companies/co-1/../co-2`
    /// leads to `co-2` while its first segment says `co-1`.
    fn id(&self, href: &str) -> Option<String> {
        let cleaned;
        let href = if href.contains(['\t', '\n', '\r']) {
            cleaned = href.replace(['\t', '\n', '\r'], "");
            cleaned.as_str()
        } else {
            href
        };
        let path = path_of(href);
        if has_dot_segment(path) {
            return None;
        }
        let rest = path.strip_prefix(self.prefix.as_str())?;
        let segment_len = rest.find('/').unwrap_or(rest.len());
        let (segment, tail) = rest.split_at(segment_len);
        let raw = segment.strip_suffix(self.segment_end.as_str())?;
        let after = tail.strip_prefix(self.after.as_str())?;
        if !(after.is_empty() || after.starts_with('/') || self.after.ends_with('/')) {
            return None;
        }
        let id = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        Some(id.into_owned())
    }
}

/// Whether a path has a `.` or `..` segment, percent-encoded or not, with
/// `\` read as `/`.
fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        decoded == "." || decoded == ".."
    })
}

/// The path of a link: without scheme and host, query or fragment.
fn path_of(href: &str) -> &str {
    let href = href.trim();
    let end = href.find(['?', '#']).unwrap_or(href.len());
    let href = &href[..end];
    let after_authority = |rest: &'_ str| -> usize { rest.find('/').unwrap_or(rest.len()) };
    if let Some(rest) = href.strip_prefix("//") {
        return &rest[after_authority(rest)..];
    }
    if let Some((scheme, rest)) = href.split_once("://") {
        let is_scheme = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if is_scheme {
            return &rest[after_authority(rest)..];
        }
    }
    href
}

/// An attribute value as the browser reads it, for the character
/// references an id or a link plausibly holds: numeric ones and `&amp;`,
/// `&lt;`, `&gt;`, `&quot;`, `&apos;`. Any other `&` stays as written, so
/// an id with an unusual named reference reaches the decision misspelt
/// and, failing closed, is not kept.
fn decode_entities(value: &str) -> Cow<'_, str> {
    if !value.contains('&') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|semi| {
            let name = &rest[1..semi];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let num = name.strip_prefix('#')?;
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse::<u32>().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

// === impl HtmlStream ===

/// Where the rewriter writes: a buffer the stream empties after every
/// chunk. A shared handle because the rewriter owns its sink; the lock is
/// never contended (one stream, one thread at a time).
struct Sink(Arc<Mutex<BytesMut>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(chunk);
    }
}

/// One response's HTML filter: feed the upstream's chunks to
/// [`HtmlStream::write`], send on what it returns, and call
/// [`HtmlStream::end`] at the end of the body.
pub struct HtmlStream {
    /// `None` once it failed: lol_html panics if used after an error.
    rewriter: Option<send::HtmlRewriter<'static, Sink>>,
    out: Arc<Mutex<BytesMut>>,
    removed: Arc<AtomicUsize>,
    limit: Limit,
}

impl std::fmt::Debug for HtmlStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HtmlStream")
            .field("failed", &self.rewriter.is_none())
            .field("removed", &self.removed())
            .finish_non_exhaustive()
    }
}

impl HtmlStream {
    /// Filter the next chunk; the output may be empty (a tag still open)
    /// or hold earlier input. After an error the response cannot be
    /// completed: answer the error, and every further call fails.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Bytes, FilterError> {
        let rewriter = self.rewriter.as_mut().ok_or(FilterError::Failed)?;
        if let Err(e) = rewriter.write(chunk) {
            self.rewriter = None;
            return Err(self.error(e));
        }
        Ok(self.take())
    }

    /// Finish: the rest of the output.
    pub fn end(mut self) -> Result<Bytes, FilterError> {
        let rewriter = self.rewriter.take().ok_or(FilterError::Failed)?;
        rewriter.end().map_err(|e| self.error(e))?;
        Ok(self.take())
    }

    /// Matched elements hidden so far (counting ones inside a hidden
    /// element too).
    pub fn removed(&self) -> usize {
        self.removed.load(Ordering::Relaxed)
    }

    fn take(&self) -> Bytes {
        self.out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .split()
            .freeze()
    }

    fn error(&self, e: RewritingError) -> FilterError {
        match e {
            RewritingError::MemoryLimitExceeded(_) => FilterError::TooLarge {
                limit: self.limit.0,
            },
            RewritingError::ParsingAmbiguity(_) => FilterError::malformed(
                "the page's markup is ambiguous where a filtered element may be \
                 (an unclosed <select>, <noscript> or similar)",
            ),
            // Our handlers never fail; the enum is non-exhaustive.
            _ => FilterError::malformed("the HTML filter failed on an element"),
        }
    }
}
