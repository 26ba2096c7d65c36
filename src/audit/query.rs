//! What an admin asks of the audit, and one page of the answer.

use serde::Serialize;
use serde_json::Value;

use super::{AuditError, AuditRecord};
use crate::store::StreamId;

/// Entries a page holds unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;

/// Most entries a page holds.
pub const MAX_LIMIT: usize = 500;

/// Most stream entries one read looks at, matching or not, so a query
/// that matches little costs a bounded number of round trips; the page
/// then ends early with a `next` cursor to go on from.
pub const MAX_SCAN: usize = 10_000;

/// Filters and a cursor over the audit, newest first. Every filter given
/// must match; times are inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records of this effective (impersonated) user.
    pub user: Option<String>,
    /// Only records of this impersonator (the real actor).
    pub impersonator: Option<String>,
    /// Only records at or after this time, unix ms.
    pub since_ms: Option<u64>,
    /// Only records at or before this time, unix ms.
    pub until_ms: Option<u64>,
    /// Only records older than this entry: the `next` of the previous page.
    pub before: Option<String>,
    /// Most entries on the page; [`DEFAULT_LIMIT`] by default, at most
    /// [`MAX_LIMIT`] (a larger one is read as that).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            user: None,
            impersonator: None,
            since_ms: None,
            until_ms: None,
            before: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// A checked `before`: a stream entry id, or a line of the audit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cursor {
    Stream(StreamId),
    Line(u64),
}

impl Cursor {
    fn parse(s: &str) -> Option<Cursor> {
        if s.contains('-') {
            s.parse().ok().map(Cursor::Stream)
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok().map(Cursor::Line)
        } else {
            None
        }
    }
}

fn bad(msg: String) -> AuditError {
    AuditError::BadQuery(msg)
}

// === impl AuditQuery ===

impl AuditQuery {
    /// Parse a URL query string (without the `?`): `user`, `impersonator`,
    /// `since` and `until` (unix ms), `before` and `limit`. An empty value
    /// counts as not given (an empty form field); an unknown or repeated
    /// parameter is refused rather than ignored, since a misspelt filter
    /// would silently show everything.
    pub fn parse(query: &str) -> Result<AuditQuery, AuditError> {
        let mut q = AuditQuery::default();
        let mut seen: Vec<String> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if seen.iter().any(|s| *s == k) {
                return Err(bad(format!("`{k}` is given twice")));
            }
            seen.push(k.to_string());
            if v.is_empty() {
                continue;
            }
            let time = |name: &str| {
                v.parse::<u64>().ok().filter(|_| v.bytes().all(|b| b.is_ascii_digit())).ok_or_else(|| {
                    bad(format!(
                        "`{name}` must be a time in unix milliseconds, such as 1700000000000; got `{v}`"
                    ))
                })
            };
            match &*k {
                "user" => q.user = Some(v.into_owned()),
                "impersonator" => q.impersonator = Some(v.into_owned()),
                "since" => q.since_ms = Some(time("since")?),
                "until" => q.until_ms = Some(time("until")?),
                "before" => {
                    if Cursor::parse(&v).is_none() {
                        return Err(bad(format!(
                            "`before` must be the id of an entry, as the `next` of an earlier page gives it; got `{v}`"
                        )));
                    }
                    q.before = Some(v.into_owned());
                }
                "limit" => {
                    q.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            bad(format!(
                                "`limit` must be a number from 1 to {MAX_LIMIT}; got `{v}`"
                            ))
                        })?;
                }
                other => {
                    return Err(bad(format!(
                        "unknown parameter `{other}`; the audit takes user, impersonator, since, until, before and limit"
                    )))
                }
            }
        }
        if let (Some(s), Some(u)) = (q.since_ms, q.until_ms) {
            if s > u {
                return Err(bad(format!(
                    "`since` ({s}) is after `until` ({u}), so nothing could match"
                )));
            }
        }
        Ok(q)
    }

    /// The page size to use: `limit` within 1..=[`MAX_LIMIT`].
    pub(super) fn limit(&self) -> usize {
        self.limit.clamp(1, MAX_LIMIT)
    }

    /// The checked cursor, if any.
    pub(super) fn cursor(&self) -> Result<Option<Cursor>, AuditError> {
        match &self.before {
            None => Ok(None),
            Some(s) => Cursor::parse(s).map(Some).ok_or_else(|| {
                bad(format!(
                    "`before` must be the id of an entry, as the `next` of an earlier page gives it; got `{s}`"
                ))
            }),
        }
    }

    /// Whether any filter is set (otherwise every record matches).
    pub(super) fn filters(&self) -> bool {
        self.user.is_some()
            || self.impersonator.is_some()
            || self.since_ms.is_some()
            || self.until_ms.is_some()
    }

    /// Whether `rec` passes every filter.
    pub fn matches(&self, rec: &AuditRecord) -> bool {
        self.user
            .as_deref()
            .is_none_or(|u| rec.user.as_deref() == Some(u))
            && self
                .impersonator
                .as_deref()
                .is_none_or(|i| rec.impersonator == i)
            && self.since_ms.is_none_or(|s| rec.time_ms >= s)
            && self.until_ms.is_none_or(|u| rec.time_ms <= u)
    }
}

/// One page of the audit, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    /// (entry id, record): a stream id `<ms>-<seq>`, or a line number of
    /// the audit file.
    pub entries: Vec<(String, AuditRecord)>,
    /// Where the next page starts (pass it as `before`), when more entries
    /// may follow; the next page can turn out empty.
    pub next: Option<String>,
}

impl AuditPage {
    /// The page as the admin API answers it:
    /// `{"entries": [{"id": ..., <record fields>}], "next": ...}`.
    pub fn to_json(&self) -> Value {
        #[derive(Serialize)]
        struct Entry<'a> {
            id: &'a str,
            #[serde(flatten)]
            record: &'a AuditRecord,
        }
        let entries: Vec<Entry<'_>> = self
            .entries
            .iter()
            .map(|(id, record)| Entry { id, record })
            .collect();
        serde_json::json!({ "entries": entries, "next": self.next })
    }
}
