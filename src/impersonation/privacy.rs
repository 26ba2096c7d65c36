//! Privacy while impersonating (Unifyr's GDPR settings): an admin viewing
//! the app as a partner user is not shown the partner's contacts and leads,
//! and may not export them.
//!
//! Routes carry the tags: `personal_data` (contacts, leads) and `export`.
//! For an impersonator who is not exempt:
//! - `hide_contacts_and_leads`: a JSON list comes without its records (or
//!   only without `hidden_fields`), through the same response filter as
//!   the partner rules; a single record is 404; a page is a notice instead;
//! - `disable_contacts_and_leads_export`: an export route is 403, and so is
//!   a personal-data answer that is a file download.
//!
//! The decision is made at the request (pipeline stage 7b) from the route
//! alone, so a refusal costs the upstream nothing.

use std::sync::Arc;

use bytes::Bytes;
use pingora::http::ResponseHeader;

use crate::config::impersonation::Privacy as Settings;
use crate::filter::{Buffer, FilterError, Head, JsonList, JsonRedact, Keep, Limit};
use crate::respond::{self, Format, Refuse};
use crate::routes::RouteSpec;
use crate::subject::Subject;

/// Why an impersonator was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("exports are disabled while viewing the app as another user")]
    ExportBlocked,
    #[error("contacts and leads are hidden while viewing the app as another user")]
    HiddenRecord,
    #[error("contacts and leads are hidden while viewing the app as another user; return to your own view to see this page")]
    HiddenPage,
    #[error(transparent)]
    Filter(#[from] FilterError),
}

impl Refuse for PrivacyError {
    fn status(&self) -> u16 {
        match self {
            PrivacyError::ExportBlocked | PrivacyError::HiddenPage => 403,
            PrivacyError::HiddenRecord => 404,
            PrivacyError::Filter(e) => e.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            PrivacyError::ExportBlocked => "export_blocked_while_impersonating",
            PrivacyError::HiddenRecord | PrivacyError::HiddenPage => "hidden_while_impersonating",
            PrivacyError::Filter(e) => e.code(),
        }
    }
    fn title(&self) -> &'static str {
        match self {
            PrivacyError::ExportBlocked => "Export disabled",
            PrivacyError::HiddenRecord | PrivacyError::HiddenPage => "Hidden while impersonating",
            PrivacyError::Filter(e) => e.title(),
        }
    }
}

/// What the privacy rules do to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// The answer's JSON list is emptied (or redacted).
    pub hide_list: bool,
    /// A file download in the answer is refused.
    pub no_downloads: bool,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        !self.hide_list && !self.no_downloads
    }
}

/// Pipeline stage 7b: what the privacy rules make of this request.
pub fn decide(
    settings: &Settings,
    subject: Option<&Subject>,
    route: Option<&RouteSpec>,
) -> Result<Rules, PrivacyError> {
    let (Some(subject), Some(route)) = (subject, route) else {
        return Ok(Rules::default());
    };
    if !subject.is_impersonating() || (settings.exempt_internal && subject.actor.internal) {
        return Ok(Rules::default());
    }
    if route.export && settings.disable_contacts_and_leads_export {
        return Err(PrivacyError::ExportBlocked);
    }
    if !route.personal_data {
        return Ok(Rules::default());
    }
    let mut rules = Rules {
        hide_list: false,
        no_downloads: settings.disable_contacts_and_leads_export,
    };
    if settings.hide_contacts_and_leads {
        if route.answer.json_list.is_some() {
            rules.hide_list = true;
        } else if route.answer.json_record.is_some() && settings.hidden_fields.is_empty() {
            return Err(PrivacyError::HiddenRecord);
        } else if route.answer.json_record.is_some() {
            rules.hide_list = true;
        } else {
            return Err(PrivacyError::HiddenPage);
        }
    }
    Ok(rules)
}

/// Keeps nothing: every item of a hidden list goes.
struct Nothing;

impl Keep for Nothing {
    fn keep(&self, _resource: &str, _id: &str) -> bool {
        false
    }
}

/// How an answer's body is changed.
pub enum How {
    Empty(Arc<JsonList>),
    Redact(Arc<JsonRedact>),
}

/// The privacy filter of one answer.
pub enum PrivacyFilter {
    Json { buffer: Buffer, how: How },
    Refused { body: Option<Bytes> },
}

/// Set up the filter for an answer with header `resp`, or refuse it there.
/// `None`: nothing to change in this answer.
pub fn start(
    rules: &Rules,
    settings: &Settings,
    route: &RouteSpec,
    resp: &mut ResponseHeader,
    limit: Limit,
    format: Format,
) -> pingora::Result<Option<PrivacyFilter>> {
    if rules.is_empty() || !resp.status.is_success() || resp.status.as_u16() == 204 {
        return Ok(None);
    }
    let head = Head::of(resp);
    let attachment = resp
        .headers
        .get(http::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("attachment")
        });
    if rules.no_downloads && attachment {
        return refuse(resp, &PrivacyError::ExportBlocked, format).map(Some);
    }
    if !rules.hide_list {
        return Ok(None);
    }
    if !head.is_json() || head.compressed() {
        // An answer this route's shape does not read cannot be shown
        // without the records in it.
        return refuse(resp, &PrivacyError::HiddenPage, format).map(Some);
    }
    let how = match (&route.answer.json_list, &route.answer.json_record) {
        (Some((pointer, refs, counts)), _) if settings.hidden_fields.is_empty() => {
            let mut refs: Vec<(String, String)> = refs
                .iter()
                .filter_map(|r| match &r.at {
                    crate::routes::AnswerAt::Field(f) => Some((r.resource.clone(), f.clone())),
                    _ => None,
                })
                .collect();
            // Every item goes whatever it names (see `Nothing`), but a list
            // filter reads at least one reference.
            if refs.is_empty() {
                refs.push(("record".into(), "/id".into()));
            }
            How::Empty(Arc::new(
                JsonList::new(pointer, refs, counts).map_err(internal)?,
            ))
        }
        (Some((pointer, ..)), _) | (None, Some((pointer, _))) => How::Redact(Arc::new(
            JsonRedact::new(pointer, &settings.hidden_fields).map_err(internal)?,
        )),
        (None, None) => return Ok(None),
    };
    Head::body_rewritten(resp);
    Ok(Some(PrivacyFilter::Json {
        buffer: Buffer::new(limit),
        how,
    }))
}

fn internal(e: FilterError) -> Box<pingora::Error> {
    pingora::Error::because(pingora::ErrorType::InternalError, "privacy filter rule", e)
}

fn refuse(
    resp: &mut ResponseHeader,
    e: &PrivacyError,
    format: Format,
) -> pingora::Result<PrivacyFilter> {
    let body = respond::replace_answer(resp, e, format)?;
    Ok(PrivacyFilter::Refused { body: Some(body) })
}

impl PrivacyFilter {
    /// Whether the answer was refused at its header (for the metrics).
    pub fn refused(&self) -> bool {
        matches!(self, PrivacyFilter::Refused { .. })
    }

    /// Take one chunk of the upstream's body; the whole filtered body comes
    /// out with the last.
    pub fn chunk(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<(), PrivacyError> {
        match self {
            PrivacyFilter::Refused { body: refusal } => {
                *body = if end { refusal.take() } else { None };
                Ok(())
            }
            PrivacyFilter::Json { buffer, how } => {
                if let Some(b) = body.take() {
                    buffer.push(&b)?;
                }
                if !end {
                    return Ok(());
                }
                let whole = std::mem::replace(buffer, Buffer::new(Limit(0))).finish()?;
                *body = Some(match how {
                    How::Empty(list) => list.apply(&whole, &Nothing)?.body,
                    How::Redact(r) => r.apply(&whole)?.body,
                });
                Ok(())
            }
        }
    }
}
