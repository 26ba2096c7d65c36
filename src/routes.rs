//! The route table: which configured route a request falls under.
//!
//! Patterns are compiled once (at start-up and on reload) into a `matchit`
//! radix tree, so a lookup costs a walk over the path, not a scan of every
//! route. Several routes may share a path with different methods; the first
//! one in file order whose methods include the request's method wins.

use std::collections::HashMap;

use crate::config::{Action, RouteSpec};

/// A compiled route table.
#[derive(Debug, Clone)]
pub struct RouteTable {
    router: matchit::Router<Vec<usize>>,
    routes: Vec<RouteSpec>,
}

/// The route a request matched.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// Position in the configured list.
    pub index: usize,
    pub route: &'a RouteSpec,
    pub action: Action,
}

/// Why a request path cannot be routed safely.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// Matching on a path the upstream would read differently (`/public/../api`)
    /// would let a request borrow another route's rules.
    #[error("the request path is not in normal form (it contains `{0}`); send the path without dot segments, empty segments or encoded slashes and dots")]
    NotNormal(&'static str),
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
        Ok(RouteTable {
            router,
            routes: routes.to_vec(),
        })
    }

    /// The route for `method` and `path` (without query), if any.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
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

/// Refuse paths whose meaning depends on normalisation, so the route guise
/// decides on is the route the upstream serves.
pub fn check_request_path(path: &str) -> Result<(), PathError> {
    if path.contains("//") {
        return Err(PathError::NotNormal("//"));
    }
    for seg in path.split('/') {
        if seg == "." || seg == ".." {
            return Err(PathError::NotNormal("a `.` or `..` segment"));
        }
    }
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' && i + 2 < bytes.len() + 1 {
            let hex = path.get(i + 1..i + 3).unwrap_or("").to_ascii_lowercase();
            match hex.as_str() {
                "2f" => return Err(PathError::NotNormal("%2F")),
                "2e" => return Err(PathError::NotNormal("%2E")),
                "5c" => return Err(PathError::NotNormal("%5C")),
                _ => {}
            }
        }
        if *b == b'\\' {
            return Err(PathError::NotNormal("\\"));
        }
    }
    Ok(())
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
    fn paths_that_normalise_differently_are_refused() {
        for p in [
            "/public/../api",
            "/a//b",
            "/a/%2e%2e/b",
            "/a%2Fb",
            "/./a",
            "/a\\b",
        ] {
            assert!(check_request_path(p).is_err(), "{p}");
        }
        for p in ["/", "/api/companies/1", "/a%20b", "/files/v1.2/x"] {
            assert!(check_request_path(p).is_ok(), "{p}");
        }
    }
}
