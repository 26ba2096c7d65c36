//! The route table: which configured route a request falls under.
//!
//! Patterns are compiled once (at start-up and on reload) into a `matchit`
//! radix tree, so a lookup costs a walk over the path, not a scan of every
//! route. Several routes may share a path with different methods; the first
//! one in file order whose methods include the request's method wins.

use std::collections::HashMap;
use std::sync::Arc;

use crate::filter::{FilterError, Hide, HtmlRule, HtmlRules, IdFrom, JsonList, JsonRecord, Limit};

/// Whether a route reads or changes data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
}

/// One entry of the route table, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    pub name: String,
    pub path: String,
    /// Upper-case methods; empty means every method.
    pub methods: Vec<String>,
    pub area: Option<String>,
    pub resource: Option<String>,
    /// `None`: decided by the request method (GET/HEAD/OPTIONS read).
    pub action: Option<Action>,
    pub export: bool,
    pub personal_data: bool,
    pub public: bool,
    /// The app feature the route belongs to (`ess`, `linked_records`).
    pub feature: Option<String>,
    /// Records the request names in its path or query.
    pub records: Vec<RecordRef>,
    /// How the answer shows records, for filtering it.
    pub answer: AnswerRecords,
    /// Where a write's body names records (JSON pointers within the body;
    /// in a form, a pointer of one key is that field): a partner user's
    /// write may name only its partner's.
    pub body: Vec<AnswerRef>,
}

/// A record the request names: a resource and where its id is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub resource: String,
    pub from: RecordSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSource {
    /// A path parameter of the route's pattern.
    Param(String),
    /// A query parameter.
    Query(String),
}

/// Where something in an answer names a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRef {
    pub resource: String,
    pub at: AnswerAt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerAt {
    /// JSON pointer within an item.
    Field(String),
    /// An HTML attribute of the element.
    Attribute(String),
    /// The element's own `href`, matched against a path pattern with `{id}`.
    Href(String),
}

/// How a route's answer shows its records (all empty: nothing to filter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerRecords {
    /// A JSON list at a pointer, its items' refs, counts to correct.
    pub json_list: Option<(String, Vec<AnswerRef>, Vec<String>)>,
    /// One JSON record at a pointer, and its refs.
    pub json_record: Option<(String, Vec<AnswerRef>)>,
    /// HTML elements by CSS selector, and their refs.
    pub html: Vec<(String, Vec<AnswerRef>)>,
}

impl AnswerRecords {
    pub fn is_empty(&self) -> bool {
        self.json_list.is_none() && self.json_record.is_none() && self.html.is_empty()
    }
}

/// A compiled route table.
#[derive(Debug, Clone)]
pub struct RouteTable {
    router: matchit::Router<Vec<usize>>,
    routes: Vec<RouteSpec>,
    /// Each route's answer shapes as filters, compiled once.
    answers: Vec<AnswerFilters>,
    /// Each route's body refs as a reader of the whole body, compiled once.
    bodies: Vec<Option<Arc<JsonRecord>>>,
}

/// The most memory one HTML answer's rewriter may hold (a tag split over
/// many chunks is held until it ends).
pub const HTML_MEMORY: usize = 1024 * 1024;

/// A route's [`AnswerRecords`] compiled into response filters.
#[derive(Debug, Clone, Default)]
pub struct AnswerFilters {
    pub json_list: Option<Arc<JsonList>>,
    pub json_record: Option<Arc<JsonRecord>>,
    pub html: Option<Arc<HtmlRules>>,
}

impl AnswerFilters {
    /// Compile `a`; a bad pointer or selector says which.
    pub fn compile(a: &AnswerRecords) -> Result<AnswerFilters, FilterError> {
        let json_list = match &a.json_list {
            // No refs: the list is there for the data-permission rules only.
            Some((_, refs, _)) if refs.is_empty() => None,
            Some((pointer, refs, counts)) => {
                Some(Arc::new(JsonList::new(pointer, json_fields(refs), counts)?))
            }
            None => None,
        };
        let json_record = match &a.json_record {
            Some((_, refs)) if refs.is_empty() => None,
            Some((pointer, refs)) => Some(Arc::new(JsonRecord::new(pointer, json_fields(refs))?)),
            None => None,
        };
        let html = if a.html.is_empty() {
            None
        } else {
            let rules = a
                .html
                .iter()
                .map(|(selector, refs)| HtmlRule {
                    selector: selector.clone(),
                    refs: refs
                        .iter()
                        .filter_map(|r| match &r.at {
                            AnswerAt::Attribute(n) => {
                                Some((r.resource.clone(), IdFrom::Attribute(n.clone())))
                            }
                            AnswerAt::Href(p) => {
                                Some((r.resource.clone(), IdFrom::Href(p.clone())))
                            }
                            AnswerAt::Field(_) => None,
                        })
                        .collect(),
                })
                .collect();
            Some(Arc::new(HtmlRules::new(
                rules,
                Hide::Remove,
                Limit(HTML_MEMORY),
            )?))
        };
        Ok(AnswerFilters {
            json_list,
            json_record,
            html,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.json_list.is_none() && self.json_record.is_none() && self.html.is_none()
    }
}

/// The JSON refs among `refs`, as the filters take them: `(resource,
/// pointer)` pairs, in order.
fn json_fields(refs: &[AnswerRef]) -> Vec<(String, String)> {
    refs.iter()
        .filter_map(|r| match &r.at {
            AnswerAt::Field(f) => Some((r.resource.clone(), f.clone())),
            _ => None,
        })
        .collect()
}

/// A route's body refs as a [`JsonRecord`] over the whole body (`None`
/// when the route names none).
fn body_reader(refs: &[AnswerRef]) -> Result<Option<Arc<JsonRecord>>, FilterError> {
    let fields = json_fields(refs);
    if fields.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(JsonRecord::new("", fields)?)))
}

/// The route a request matched.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// Position in the configured list.
    pub index: usize,
    pub route: &'a RouteSpec,
    pub action: Action,
}

/// Prefix of the gateway's own endpoints; never forwarded upstream. The
/// [`crate::gateway`] module routes what lies under it.
pub const GATEWAY_PREFIX: &str = "/_guise/";

/// The admin page ([`crate::admin::page`]), named here, low in the module
/// layering, because the login (`next`) and the impersonation (`return_to`)
/// lead back to it too.
pub const ADMIN_PAGE: &str = "/_guise/admin";

/// What a request is, decided once per request (see [`RouteTable::classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Under [`GATEWAY_PREFIX`]: answered by the gateway itself.
    Gateway,
    /// The app's login path, which guise intercepts.
    Login,
    /// A configured route, by its index.
    Route(usize),
    /// A path no route names: proxied with the default rules.
    Unmatched,
    /// `OPTIONS *`.
    Server,
}

impl RouteTable {
    /// Compile `routes`; on a conflict, the index of the offending route and why.
    pub fn compile(routes: &[RouteSpec]) -> Result<RouteTable, (usize, String)> {
        let mut router = matchit::Router::new();
        let mut by_path: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            by_path.entry(&r.path).or_default().push(i);
            first_of.entry(&r.path).or_insert(i);
        }
        let mut paths: Vec<_> = by_path.into_iter().collect();
        paths.sort_by_key(|(p, _)| first_of[p]);
        for (path, idx) in paths {
            let first = first_of[path];
            if check_pattern(path).is_err() {
                // Reported by the pattern check itself.
                continue;
            }
            router
                .insert(path, idx)
                .map_err(|e| (first, format!("`{path}` cannot be added: {e}")))?;
        }
        let answers = routes
            .iter()
            .enumerate()
            .map(|(i, r)| AnswerFilters::compile(&r.answer).map_err(|e| (i, e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let bodies = routes
            .iter()
            .enumerate()
            .map(|(i, r)| body_reader(&r.body).map_err(|e| (i, e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouteTable {
            router,
            routes: routes.to_vec(),
            answers,
            bodies,
        })
    }

    /// The reader of route `index`'s write bodies, if its `body` names
    /// records: the whole body is the record, its refs are where.
    pub fn body(&self, index: usize) -> Option<&JsonRecord> {
        self.bodies.get(index)?.as_deref()
    }

    /// What the request for `method` and `path` (normal form, without the
    /// query) is. The login path and routes match with or without one
    /// trailing slash, as most apps serve both.
    pub fn classify(&self, method: &str, path: &str, login_path: &str) -> Class {
        if path.starts_with(GATEWAY_PREFIX) {
            Class::Gateway
        } else if without_trailing_slash(path) == without_trailing_slash(login_path) {
            Class::Login
        } else {
            self.find(method, path)
                .map_or(Class::Unmatched, |m| Class::Route(m.index))
        }
    }

    /// The route for `method` and `path` (without query), if any; a path
    /// with a trailing slash matches the route without it and the other
    /// way round, so a route's tags cannot be dodged by one slash.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        self.find_exact(method, path).or_else(|| {
            if path.len() > 1 && path.ends_with('/') {
                self.find_exact(method, &path[..path.len() - 1])
            } else {
                self.find_exact(method, &format!("{path}/"))
            }
        })
    }

    /// Route `index`'s compiled answer filters.
    pub fn answer(&self, index: usize) -> Option<&AnswerFilters> {
        self.answers.get(index)
    }

    /// The value of path parameter `name` when `path` matches route `index`.
    pub fn param(&self, index: usize, path: &str, name: &str) -> Option<String> {
        let slashed = format!("{path}/");
        for p in [path, without_trailing_slash(path), &slashed] {
            if let Ok(m) = self.router.at(p) {
                if m.value.contains(&index) {
                    return m.params.get(name).map(str::to_string);
                }
            }
        }
        None
    }

    fn find_exact(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let m = self.router.at(path).ok()?;
        let index = *m.value.iter().find(|i| {
            let r = &self.routes[**i];
            r.methods.is_empty() || r.methods.iter().any(|x| x == method)
        })?;
        let route = &self.routes[index];
        let action = route.action.unwrap_or(match method {
            "GET" | "HEAD" | "OPTIONS" => Action::Read,
            _ => Action::Write,
        });
        Some(Matched {
            index,
            route,
            action,
        })
    }

    pub fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }
}

/// Check a configured pattern; the message says what is wrong.
pub fn check_pattern(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with `/`"));
    }
    if let Some(i) = path.find("{*") {
        if !path[i..].ends_with('}') || path[i..].contains('/') {
            return Err(format!(
                "`{path}`: a catch-all `{{*name}}` may only be the last segment"
            ));
        }
    }
    matchit::Router::<()>::new()
        .insert(path, ())
        .map_err(|e| format!("`{path}` is not a valid pattern: {e}"))
}

fn without_trailing_slash(path: &str) -> &str {
    if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, methods: &[&str], name: &str) -> RouteSpec {
        RouteSpec {
            name: name.into(),
            path: path.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            area: None,
            resource: None,
            action: None,
            export: false,
            personal_data: false,
            public: false,
            feature: None,
            records: Vec::new(),
            answer: AnswerRecords::default(),
            body: Vec::new(),
        }
    }

    #[test]
    fn most_specific_pattern_wins_and_params_match_one_segment() {
        let t = RouteTable::compile(&[
            spec("/api/{*rest}", &[], "api"),
            spec("/api/companies/{id}", &[], "company"),
        ])
        .unwrap();
        assert_eq!(
            t.find("GET", "/api/companies/7").unwrap().route.name,
            "company"
        );
        assert_eq!(
            t.find("GET", "/api/companies/7/x").unwrap().route.name,
            "api"
        );
        assert!(t.find("GET", "/other").is_none());
    }

    #[test]
    fn routes_sharing_a_path_are_told_apart_by_method() {
        let t = RouteTable::compile(&[
            spec("/api/ctas", &["GET"], "list"),
            spec("/api/ctas", &["POST"], "create"),
        ])
        .unwrap();
        let post = t.find("POST", "/api/ctas").unwrap();
        assert_eq!(post.route.name, "create");
        assert_eq!(post.action, Action::Write);
        assert_eq!(t.find("GET", "/api/ctas").unwrap().action, Action::Read);
        assert!(t.find("DELETE", "/api/ctas").is_none());
    }

    #[test]
    fn conflicting_patterns_name_the_route() {
        let err =
            RouteTable::compile(&[spec("/a/{x}", &[], "x"), spec("/a/{y}", &[], "y")]).unwrap_err();
        assert_eq!(err.0, 1);
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert!(check_pattern("api").unwrap_err().contains("must start"));
        assert!(check_pattern("/a/{*rest}/b").is_err());
        assert!(check_pattern("/a/{id}").is_ok());
    }

    #[test]
    fn a_trailing_slash_does_not_dodge_a_route() {
        let t = RouteTable::compile(&[
            spec("/reports", &[], "reports"),
            spec("/admin/", &[], "admin"),
            spec("/api/companies/{id}", &[], "company"),
        ])
        .unwrap();
        assert_eq!(t.find("GET", "/reports/").unwrap().route.name, "reports");
        assert_eq!(t.find("GET", "/admin").unwrap().route.name, "admin");
        assert_eq!(
            t.find("GET", "/api/companies/7/").unwrap().route.name,
            "company"
        );
        assert!(t.find("GET", "/").is_none());
    }

    #[test]
    fn classification_puts_gateway_and_login_paths_first() {
        let t = RouteTable::compile(&[spec("/{*rest}", &[], "all")]).unwrap();
        assert_eq!(
            t.classify("GET", "/_guise/session", "/login"),
            Class::Gateway
        );
        assert_eq!(t.classify("POST", "/login/", "/login"), Class::Login);
        assert_eq!(
            t.classify("POST", "/admin/login", "/admin/login/"),
            Class::Login
        );
        assert_eq!(t.classify("GET", "/x", "/login"), Class::Route(0));
    }
}
