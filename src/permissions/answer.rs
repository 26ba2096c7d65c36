//! What the data-permission rules do to the app's answer: a JSON list
//! keeps the readable records (its counts corrected), a single JSON record
//! that is not readable becomes a 403, and HTML pages lose the elements of
//! records that are not readable.
//!
//! Records are judged by their permission attributes: a JSON item's fields
//! at the attributes' pointers, an element's attributes by their `html`
//! names. The filters run after the partner filter, so rules only narrow
//! what a partner user sees. Like the partner filter they fail closed
//! (see [`crate::filter`]): an answer that cannot be judged is not sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pingora::http::ResponseHeader;

use super::policy::Policy;
use super::request::Viewer;
use super::PermissionError;
use crate::config::permissions::Action;
use crate::filter::{
    Buffer, FilterError, Head, Hide, HtmlRule, HtmlRules, HtmlStream, IdFrom, JsonList, JsonRecord,
    KeepValues, Limit,
};
use crate::respond::{self, Format};
use crate::routes::{AnswerRecords, HTML_MEMORY};

/// A route's answer shapes as filters over one resource's attributes.
#[derive(Debug, Default)]
pub struct RouteFilters {
    resource: Option<usize>,
    list: Option<JsonList>,
    record: Option<JsonRecord>,
}

/// Every resource's HTML elements, one rule set per resource (an element
/// is judged by its own resource's rules).
#[derive(Debug, Default)]
pub struct PageFilters {
    rules: Vec<(usize, HtmlRules)>,
}

/// Compiled filters, per policy epoch, built on first use.
#[derive(Default)]
pub struct FilterCache {
    routes: Mutex<HashMap<(u64, usize), Arc<RouteFilters>>>,
    pages: Mutex<Option<(u64, Arc<PageFilters>)>>,
}

impl FilterCache {
    /// The filters of route `index` (with `answer` shapes and `resource`)
    /// under `policy`.
    pub fn route(
        &self,
        policy: &Policy,
        index: usize,
        resource: Option<&str>,
        answer: &AnswerRecords,
    ) -> Arc<RouteFilters> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.keys().any(|(e, _)| *e != policy.epoch) {
            routes.retain(|(e, _), _| *e == policy.epoch);
        }
        routes
            .entry((policy.epoch, index))
            .or_insert_with(|| Arc::new(RouteFilters::build(policy, resource, answer)))
            .clone()
    }

    /// The page filters under `policy`.
    pub fn pages(&self, policy: &Policy) -> Arc<PageFilters> {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        match &*pages {
            Some((epoch, p)) if *epoch == policy.epoch => p.clone(),
            _ => {
                let p = Arc::new(PageFilters::build(policy));
                *pages = Some((policy.epoch, p.clone()));
                p
            }
        }
    }
}

impl RouteFilters {
    fn build(policy: &Policy, resource: Option<&str>, answer: &AnswerRecords) -> RouteFilters {
        let Some(resource) = resource.and_then(|r| policy.resource(r)) else {
            return RouteFilters::default();
        };
        if !policy.restricts(resource) {
            return RouteFilters::default();
        }
        let attrs = &policy.resources()[resource].attributes;
        let refs = || attrs.iter().map(|a| (a.name.clone(), a.field.clone()));
        // Pointers were checked with the policy and the route; a pair that
        // still fails leaves the shape unfiltered here and is refused
        // below, when an answer of that shape comes.
        let list = answer.json_list.as_ref().and_then(|(pointer, _, counts)| {
            JsonList::new(pointer, refs(), counts)
                .map_err(|e| tracing::error!(error = %e, "a list cannot be filtered by the data-permission rules"))
                .ok()
        });
        let record = answer.json_record.as_ref().and_then(|(pointer, _)| {
            JsonRecord::new(pointer, refs())
                .map_err(|e| tracing::error!(error = %e, "a record cannot be judged by the data-permission rules"))
                .ok()
        });
        RouteFilters {
            resource: Some(resource),
            list,
            record,
        }
    }
}

impl PageFilters {
    fn build(policy: &Policy) -> PageFilters {
        let mut rules = Vec::new();
        for (i, r) in policy.resources().iter().enumerate() {
            let spec = policy.spec().resources.iter().find(|s| s.name == r.name);
            let selectors = spec.map_or(&[][..], |s| &s.html[..]);
            if selectors.is_empty() || r.everyone {
                continue;
            }
            // Every attribute is read; one without an `html` name reads as
            // absent.
            let refs: Vec<(String, IdFrom)> = r
                .attributes
                .iter()
                .map(|a| {
                    let name = a
                        .html
                        .clone()
                        .unwrap_or_else(|| "data-guise-absent".to_string());
                    (a.name.clone(), IdFrom::Attribute(name))
                })
                .collect();
            let html = selectors
                .iter()
                .map(|selector| HtmlRule {
                    selector: selector.clone(),
                    refs: refs.clone(),
                })
                .collect();
            match HtmlRules::new(html, Hide::Remove, Limit(HTML_MEMORY)) {
                Ok(h) => rules.push((i, h)),
                Err(e) => {
                    tracing::error!(resource = r.name, error = %e, "the resource's HTML selectors cannot be used")
                }
            }
        }
        PageFilters { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The viewer's READ decision on records of one resource, for the filters.
struct Judge {
    viewer: Viewer,
    resource: usize,
}

impl KeepValues for Judge {
    fn keep_values(&self, values: &[Option<&str>]) -> bool {
        self.viewer
            .policy
            .decide(
                &self.viewer.facts,
                self.resource,
                Action::Read,
                values,
                &self.viewer.cached_lookups(),
            )
            .allowed()
    }
}

/// One answer's permission filter, from its header to its end.
pub enum PermissionFilter {
    /// JSON, collected whole up to the limit and judged at its end.
    Json {
        buffer: Buffer,
        filters: Arc<RouteFilters>,
        viewer: Viewer,
        resource: String,
    },
    /// HTML, each restricted resource's elements removed in turn. The
    /// rewriters are `Send` but not `Sync`: an uncontended mutex makes the
    /// request context `Sync`, as pingora wants.
    Html(Box<Mutex<Vec<Option<HtmlStream>>>>, Viewer),
    /// Refused at the header: this refusal goes out in place of the body.
    Refused { body: Option<Bytes> },
}

/// Pick the filter for an answer with header `resp`; `None` when the rules
/// have nothing to do with it. A refusal known now rewrites `resp`.
pub fn start(
    viewer: &Viewer,
    route: Option<(usize, Option<&str>, &AnswerRecords)>,
    cache: &FilterCache,
    resp: &mut ResponseHeader,
    limit: Limit,
    format: Format,
) -> pingora::Result<Option<PermissionFilter>> {
    if !resp.status.is_success() || resp.status.as_u16() == 204 {
        return Ok(None);
    }
    let head = Head::of(resp);
    // Most routes show no JSON records: no lock, no lookup for them.
    let filters = route
        .filter(|(_, _, a)| a.json_list.is_some() || a.json_record.is_some())
        .map(|(index, resource, answer)| cache.route(&viewer.policy, index, resource, answer));
    let json_shape = filters
        .as_ref()
        .filter(|f| f.list.is_some() || f.record.is_some());
    if let (Some(_), false) = (json_shape, head.is_json()) {
        // The route's records come as JSON; an answer of another type
        // cannot be judged, and is not passed on unjudged.
        let e = FilterError::malformed(format!(
            "the answer is `{}`, not the JSON this route's records are read from",
            head.content_type
        ));
        let body = respond::replace_answer(resp, &e, format)?;
        return Ok(Some(PermissionFilter::Refused { body: Some(body) }));
    }
    if let Some(filters) = json_shape.cloned() {
        let refused = if head.compressed() {
            Some(head.compressed_error("answer"))
        } else if head.length.is_some_and(|l| l > limit.0) {
            Some(FilterError::TooLarge { limit: limit.0 })
        } else {
            None
        };
        if let Some(e) = refused {
            let body = respond::replace_answer(resp, &e, format)?;
            return Ok(Some(PermissionFilter::Refused { body: Some(body) }));
        }
        Head::body_rewritten(resp);
        let mut buffer = Buffer::new(limit);
        if let Some(l) = head.length {
            buffer.expect(l);
        }
        let resource = filters
            .resource
            .map_or("record", |r| viewer.policy.resource_name(r))
            .to_string();
        return Ok(Some(PermissionFilter::Json {
            buffer,
            filters,
            viewer: viewer.clone(),
            resource,
        }));
    }
    // Every page, not only navigations: a fragment fetched by a script
    // shows records as well.
    if head.is_html() {
        let pages = cache.pages(&viewer.policy);
        if pages.is_empty() {
            return Ok(None);
        }
        if head.compressed() {
            let e = head.compressed_error("page");
            let body = respond::replace_answer(resp, &e, format)?;
            return Ok(Some(PermissionFilter::Refused { body: Some(body) }));
        }
        Head::body_rewritten(resp);
        let streams = pages
            .rules
            .iter()
            .map(|(resource, rules)| {
                Some(rules.stream_values(Arc::new(Judge {
                    viewer: viewer.clone(),
                    resource: *resource,
                })))
            })
            .collect();
        return Ok(Some(PermissionFilter::Html(
            Box::new(Mutex::new(streams)),
            viewer.clone(),
        )));
    }
    Ok(None)
}

impl PermissionFilter {
    pub fn refused(&self) -> bool {
        matches!(self, PermissionFilter::Refused { .. })
    }

    /// Run the filter over one chunk of the body (`None` when held back),
    /// and finish it at `end`.
    pub fn chunk(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<(), PermissionError> {
        match self {
            PermissionFilter::Refused { body: refusal } => {
                *body = if end { refusal.take() } else { None };
                Ok(())
            }
            PermissionFilter::Json {
                buffer,
                filters,
                viewer,
                resource,
            } => {
                if let Some(b) = body.take() {
                    buffer.push(&b)?;
                }
                if !end {
                    return Ok(());
                }
                let whole = std::mem::replace(buffer, Buffer::new(Limit(0))).finish()?;
                let Some(r) = filters.resource else {
                    *body = Some(whole);
                    return Ok(());
                };
                let judge = Judge {
                    viewer: viewer.clone(),
                    resource: r,
                };
                if let Some(record) = &filters.record {
                    if !record.check_values(&whole, &judge)? {
                        viewer.permissions.metrics.denied.inc();
                        return Err(PermissionError::Denied {
                            resource: resource.clone(),
                            action: Action::Read,
                        });
                    }
                }
                *body = Some(match &filters.list {
                    Some(l) => {
                        let filtered = l.apply_values(&whole, &judge)?;
                        viewer
                            .permissions
                            .metrics
                            .filtered
                            .inc_by(filtered.removed as u64);
                        filtered.body
                    }
                    None => whole,
                });
                Ok(())
            }
            PermissionFilter::Html(streams, viewer) => {
                let streams = streams.get_mut().unwrap_or_else(|e| e.into_inner());
                let mut chunk = body.take().unwrap_or_default();
                for slot in streams.iter_mut() {
                    let Some(s) = slot.as_mut() else {
                        return Err(FilterError::Failed.into());
                    };
                    let mut out = if chunk.is_empty() {
                        Bytes::new()
                    } else {
                        s.write(&chunk)?
                    };
                    if end {
                        if let Some(s) = slot.take() {
                            viewer
                                .permissions
                                .metrics
                                .filtered
                                .inc_by(s.removed() as u64);
                            let rest = s.end()?;
                            out = if out.is_empty() {
                                rest
                            } else {
                                [out, rest].concat().into()
                            };
                        }
                    }
                    chunk = out;
                }
                if !chunk.is_empty() {
                    *body = Some(chunk);
                }
                Ok(())
            }
        }
    }
}

impl From<FilterError> for PermissionError {
    fn from(e: FilterError) -> Self {
        PermissionError::Filter(e)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::permissions::{AttributeSpec, PolicySpec, ResourceSpec, RuleSpec};
    use crate::permissions::{metrics::Metrics, Permissions};
    use crate::routes::AnswerRecords;
    use crate::store::memory::MemoryStore;
    use crate::users::User;

    /// A viewer in BU1 under a policy where BU1 reads `Product A` only.
    fn viewer() -> Viewer {
        let spec = PolicySpec {
            user_attributes: vec!["Business Unit".into()],
            resources: vec![ResourceSpec {
                name: "relationship_type".into(),
                attributes: vec![AttributeSpec {
                    name: "Name".into(),
                    field: "/name".into(),
                    html: Some("data-name".into()),
                }],
                everyone: Some(false),
                rules: vec![serde_json::from_value::<RuleSpec>(serde_json::json!({
                    "name": "bu1", "action": "read",
                    "criteria": [{"attribute": "Business Unit", "operator": "=", "value": "BU1"}],
                    "advice": [{"attribute": "Name", "operator": "=", "value": "Product A"}]
                }))
                .unwrap()],
                html: vec!["li[data-resource=type]".into()],
                ..ResourceSpec::default()
            }],
            groups: Vec::new(),
        };
        let settings = crate::config::permissions::Settings {
            policy: spec,
            ..Default::default()
        };
        let metrics = Metrics::new(&crate::metrics::Metrics::new()).unwrap();
        let permissions =
            Permissions::new(Arc::new(MemoryStore::new()), Arc::new(settings), metrics);
        let policy = permissions.policy();
        let mut user = User::new("u-1", "One", "one@test");
        user.attributes.insert("Business Unit".into(), "BU1".into());
        let facts = permissions.facts(&policy, &user);
        Viewer {
            permissions,
            policy,
            facts,
        }
    }

    fn answer() -> AnswerRecords {
        AnswerRecords {
            json_list: Some(("/data".into(), Vec::new(), vec!["/total".into()])),
            ..AnswerRecords::default()
        }
    }

    fn header(content_type: &str) -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).unwrap();
        h.insert_header("content-type", content_type).unwrap();
        h
    }

    fn run(filter: &mut PermissionFilter, body: &str) -> Result<Option<Bytes>, PermissionError> {
        let mut b = Some(Bytes::copy_from_slice(body.as_bytes()));
        filter.chunk(&mut b, true)?;
        Ok(b)
    }

    #[test]
    fn a_list_keeps_the_readable_records_and_corrects_its_count() {
        let v = viewer();
        let cache = FilterCache::default();
        let answer = answer();
        let mut resp = header("application/json");
        let mut f = start(
            &v,
            Some((0, Some("relationship_type"), &answer)),
            &cache,
            &mut resp,
            Limit(1 << 20),
            Format::Json,
        )
        .unwrap()
        .expect("a filter");
        let out = run(
            &mut f,
            r#"{"data":[{"name":"Product A"},{"name":"Spark"},{"other":1}],"total":3}"#,
        )
        .unwrap();
        assert_eq!(out.unwrap(), r#"{"data":[{"name":"Product A"}],"total":1}"#);
    }

    #[test]
    fn an_answer_of_another_type_on_a_json_route_is_refused() {
        let v = viewer();
        let cache = FilterCache::default();
        let answer = answer();
        let mut resp = header("text/plain");
        let f = start(
            &v,
            Some((0, Some("relationship_type"), &answer)),
            &cache,
            &mut resp,
            Limit(1 << 20),
            Format::Json,
        )
        .unwrap()
        .expect("a refusal");
        assert!(f.refused());
        assert_eq!(resp.status.as_u16(), 502);
    }

    #[test]
    fn pages_lose_the_elements_of_unreadable_records() {
        let v = viewer();
        let cache = FilterCache::default();
        let mut resp = header("text/html; charset=utf-8");
        let mut f = start(&v, None, &cache, &mut resp, Limit(1 << 20), Format::Html)
            .unwrap()
            .expect("a page filter");
        let out = run(
            &mut f,
            r#"<ul><li data-resource="type" data-name="Product A">A</li><li data-resource="type" data-name="Spark">S</li><li data-resource="type">?</li></ul>"#,
        )
        .unwrap();
        assert_eq!(
            out.unwrap(),
            r#"<ul><li data-resource="type" data-name="Product A">A</li></ul>"#
        );
    }
}
