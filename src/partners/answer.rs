//! What the partner rules do to the app's answer: lists, records and pages
//! keep only the records assigned to the partner.
//!
//! A route says how its answer shows records ([`AnswerFilters`]): a JSON
//! list at a pointer, one JSON record, or HTML elements by CSS selector.
//! For a partner user's request, [`start`] looks at the answer's header and
//! picks the filter; [`AnswerFilter::chunk`] runs it over the body.
//!
//! # Failing closed
//!
//! An answer that cannot be filtered is never passed on unfiltered:
//! - known from the header (a body announced larger than the limit, a
//!   compressed body, a content type the route's shapes do not read), the
//!   answer is replaced by a 502 that says why;
//! - known only from the body (JSON that does not parse or lacks the list,
//!   a body past the limit without a length up front, a single record not
//!   assigned): the proxy answers the refusal if pingora has not sent the
//!   status line yet (it holds it while the body filter holds the body
//!   back, as for a JSON answer that arrives whole), and otherwise cuts the
//!   response off: the client sees a broken answer, never the records.
//!
//! Only successful answers (2xx) are filtered: the app's error pages name
//! no records the request did not, and those were checked by stage 7.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pingora::http::ResponseHeader;

use super::{PartnerError, PartnerKeep};
use crate::filter::{Buffer, FilterError, Head, HtmlStream, JsonList, JsonRecord, Keep, Limit};
use crate::respond::{self, Format, Refuse};
use crate::routes::AnswerFilters;

/// A partner user's records: what [`crate::filter`] keeps.
impl Keep for PartnerKeep {
    fn keep(&self, resource: &str, id: &str) -> bool {
        self.assigned(resource, id)
    }
}

/// One answer's filter, from its header to its end.
pub enum AnswerFilter {
    /// JSON, collected whole up to the limit and filtered at its end.
    Json {
        buffer: Buffer,
        list: Option<Arc<JsonList>>,
        record: Option<Arc<JsonRecord>>,
        keep: PartnerKeep,
        /// The route's resource, to name in a refusal.
        resource: String,
    },
    /// HTML, rewritten chunk by chunk. The rewriter is `Send` but not
    /// `Sync`, and pingora wants the request context `Sync`: an
    /// uncontended mutex makes it so.
    Html(Box<Mutex<Option<HtmlStream>>>),
    /// Refused at the header: the app's body is dropped and this refusal
    /// sent in its place.
    Refused {
        body: Option<Bytes>,
        /// Its reason code, for the metric.
        code: &'static str,
    },
}

/// Why a filtered answer failed after its header went out.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Partner(#[from] PartnerError),
}

impl Refuse for AnswerError {
    fn status(&self) -> u16 {
        match self {
            AnswerError::Filter(e) => e.status(),
            AnswerError::Partner(e) => e.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AnswerError::Filter(e) => e.code(),
            AnswerError::Partner(e) => e.code(),
        }
    }
    fn title(&self) -> &'static str {
        match self {
            AnswerError::Filter(e) => e.title(),
            AnswerError::Partner(e) => e.title(),
        }
    }
}

/// Pick the filter for an answer with header `resp` to a partner user's
/// request on a route with `filters`; `None` when there is nothing to do.
/// A refusal known now rewrites `resp` into it.
pub fn start(
    filters: &AnswerFilters,
    keep: &PartnerKeep,
    resp: &mut ResponseHeader,
    limit: Limit,
    format: Format,
    resource: Option<&str>,
) -> pingora::Result<Option<AnswerFilter>> {
    if filters.is_empty() || !resp.status.is_success() || resp.status.as_u16() == 204 {
        return Ok(None);
    }
    let head = Head::of(resp);
    let (json, html) = (head.is_json(), head.is_html());
    let shape_found = (json && (filters.json_list.is_some() || filters.json_record.is_some()))
        || (html && filters.html.is_some());
    let refused = if !shape_found {
        Some(FilterError::malformed(format!(
            "the answer is `{}`, not the {} this route's records are read from",
            head.content_type,
            expected(filters)
        )))
    } else if head.compressed() {
        Some(head.compressed_error("answer"))
    } else if json && head.length.is_some_and(|l| l > limit.0) {
        Some(FilterError::TooLarge { limit: limit.0 })
    } else {
        None
    };
    if let Some(e) = refused {
        return refusal(resp, &e, format).map(Some);
    }
    Head::body_rewritten(resp);
    if json {
        let mut buffer = Buffer::new(limit);
        if let Some(l) = head.length {
            buffer.expect(l);
        }
        return Ok(Some(AnswerFilter::Json {
            buffer,
            list: filters.json_list.clone(),
            record: filters.json_record.clone(),
            keep: keep.clone(),
            resource: resource.unwrap_or("record").to_string(),
        }));
    }
    let Some(rules) = &filters.html else {
        return Ok(None);
    };
    let stream = rules.stream(Arc::new(keep.clone()));
    Ok(Some(AnswerFilter::Html(Box::new(Mutex::new(Some(stream))))))
}

fn expected(filters: &AnswerFilters) -> &'static str {
    match (
        filters.json_list.is_some() || filters.json_record.is_some(),
        filters.html.is_some(),
    ) {
        (true, true) => "JSON or HTML",
        (true, false) => "JSON",
        _ => "HTML",
    }
}

/// Turn `resp` into the refusal `e`, whose body [`AnswerFilter::chunk`]
/// sends in place of the app's.
fn refusal(
    resp: &mut ResponseHeader,
    e: &FilterError,
    format: Format,
) -> pingora::Result<AnswerFilter> {
    let body = respond::replace_answer(resp, e, format)?;
    Ok(AnswerFilter::Refused {
        body: Some(body),
        code: e.code(),
    })
}

impl AnswerFilter {
    /// Run the filter over one chunk of the app's body (`None` when the
    /// chunk is held back), and finish it at `end`.
    pub fn chunk(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<(), AnswerError> {
        match self {
            AnswerFilter::Refused { body: refusal, .. } => {
                *body = if end { refusal.take() } else { None };
                Ok(())
            }
            AnswerFilter::Json {
                buffer,
                list,
                record,
                keep,
                resource,
            } => {
                if let Some(b) = body.take() {
                    buffer.push(&b)?;
                }
                if !end {
                    return Ok(());
                }
                let whole = std::mem::replace(buffer, Buffer::new(Limit(0))).finish()?;
                if let Some(r) = record {
                    if !r.check(&whole, keep)? {
                        return Err(PartnerError::NotAssigned {
                            resource: resource.clone(),
                        }
                        .into());
                    }
                }
                *body = Some(match list {
                    Some(l) => l.apply(&whole, keep)?.body,
                    None => whole,
                });
                Ok(())
            }
            AnswerFilter::Html(stream) => {
                let guard = stream.get_mut().unwrap_or_else(|e| e.into_inner());
                let Some(s) = guard.as_mut() else {
                    return Err(FilterError::Failed.into());
                };
                let mut out = match body.take() {
                    Some(b) => s.write(&b)?,
                    None => Bytes::new(),
                };
                if end {
                    if let Some(s) = guard.take() {
                        let rest = s.end()?;
                        out = if out.is_empty() {
                            rest
                        } else {
                            [out, rest].concat().into()
                        };
                    }
                }
                if !out.is_empty() {
                    *body = Some(out);
                }
                Ok(())
            }
        }
    }
}
