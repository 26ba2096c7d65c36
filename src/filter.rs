//! Response filtering: rewriting upstream bodies so they hold only the
//! records a user may see.
//!
//! Partner users see only their partner's companies, relationships and
//! reports; data-permission rules narrow that further; impersonators must
//! not see contacts and leads. All three need the same operation on an
//! answer of the legacy app: find where each item or element names a
//! record, ask the request's decision ([`Keep`]) about it, and drop what
//! may not be shown. This module owns that operation and nothing about
//! who may see what: the caller brings the decision.
//!
//! - [`JsonList`] filters a JSON list at a pointer and corrects the counts
//!   beside it; [`JsonRecord`] says whether a single record may be shown;
//!   [`JsonRedact`] removes named fields instead of whole items. JSON is
//!   parsed whole (a list cannot be judged before its end in general), so
//!   the caller collects the body in a [`Buffer`] bounded by a [`Limit`].
//! - [`HtmlRules`] are CSS selectors compiled once; [`HtmlRules::stream`]
//!   gives a streaming [`HtmlStream`] per response that removes the
//!   matched elements of records not kept, chunk by chunk, in bounded
//!   memory.
//!
//! # Failing closed
//!
//! An item or element is kept only when one of its configured references
//! names a record [`Keep`] accepts. One that carries none of them is
//! removed: no evidence of assignment is no assignment. A body that cannot
//! be filtered (too large, not JSON, not the configured shape) is an error
//! ([`FilterError`], a 502 through [`crate::respond::Refuse`]); the caller
//! must answer it and never pass the body on unfiltered.

mod head;
mod html;
mod json;
mod pointer;
mod scan;

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

use crate::respond::Refuse;

pub use head::Head;
pub use html::{Hide, HtmlRule, HtmlRules, HtmlStream, IdFrom};
pub use json::{JsonList, JsonRecord, JsonRedact};

/// The per-request decision: may this record be shown? `resource` is a
/// configured resource name (`company`, `relationship`, `report`,
/// `partner`...), `id` the record's id as the app wrote it (a JSON string's
/// value, a JSON number's digits, an HTML attribute's value or a link's
/// path segment, decoded).
///
/// `Send + Sync` because the HTML stream holds it for the whole response
/// inside the proxy's per-request context, which pingora moves between
/// threads.
pub trait Keep: Send + Sync {
    fn keep(&self, resource: &str, id: &str) -> bool;
}

/// Any `Fn(resource, id) -> bool` is a decision (tests, benches, simple
/// callers).
impl<F: Fn(&str, &str) -> bool + Send + Sync> Keep for F {
    fn keep(&self, resource: &str, id: &str) -> bool {
        self(resource, id)
    }
}

/// The per-record decision over its values: data permissions judge a
/// record by its attributes (`Name`, `Business Unit`), not by its id.
/// `values[i]` is the value at the i-th configured reference, decoded: a
/// JSON string's text (empty included), a number as written, `true` or
/// `false`, an HTML attribute's decoded value; `None` where the item has
/// none (absent, null, an object or an array).
pub trait KeepValues: Send + Sync {
    fn keep_values(&self, values: &[Option<&str>]) -> bool;
}

/// A filtered body and how many items (or, for [`JsonRedact`], fields) were
/// taken out of it, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    pub body: Bytes,
    pub removed: usize,
}

/// Why a response could not be filtered (or a rule could not be built).
///
/// Messages say what happened and where in the configured shape, never what
/// the body held: they reach the client and the logs.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The body (JSON) or the rewriter's buffers (HTML) would pass the
    /// configured limit.
    #[error("the upstream response is too large to filter (limit {limit} bytes)")]
    TooLarge { limit: usize },
    /// The body is not of the shape the rule expects.
    #[error("the upstream response could not be filtered: {reason}")]
    Malformed { reason: String },
    /// A rule that cannot work (bad pointer, bad selector): found when the
    /// rules are built from configuration, never while filtering.
    #[error("filter rule {rule:?}: {reason}")]
    Rule { rule: String, reason: String },
    /// The stream was used after it had failed: its output so far is not a
    /// whole filtered body.
    #[error("the response filter already failed on this response")]
    Failed,
}

impl FilterError {
    pub(crate) fn malformed(reason: impl Into<String>) -> FilterError {
        FilterError::Malformed {
            reason: reason.into(),
        }
    }
}

impl Refuse for FilterError {
    fn status(&self) -> u16 {
        match self {
            // A rule is the gateway's own configuration, not the upstream.
            FilterError::Rule { .. } => 500,
            _ => 502,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            FilterError::TooLarge { .. } => "filter_too_large",
            FilterError::Malformed { .. } => "filter_malformed",
            FilterError::Rule { .. } => "filter_rule",
            FilterError::Failed => "filter_failed",
        }
    }
}

/// The most bytes a filter holds for one response: the whole body for JSON,
/// the rewriter's buffers for HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub usize);

/// A response body collected chunk by chunk up to a [`Limit`], for the JSON
/// filters, which need it whole.
///
/// Past the limit it refuses and lets go of what it held: the response is
/// lost anyway (the caller answers 502), and a proxy holding every refused
/// body to its end is how a few large answers exhaust memory.
#[derive(Debug)]
pub struct Buffer {
    limit: usize,
    data: BytesMut,
    over: bool,
}

impl Buffer {
    pub fn new(limit: Limit) -> Buffer {
        Buffer {
            limit: limit.0,
            data: BytesMut::new(),
            over: false,
        }
    }

    /// Reserve room for a body announced as `len` bytes (`Content-Length`),
    /// never more than the limit, so the common case allocates once.
    pub fn expect(&mut self, len: usize) {
        if !self.over {
            self.data
                .reserve(len.min(self.limit).saturating_sub(self.data.len()));
        }
    }

    /// Append `chunk`, or refuse if the body would pass the limit. After a
    /// refusal every push is refused and nothing is held.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), FilterError> {
        if self.over || self.data.len().saturating_add(chunk.len()) > self.limit {
            self.over = true;
            self.data = BytesMut::new();
            return Err(FilterError::TooLarge { limit: self.limit });
        }
        self.data.extend_from_slice(chunk);
        Ok(())
    }

    /// What was collected so far.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Bytes held now (0 after a refusal).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Memory reserved now, to check that a refused buffer stays small.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// The whole body, or the refusal if it passed the limit.
    pub fn finish(self) -> Result<Bytes, FilterError> {
        if self.over {
            return Err(FilterError::TooLarge { limit: self.limit });
        }
        Ok(self.data.freeze())
    }
}
