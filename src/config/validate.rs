//! From raw serde types to a checked [`Config`], collecting every problem.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::lines::LineMap;
use super::raw::{AuthMode, RawConfig, RawRedis, RawRef, RawRoute, RawUpstreamLogin, StoreKind};
use super::yaml;
use super::*;
use crate::routes::{Action, AnswerAt, AnswerRecords, AnswerRef, RecordRef, RecordSource};

mod impersonation;
mod mail;
mod permissions;

/// The smallest signing key accepted: HMAC-SHA256 wants at least 32 bytes.
const MIN_KEY_LEN: usize = 32;

pub(super) fn parse(source: &str, base: &Path, env: &dyn Env) -> Result<Config, Vec<ConfigIssue>> {
    let lines = LineMap::build(source);
    let raw: RawConfig = match yaml::read(source, &lines, "") {
        Ok(raw) => raw,
        Err(err) => {
            return Err(vec![ConfigIssue {
                path: err.path().to_string(),
                line: err.line(),
                message: err.to_string(),
            }]);
        }
    };
    let mut c = Checker {
        lines: &lines,
        issues: Vec::new(),
    };
    let config = c.check(raw, source, base, env);
    match config {
        Some(config) if c.issues.is_empty() => Ok(config),
        _ => Err(c.issues),
    }
}

struct Checker<'a> {
    lines: &'a LineMap,
    issues: Vec<ConfigIssue>,
}

impl Checker<'_> {
    fn issue(&mut self, path: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            path: path.to_string(),
            line: self.lines.line_of(path),
            message: message.into(),
        });
    }

    fn addr(&mut self, path: &str, value: &str) -> Option<SocketAddr> {
        if let Ok(a) = value.parse::<SocketAddr>() {
            return Some(a);
        }
        // `localhost:8080` and the like: resolve once, at load time.
        match value.to_socket_addrs().map(|mut it| it.next()) {
            Ok(Some(a)) => Some(a),
            _ => {
                self.issue(
                    path,
                    format!("`{value}` is not a host:port address (e.g. 127.0.0.1:8080)"),
                );
                None
            }
        }
    }

    fn check(
        &mut self,
        raw: RawConfig,
        source: &str,
        base: &Path,
        env: &dyn Env,
    ) -> Option<Config> {
        let http = raw
            .listeners
            .http
            .as_deref()
            .and_then(|a| self.addr("listeners.http", a));
        let https = raw.listeners.https.as_ref().and_then(|h| {
            let address = self.addr("listeners.https.address", &h.address)?;
            Some(Https {
                address,
                cert: base.join(&h.cert),
                key: base.join(&h.key),
                http2: h.http2,
                proxy_protocol: h.proxy_protocol,
            })
        });
        if raw.listeners.http.is_none() && raw.listeners.https.is_none() {
            self.issue("listeners", "at least one of `http` or `https` is needed");
        }
        let operations_address = self.addr("operations.address", &raw.operations.address);
        let mut bound = Vec::new();
        for (p, a) in [
            ("listeners.http", http),
            ("listeners.https.address", https.as_ref().map(|h| h.address)),
            ("operations.address", operations_address),
        ] {
            if let Some(a) = a {
                if bound.iter().any(|(_, b)| *b == a) {
                    self.issue(p, format!("{a} is already used by another listener"));
                }
                bound.push((p, a));
            }
        }

        if raw.server.threads == 0 || raw.server.threads > 256 {
            self.issue("server.threads", "must be between 1 and 256");
        }
        let server = ServerSettings {
            threads: raw.server.threads,
            grace_period: Duration::from_secs(raw.server.grace_period_seconds),
            shutdown_timeout: Duration::from_secs(raw.server.shutdown_timeout_seconds),
            upstream_keepalive_pool_size: raw.server.upstream_keepalive_pool_size,
            keepalive_request_limit: raw.server.keepalive_request_limit,
            work_stealing: raw.server.work_stealing,
            header_timeout: Duration::from_millis(raw.server.header_timeout_ms),
            max_client_connections: raw.server.max_client_connections,
            trusted_proxies: self.trusted_proxies(&raw),
        };
        if raw.server.header_timeout_ms == 0 {
            self.issue("server.header_timeout_ms", "must be greater than 0");
        }
        if raw.server.max_client_connections == 0 {
            self.issue("server.max_client_connections", "must be at least 1");
        }

        let up = &raw.upstream;
        let upstream_addr = self.addr("upstream.address", &up.address);
        for (p, v) in [
            ("upstream.connect_timeout_ms", up.connect_timeout_ms),
            ("upstream.read_timeout_ms", up.read_timeout_ms),
            ("upstream.write_timeout_ms", up.write_timeout_ms),
        ] {
            if v == 0 {
                self.issue(p, "must be greater than 0");
            }
        }
        let host = up
            .address
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']))
            .unwrap_or(&up.address);
        let upstream = upstream_addr.map(|address| Upstream {
            address,
            authority: up.address.clone(),
            tls: up.tls,
            sni: up.sni.clone().unwrap_or_else(|| host.to_string()),
            verify_certificate: up.verify_certificate,
            connect_timeout: Duration::from_millis(up.connect_timeout_ms),
            read_timeout: Duration::from_millis(up.read_timeout_ms),
            write_timeout: Duration::from_millis(up.write_timeout_ms),
            idle_timeout: Duration::from_secs(up.idle_timeout_seconds),
        });

        let identity = self.identity(&raw, env);
        let sessions = self.sessions(&raw);
        let routes = self.routes(&raw.routes);

        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.logging.level) {
            self.issue("logging.level", format!("not a log filter: {e}"));
        }
        let logging = Logging {
            format: raw.logging.format,
            level: raw.logging.level.clone(),
        };

        let auth = self.auth(&raw);
        let http_policy = self.http(&raw);
        let admin = AdminPolicy {
            admins_may_grant_impersonation: raw.admin.admins_may_grant_impersonation,
        };
        let impersonation = self.impersonation(&raw, base);
        let mail = self.mail(&raw, base, env);
        let located = self.users(&raw, base);
        let partners = self.partners(&raw, &located);
        let permissions = self.permissions(&raw);
        let mut users: Vec<User> = located.into_iter().map(|(_, u)| u).collect();
        // A partner user without a layout of their own gets the default.
        for u in users.iter_mut().filter(|u| u.partner.is_some()) {
            if u.layout.is_none() {
                u.layout.clone_from(&partners.default_layout);
            }
        }

        let hash = hex::encode(Sha256::digest(source.as_bytes()))[..16].to_string();
        Some(Config {
            listeners: Listeners {
                http,
                http_proxy_protocol: raw.listeners.http_proxy_protocol,
                https,
            },
            operations_address: operations_address?,
            probe_interval: Duration::from_millis(raw.operations.probe_interval_ms.max(100)),
            server,
            upstream: upstream?,
            identity: identity?,
            sessions: sessions?,
            routes,
            logging,
            auth: auth?,
            http: http_policy,
            admin,
            impersonation,
            mail,
            partners,
            permissions,
            users,
            hash,
        })
    }

    fn identity(&mut self, raw: &RawConfig, env: &dyn Env) -> Option<Identity> {
        let prefix = raw.identity.header_prefix.to_ascii_lowercase();
        let valid_token = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_token || prefix.len() < 3 {
            self.issue(
                "identity.header_prefix",
                "must be a header-name prefix of at least 3 letters, digits or dashes, such as `x-guise-`",
            );
        }
        let name = &raw.identity.signing_key_env;
        let key = match env.var(name) {
            Some(k) if k.len() >= MIN_KEY_LEN => Some(k.into_bytes()),
            Some(_) => {
                self.issue(
                    "identity.signing_key_env",
                    format!("the key in ${name} is shorter than {MIN_KEY_LEN} bytes"),
                );
                None
            }
            None => {
                self.issue(
                    "identity.signing_key_env",
                    format!("environment variable ${name} is not set (it must hold the identity signing key, {MIN_KEY_LEN}+ bytes)"),
                );
                None
            }
        };
        Some(Identity {
            header_prefix: prefix,
            signing_key_env: name.clone(),
            signing_key: key?,
        })
    }

    fn sessions(&mut self, raw: &RawConfig) -> Option<Sessions> {
        let s = &raw.sessions;
        let store = match (s.store, &s.redis) {
            (StoreKind::Memory, _) => SessionStoreConfig::Memory,
            (StoreKind::Redis, None) => {
                self.issue("sessions.redis", "`store: redis` needs a `redis:` section");
                return None;
            }
            (StoreKind::Redis, Some(r)) => SessionStoreConfig::Redis(self.redis(r)?),
        };
        let secs = Duration::from_secs;
        if s.cookie_name.is_empty()
            || !s
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            self.issue(
                "sessions.cookie_name",
                "must be letters, digits, `_` or `-` (the `__Host-` prefix is added on HTTPS)",
            );
        }
        if s.idle_timeout_seconds == 0 {
            self.issue("sessions.idle_timeout_seconds", "must be greater than 0");
        }
        if s.absolute_lifetime_seconds < s.idle_timeout_seconds {
            self.issue(
                "sessions.absolute_lifetime_seconds",
                "must be at least `idle_timeout_seconds`",
            );
        }
        if s.refresh_interval_seconds >= s.idle_timeout_seconds {
            self.issue(
                "sessions.refresh_interval_seconds",
                "must be shorter than `idle_timeout_seconds`, or sessions would expire between refreshes",
            );
        }
        if s.cache_ttl_seconds == 0 {
            self.issue("sessions.cache_ttl_seconds", "must be greater than 0");
        }
        if s.redis_connect_timeout_ms == 0 || s.redis_response_timeout_ms == 0 {
            self.issue("sessions", "Redis timeouts must be greater than 0");
        }
        Some(Sessions {
            store,
            cookie_name: s.cookie_name.clone(),
            idle_timeout: secs(s.idle_timeout_seconds),
            absolute_lifetime: secs(s.absolute_lifetime_seconds),
            refresh_interval: secs(s.refresh_interval_seconds),
            cache_ttl: secs(s.cache_ttl_seconds),
            stale_grace: secs(s.stale_grace_seconds),
            cache_capacity: s.cache_capacity.max(1),
            redis_connect_timeout: Duration::from_millis(s.redis_connect_timeout_ms),
            redis_response_timeout: Duration::from_millis(s.redis_response_timeout_ms),
        })
    }

    fn redis(&mut self, r: &RawRedis) -> Option<RedisConfig> {
        let given = [r.url.is_some(), r.sentinel.is_some(), r.cluster.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given != 1 {
            self.issue(
                "sessions.redis",
                "give exactly one of `url`, `sentinel` or `cluster`",
            );
            return None;
        }
        let urls_ok = |this: &mut Self, path: &str, urls: &[String]| {
            if urls.is_empty() {
                this.issue(path, "needs at least one URL");
            }
            let mut ok = !urls.is_empty();
            for (i, u) in urls.iter().enumerate() {
                if let Err(e) = check_redis_url(u) {
                    this.issue(&format!("{path}[{i}]"), e);
                    ok = false;
                }
            }
            ok
        };
        if let Some(url) = &r.url {
            if let Err(e) = check_redis_url(url) {
                self.issue("sessions.redis.url", e);
                return None;
            }
            return Some(RedisConfig::Single { url: url.clone() });
        }
        if let Some(s) = &r.sentinel {
            if s.master_name.is_empty() {
                self.issue("sessions.redis.sentinel.master_name", "must not be empty");
            }
            return urls_ok(self, "sessions.redis.sentinel.urls", &s.urls).then(|| {
                RedisConfig::Sentinel {
                    master_name: s.master_name.clone(),
                    urls: s.urls.clone(),
                }
            });
        }
        let c = r.cluster.as_ref()?;
        urls_ok(self, "sessions.redis.cluster.urls", &c.urls).then(|| RedisConfig::Cluster {
            urls: c.urls.clone(),
        })
    }

    fn routes(&mut self, raw: &[RawRoute]) -> Vec<RouteSpec> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let at = |k: &str| format!("routes[{i}].{k}");
            if let Err(e) = crate::routes::check_pattern(&r.path) {
                self.issue(&at("path"), e);
            }
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().enumerate() {
                let up = m.to_ascii_uppercase();
                if http::Method::from_bytes(up.as_bytes()).is_err() || up.is_empty() {
                    self.issue(
                        &format!("routes[{i}].methods[{j}]"),
                        format!("`{m}` is not an HTTP method"),
                    );
                }
                methods.push(up);
            }
            let action = match r.action.as_deref() {
                None => None,
                Some("read") => Some(Action::Read),
                Some("write") => Some(Action::Write),
                Some(other) => {
                    self.issue(&at("action"), format!("`{other}` is not `read` or `write`"));
                    None
                }
            };
            for (k, v) in [
                ("area", &r.area),
                ("resource", &r.resource),
                ("name", &r.name),
            ] {
                if let Some(v) = v {
                    if v.is_empty() || v.chars().any(|c| c.is_control()) {
                        self.issue(
                            &at(k),
                            "must be a non-empty name without control characters",
                        );
                    }
                }
            }
            let records = self.record_refs(i, r);
            let answer = self.answer_records(i, r);
            let body = self.body_refs(i, r);
            out.push(RouteSpec {
                name: r.name.clone().unwrap_or_else(|| r.path.clone()),
                path: r.path.clone(),
                methods,
                area: r.area.clone(),
                resource: r.resource.clone(),
                action,
                export: r.export,
                personal_data: r.personal_data,
                public: r.public,
                feature: r.feature.clone(),
                records,
                answer,
                body,
            });
        }
        if let Err((i, e)) = crate::routes::RouteTable::compile(&out) {
            self.issue(&format!("routes[{i}].path"), e);
        }
        out
    }
}

impl Checker<'_> {
    /// The records a route's request names.
    fn record_refs(&mut self, i: usize, r: &RawRoute) -> Vec<RecordRef> {
        let mut out = Vec::new();
        for (j, rec) in r.records.iter().enumerate() {
            let at = format!("routes[{i}].records[{j}]");
            let from = match (&rec.param, &rec.query) {
                (Some(p), None) => {
                    if !r.path.contains(&format!("{{{p}}}")) {
                        self.issue(
                            &format!("{at}.param"),
                            format!("the route's path `{}` has no parameter `{{{p}}}`", r.path),
                        );
                    }
                    RecordSource::Param(p.clone())
                }
                (None, Some(q)) => RecordSource::Query(q.clone()),
                _ => {
                    self.issue(&at, "give exactly one of `param` or `query`");
                    continue;
                }
            };
            out.push(RecordRef {
                resource: rec.resource.clone(),
                from,
            });
        }
        out
    }

    /// The records a write's body names (`routes[].body`): JSON refs, at
    /// least one.
    fn body_refs(&mut self, i: usize, r: &RawRoute) -> Vec<AnswerRef> {
        let Some(body) = &r.body else {
            return Vec::new();
        };
        let at = format!("routes[{i}].body.refs");
        if body.refs.is_empty() {
            self.issue(&at, "name at least one ref");
        }
        self.refs(&at, &body.refs, Shape::Json("the body"))
    }

    /// How a route's answer shows records.
    fn answer_records(&mut self, i: usize, r: &RawRoute) -> AnswerRecords {
        let mut answer = AnswerRecords::default();
        if let Some(l) = &r.json_list {
            let at = format!("routes[{i}].json_list");
            if !l.pointer.is_empty() && !l.pointer.starts_with('/') {
                self.issue(&format!("{at}.pointer"), "a JSON pointer starts with `/`");
            }
            let rs = self.refs(&format!("{at}.refs"), &l.refs, Shape::Json("the item"));
            answer.json_list = Some((l.pointer.clone(), rs, l.counts.clone()));
        }
        if let Some(l) = &r.json_record {
            let at = format!("routes[{i}].json_record");
            let rs = self.refs(&format!("{at}.refs"), &l.refs, Shape::Json("the item"));
            answer.json_record = Some((l.pointer.clone(), rs));
        }
        for (k, h) in r.html.iter().enumerate() {
            let at = format!("routes[{i}].html[{k}]");
            if h.selector.trim().is_empty() {
                self.issue(&format!("{at}.selector"), "must be a CSS selector");
            }
            if h.aggregate {
                // Removed whole for partner users: no record to look for.
                if !h.refs.is_empty() {
                    self.issue(
                        &format!("{at}.refs"),
                        "an `aggregate` element is hidden from partner users whole; it names no refs",
                    );
                }
                answer.html.push((h.selector.clone(), Vec::new()));
                continue;
            }
            let rs = self.refs(&format!("{at}.refs"), &h.refs, Shape::Html);
            answer.html.push((h.selector.clone(), rs));
        }
        answer
    }

    /// Where records are named, checked: a JSON ref gives `field` (a
    /// pointer within the item or body), an HTML ref its `attribute` or
    /// `href`.
    fn refs(&mut self, at: &str, raw: &[RawRef], shape: Shape) -> Vec<AnswerRef> {
        // A JSON shape without refs is read by the data-permission rules
        // only (which judge items by their attributes); an HTML one has no
        // other use.
        if raw.is_empty() && shape == Shape::Html {
            self.issue(at, "name at least one ref");
        }
        let mut out = Vec::new();
        for (k, rf) in raw.iter().enumerate() {
            let here = format!("{at}[{k}]");
            let place = match (shape, &rf.field, &rf.attribute, &rf.href) {
                (Shape::Json(_), Some(f), None, None) => {
                    if !f.starts_with('/') {
                        self.issue(&format!("{here}.field"), "a JSON pointer starts with `/`");
                    }
                    AnswerAt::Field(f.clone())
                }
                (Shape::Html, None, Some(a), None) => AnswerAt::Attribute(a.clone()),
                (Shape::Html, None, None, Some(h)) => {
                    if !h.contains("{id}") {
                        self.issue(&format!("{here}.href"), "the pattern needs `{id}`");
                    }
                    AnswerAt::Href(h.clone())
                }
                (Shape::Json(within), ..) => {
                    self.issue(
                        &here,
                        format!("a JSON ref gives `field` (a JSON pointer within {within})"),
                    );
                    continue;
                }
                (Shape::Html, ..) => {
                    self.issue(
                        &here,
                        "an HTML ref gives exactly one of `attribute` or `href`",
                    );
                    continue;
                }
            };
            out.push(AnswerRef {
                resource: rf.resource.clone(),
                at: place,
            });
        }
        out
    }

    /// `partners.parents` and `partners.lookup_seconds`.
    fn parents(&mut self, p: &raw::RawPartners, settings: &mut partners::Settings) {
        if let Some(seconds) = p.lookup_seconds {
            if !seconds.is_finite() || !(0.0..=3600.0).contains(&seconds) {
                self.issue("partners.lookup_seconds", "must be between 0 and 3600");
            } else {
                settings.lookup_ttl = std::time::Duration::from_secs_f64(seconds);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, raw) in p.parents.iter().enumerate() {
            let at = format!("partners.parents[{i}]");
            if partners::ASSIGNABLE.contains(&raw.resource.as_str()) {
                self.issue(
                    &format!("{at}.resource"),
                    format!(
                        "{} records are assigned to partners themselves; parents are for records inside them",
                        raw.resource
                    ),
                );
            } else if raw.resource.is_empty() || !seen.insert(raw.resource.as_str()) {
                self.issue(&format!("{at}.resource"), "name a resource, each once");
            }
            let l = &raw.lookup;
            if !l.path.starts_with('/') || l.path.matches("{id}").count() != 1 {
                self.issue(
                    &format!("{at}.lookup.path"),
                    "a lookup path starts with `/` and has one `{id}`",
                );
            }
            if !l.pointer.is_empty() && !l.pointer.starts_with('/') {
                self.issue(
                    &format!("{at}.lookup.pointer"),
                    "a JSON pointer starts with `/`",
                );
            }
            if raw.refs.is_empty() {
                self.issue(&format!("{at}.refs"), "name at least one parent field");
            }
            for (k, r) in raw.refs.iter().enumerate() {
                if !matches!(r.resource.as_str(), "company" | "relationship") {
                    self.issue(
                        &format!("{at}.refs[{k}].resource"),
                        "a parent is a `company` or a `relationship`",
                    );
                }
                if !r.field.starts_with('/') {
                    self.issue(
                        &format!("{at}.refs[{k}].field"),
                        "a JSON pointer starts with `/`",
                    );
                }
            }
            settings.parents.push(partners::ParentSpec {
                resource: raw.resource.clone(),
                path: l.path.clone(),
                pointer: l.pointer.clone(),
                refs: raw
                    .refs
                    .iter()
                    .map(|r| (r.resource.clone(), r.field.clone()))
                    .collect(),
            });
        }
    }

    /// The `licences`, `partners`, `tenants` and `resources` sections.
    fn partners(&mut self, raw: &RawConfig, users: &[(String, User)]) -> partners::Settings {
        use partners::{Bundle, Partner, Settings, Tenant, TenantSettings};
        let p = &raw.partners;
        let mut settings = Settings::default();
        if let Some(areas) = &p.areas {
            if areas.is_empty() {
                self.issue("partners.areas", "name at least one area");
            }
            settings.areas = areas.iter().cloned().collect();
        }
        if let Some(b) = &p.default_bundle {
            settings.default_bundle = b.clone();
        }
        settings.default_layout = p.default_layout.clone();
        settings.full_seats = raw.licences.full;
        if let Some(n) = p.answer_max_bytes {
            if !(1024..=1024 * 1024 * 1024).contains(&n) {
                self.issue(
                    "partners.answer_max_bytes",
                    "must be between 1024 and 1073741824",
                );
            }
            settings.answer_max_bytes = n;
        }
        self.parents(p, &mut settings);
        settings.unrouted_allowed = match p.unrouted.as_deref() {
            None | Some("deny") => false,
            Some("allow") => true,
            Some(other) => {
                self.issue(
                    "partners.unrouted",
                    format!("`{other}` is not `deny` or `allow`"),
                );
                false
            }
        };
        for (i, b) in p.bundles.iter().enumerate() {
            let at = format!("partners.bundles[{i}]");
            if b.name == settings.default_bundle {
                self.issue(&format!("{at}.name"), "is the default bundle's name");
            }
            for (j, a) in b.areas.iter().enumerate() {
                if !settings.areas.contains(a) {
                    self.issue(
                        &format!("{at}.areas[{j}]"),
                        format!("`{a}` is not one of partners.areas (a custom bundle is a subset of the default one)"),
                    );
                }
            }
            settings.bundles.push(Bundle {
                name: b.name.clone(),
                areas: b.areas.iter().cloned().collect(),
            });
        }
        let mut ids = std::collections::HashSet::new();
        for (i, o) in p.organisations.iter().enumerate() {
            let at = format!("partners.organisations[{i}]");
            if o.id.is_empty() || !o.id.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b',') {
                self.issue(
                    &format!("{at}.id"),
                    "must be visible ASCII without spaces or commas",
                );
            }
            if !ids.insert(o.id.clone()) {
                self.issue(
                    &format!("{at}.id"),
                    format!("`{}` is used by another partner", o.id),
                );
            }
            if let Some(u) = &o.primary_user {
                match users.iter().map(|(_, x)| x).find(|x| &x.id == u) {
                    Some(x) if x.partner.as_deref() == Some(o.id.as_str()) => {}
                    _ => self.issue(
                        &format!("{at}.primary_user"),
                        format!("`{u}` is not a partner user of {}", o.id),
                    ),
                }
            }
            settings.partners.push(Partner {
                id: o.id.clone(),
                name: o.name.clone(),
                status: o.status,
                companies: o.companies.iter().cloned().collect(),
                relationships: o.relationships.iter().cloned().collect(),
                reports: o.reports.iter().cloned().collect(),
                primary_user: o.primary_user.clone(),
            });
        }
        let bundle_names: std::collections::HashSet<&str> = settings
            .bundles
            .iter()
            .map(|b| b.name.as_str())
            .chain([settings.default_bundle.as_str()])
            .collect();
        for (at, u) in users {
            if u.paired.is_some() {
                self.issue(
                    &format!("{at}.paired"),
                    "paired users are made by the gateway, not listed in the file",
                );
            }
            if u.partner.is_none() && (u.bundle.is_some() || u.layout.is_some()) {
                self.issue(
                    &format!("{at}.bundle"),
                    "`bundle` and `layout` are for partner users: give `partner` too",
                );
            }
            if let Some(pid) = &u.partner {
                if !ids.contains(pid) {
                    self.issue(
                        &format!("{at}.partner"),
                        format!("`{pid}` is not one of partners.organisations"),
                    );
                }
            }
            if let Some(b) = &u.bundle {
                if !bundle_names.contains(b.as_str()) {
                    self.issue(&format!("{at}.bundle"), format!("no bundle `{b}`"));
                }
            }
        }
        if let Some(seats) = settings.full_seats {
            let used = users
                .iter()
                .map(|(_, u)| u)
                .filter(|u| u.licence == crate::users::Licence::Full && u.paired.is_none())
                .count() as u64;
            if used > seats {
                self.issue(
                    "licences.full",
                    format!("{used} users in this file hold a Full licence, more than the {seats} seats"),
                );
            }
        }
        let t = &raw.tenants;
        let mut tenants = TenantSettings {
            hubs: t.hubs.clone(),
            roles: t.roles.clone(),
            refused_for_paired: t.refused_for_paired.iter().cloned().collect(),
            ..TenantSettings::default()
        };
        self.tenant_roles(&mut tenants, t);
        if let Some(prefix) = &t.path_prefix {
            match prefix.split_once("{tenant}") {
                Some((before, after))
                    if before.starts_with('/')
                        && before.ends_with('/')
                        && (after.is_empty() || after.starts_with('/')) =>
                {
                    let after = if after.is_empty() { "/" } else { after };
                    tenants.path_prefix = Some((before.to_string(), after.to_string()));
                }
                _ => self.issue(
                    "tenants.path_prefix",
                    "must be a path with one `{tenant}` segment, such as `/t/{tenant}/`",
                ),
            }
        }
        if !t.list.is_empty() && t.path_prefix.is_none() {
            self.issue(
                "tenants.path_prefix",
                "tenants are listed, so say how a request names one (e.g. `/t/{tenant}/`)",
            );
        }
        let mut tids = std::collections::HashSet::new();
        for (i, x) in t.list.iter().enumerate() {
            let at = format!("tenants.list[{i}]");
            if x.id.is_empty()
                || !x
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.issue(
                    &format!("{at}.id"),
                    "must be letters, digits, `-` or `_` (it is a path segment)",
                );
            }
            if !tids.insert(x.id.clone()) {
                self.issue(
                    &format!("{at}.id"),
                    format!("`{}` is used by another tenant", x.id),
                );
            }
            if let Err(why) = tenants.check_hub(&x.hub) {
                self.issue(&format!("{at}.hub"), why);
            }
            tenants.list.push(Tenant {
                id: x.id.clone(),
                name: x.name.clone(),
                hub: x.hub.clone(),
                user_quota: x.user_quota,
                users: x.users,
                allow_partner_login: x.allow_partner_login,
            });
        }
        settings.tenants = tenants;
        settings
    }

    /// `tenants.roles`, `tenants.hubs` and `tenants.partner_assignable`:
    /// every name one the roles header can carry and, when the app's roles
    /// are listed, one of them; each hub gives at least one role.
    fn tenant_roles(&mut self, tenants: &mut partners::TenantSettings, raw: &raw::RawTenants) {
        let check = |me: &mut Self, at: String, name: &str, listed: bool| {
            if let Err(why) = crate::users::check_tenant_role(name) {
                me.issue(&at, why);
            } else if listed && !tenants.is_role(name) {
                me.issue(
                    &at,
                    format!(
                        "`{name}` is not one of `tenants.roles` ({})",
                        tenants.roles.as_deref().unwrap_or_default().join(", ")
                    ),
                );
            }
        };
        if let Some(roles) = &raw.roles {
            if roles.is_empty() {
                self.issue(
                    "tenants.roles",
                    "list at least one role, or leave `roles` out",
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, r) in roles.iter().enumerate() {
                check(self, format!("tenants.roles[{i}]"), r, false);
                if !seen.insert(r) {
                    self.issue(
                        &format!("tenants.roles[{i}]"),
                        format!("`{r}` is listed twice"),
                    );
                }
            }
        }
        for (hub, roles) in &raw.hubs {
            if roles.is_empty() {
                self.issue(
                    &format!("tenants.hubs.{hub}"),
                    "give at least one role: a paired user with none could do nothing in the tenant",
                );
            }
            for (i, r) in roles.iter().enumerate() {
                check(self, format!("tenants.hubs.{hub}[{i}]"), r, true);
            }
        }
        let assignable = match &raw.partner_assignable {
            Some(given) => {
                for (i, r) in given.iter().enumerate() {
                    check(self, format!("tenants.partner_assignable[{i}]"), r, true);
                }
                given.iter().cloned().collect()
            }
            // No hubs: every paired user gets the built-in default role.
            None if raw.hubs.is_empty() && raw.roles.is_none() => {
                [partners::DEFAULT_TENANT_ROLE.to_string()].into()
            }
            None => raw.hubs.values().flatten().cloned().collect(),
        };
        tenants.partner_assignable = assignable;
    }

    fn auth(&mut self, raw: &RawConfig) -> Option<Auth> {
        let a = &raw.auth;
        for (p, v) in [
            ("auth.login_path", &a.login_path),
            ("auth.after_login", &a.after_login),
        ] {
            if !v.starts_with('/')
                || v.starts_with("//")
                || !crate::target::normalise(v.as_bytes()).is_ok_and(|n| n == v.as_bytes())
            {
                self.issue(
                    p,
                    format!("`{v}` must be a normal path on this site, starting with a single `/`"),
                );
            } else if v.starts_with("/_guise/") {
                self.issue(p, "paths under /_guise/ belong to the gateway");
            }
        }
        for (p, v) in [
            ("auth.max_attempts_per_user", a.max_attempts_per_user),
            ("auth.max_attempts_per_client", a.max_attempts_per_client),
            (
                "auth.max_attempts_per_user_total",
                a.max_attempts_per_user_total,
            ),
            ("auth.device_cookie_days", a.device_cookie_days),
        ] {
            if v == 0 {
                self.issue(p, "must be at least 1");
            }
        }
        if a.password_checks.max_concurrent == 0 || a.password_checks.max_concurrent > 1024 {
            self.issue(
                "auth.password_checks.max_concurrent",
                "must be between 1 and 1024",
            );
        }
        if a.attempt_window_seconds == 0 {
            self.issue("auth.attempt_window_seconds", "must be greater than 0");
        }
        let mode = match (a.mode, &a.upstream) {
            (AuthMode::Gateway, None) => LoginMode::Gateway,
            (AuthMode::Gateway, Some(_)) => {
                self.issue("auth.upstream", "only used with `mode: upstream`");
                LoginMode::Gateway
            }
            (AuthMode::Upstream, None) => {
                self.issue("auth.upstream", "`mode: upstream` needs an `upstream:` section saying where the app names the user");
                return None;
            }
            (AuthMode::Upstream, Some(u)) => LoginMode::Upstream(Box::new(self.upstream_login(u)?)),
        };
        Some(Auth {
            require_login: a.require_login,
            login_path: a.login_path.clone(),
            after_login: a.after_login.clone(),
            mode,
            max_attempts_per_user: a.max_attempts_per_user,
            max_attempts_per_client: a.max_attempts_per_client,
            max_attempts_per_user_total: a.max_attempts_per_user_total,
            attempt_window: Duration::from_secs(a.attempt_window_seconds),
            device_cookie_lifetime: Duration::from_secs(a.device_cookie_days * 86_400),
            password_checks: PasswordChecks {
                max_concurrent: a.password_checks.max_concurrent,
                queue_timeout: Duration::from_millis(a.password_checks.queue_timeout_ms),
            },
        })
    }

    fn trusted_proxies(&mut self, raw: &RawConfig) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for (i, p) in raw.server.trusted_proxies.iter().enumerate() {
            // A bare address is a network of one.
            let net = p
                .parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(n) => out.push(n),
                Err(_) => self.issue(
                    &format!("server.trusted_proxies[{i}]"),
                    format!("`{p}` is not an address or CIDR network (e.g. 10.0.0.0/8)"),
                ),
            }
        }
        let proxy_protocol = raw.listeners.http_proxy_protocol
            || raw
                .listeners
                .https
                .as_ref()
                .is_some_and(|h| h.proxy_protocol);
        if proxy_protocol && raw.server.trusted_proxies.is_empty() {
            self.issue(
                "server.trusted_proxies",
                "a listener expects the PROXY protocol, so list the load balancers allowed to send it",
            );
        }
        out
    }

    fn http(&mut self, raw: &RawConfig) -> HttpPolicy {
        let mut allowed_hosts = Vec::new();
        for (i, h) in raw.http.allowed_hosts.iter().enumerate() {
            let host = h.trim().to_ascii_lowercase();
            if crate::target::check_host(host.as_bytes()).is_err() {
                self.issue(
                    &format!("http.allowed_hosts[{i}]"),
                    format!("`{h}` is not a host name or `host:port`"),
                );
            }
            allowed_hosts.push(host);
        }
        let h = &raw.http.hsts;
        let hsts = h.enabled.then(|| {
            let mut v = format!("max-age={}", h.max_age_seconds);
            if h.include_subdomains {
                v.push_str("; includeSubDomains");
            }
            v
        });
        HttpPolicy {
            allowed_hosts,
            hsts,
        }
    }

    fn upstream_login(&mut self, u: &RawUpstreamLogin) -> Option<UpstreamLogin> {
        let at = |k: &str| format!("auth.upstream.{k}");
        let given = [
            u.user_id_from_username,
            u.user_id_header.is_some(),
            u.user_id_json_pointer.is_some(),
            u.user_id_redirect_regex.is_some(),
            u.whoami.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if given != 1 {
            self.issue(
                "auth.upstream",
                "give exactly one of `user_id_from_username: true`, `user_id_header`, `user_id_json_pointer`, `user_id_redirect_regex` or `whoami`, to say how guise learns who the app accepted",
            );
            return None;
        }
        for (i, s) in u.success_status.iter().enumerate() {
            if !(100..=599).contains(s) {
                self.issue(
                    &format!("auth.upstream.success_status[{i}]"),
                    format!("{s} is not an HTTP status"),
                );
            }
        }
        let cookie_name_ok = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        if let Some(c) = &u.success_cookie {
            if !cookie_name_ok(c) {
                self.issue(&at("success_cookie"), format!("`{c}` is not a cookie name"));
            }
        }
        for (i, c) in u.app_session_cookies.iter().enumerate() {
            if !cookie_name_ok(c) {
                self.issue(
                    &format!("auth.upstream.app_session_cookies[{i}]"),
                    format!("`{c}` is not a cookie name"),
                );
            }
        }
        if u.username_fields.is_empty() {
            self.issue(&at("username_fields"), "name at least one form field");
        }
        if !u.app_session_cookies.is_empty() && u.app_cookies == AppCookies::Drop {
            self.issue(
                &at("app_cookies"),
                "`drop` keeps the app's session cookies from the browser, so the app could never see its own session; use `pass` with `app_session_cookies`",
            );
        }
        if let Some(p) = &u.logout_path {
            self.normal_path(&at("logout_path"), p);
        }
        let user_id = if u.user_id_from_username {
            if u.success_cookie.is_none() {
                self.issue(
                    &at("success_cookie"),
                    "`user_id_from_username` needs `success_cookie` (the app's session cookie): without it a status alone would have to tell a good password from a bad one, and many apps answer both with 200 or 302",
                );
            }
            UserIdSource::Username
        } else if let Some(h) = &u.user_id_header {
            UserIdSource::Header(self.header_name(&at("user_id_header"), h)?)
        } else if let Some(p) = &u.user_id_json_pointer {
            UserIdSource::JsonPointer(self.json_pointer(&at("user_id_json_pointer"), p)?)
        } else if let Some(r) = &u.user_id_redirect_regex {
            UserIdSource::RedirectRegex(self.id_regex(&at("user_id_redirect_regex"), r)?)
        } else {
            let w = u.whoami.as_ref()?;
            self.normal_path(&at("whoami.path"), w.path.split('?').next().unwrap_or(""));
            let reads = [
                w.header.is_some(),
                w.json_pointer.is_some(),
                w.body_regex.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if reads != 1 {
                self.issue(
                    &at("whoami"),
                    "give exactly one of `header`, `json_pointer` or `body_regex`",
                );
                return None;
            }
            let read = if let Some(h) = &w.header {
                WhoamiRead::Header(self.header_name(&at("whoami.header"), h)?)
            } else if let Some(p) = &w.json_pointer {
                WhoamiRead::JsonPointer(self.json_pointer(&at("whoami.json_pointer"), p)?)
            } else {
                let r = w.body_regex.as_deref().unwrap_or_default();
                WhoamiRead::BodyRegex(self.id_regex(&at("whoami.body_regex"), r)?)
            };
            UserIdSource::Whoami(Whoami {
                path: w.path.clone(),
                read,
            })
        };
        let provision = u.provision.enabled.then(|| Provision {
            roles: u.provision.roles.clone(),
            attributes: u.provision.attributes.clone(),
        });
        if provision.as_ref().is_some_and(|p| {
            p.roles
                .iter()
                .any(|r| !matches!(r, crate::users::Role::User))
        }) {
            self.issue(
                &at("provision.roles"),
                "users the app owns get ordinary roles only; grant admin rights to a listed user instead",
            );
        }
        Some(UpstreamLogin {
            success_status: u.success_status.clone(),
            success_cookie: u.success_cookie.clone(),
            username_fields: u.username_fields.clone(),
            user_id,
            app_cookies: u.app_cookies,
            app_session_cookies: u.app_session_cookies.clone(),
            logout_path: u.logout_path.clone(),
            provision,
        })
    }

    fn normal_path(&mut self, path: &str, v: &str) {
        if !v.starts_with('/')
            || !crate::target::normalise(v.as_bytes()).is_ok_and(|n| n == v.as_bytes())
        {
            self.issue(
                path,
                format!("`{v}` must be a normal path on this site, starting with `/`"),
            );
        }
    }

    fn header_name(&mut self, path: &str, h: &str) -> Option<http::HeaderName> {
        match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                self.issue(path, format!("`{h}` is not a header name"));
                None
            }
        }
    }

    fn json_pointer(&mut self, path: &str, p: &str) -> Option<String> {
        if !p.is_empty() && !p.starts_with('/') {
            self.issue(path, "a JSON pointer starts with `/` (e.g. `/user/id`)");
            return None;
        }
        Some(p.to_string())
    }

    fn id_regex(&mut self, path: &str, r: &str) -> Option<regex::Regex> {
        match regex::Regex::new(r) {
            Ok(re) if re.capture_names().any(|n| n == Some("id")) => Some(re),
            Ok(_) => {
                self.issue(path, "needs a named group `(?P<id>...)`");
                None
            }
            Err(e) => {
                self.issue(path, format!("not a regex: {e}"));
                None
            }
        }
    }

    /// The file's users, each with its YAML path (`users[3]`,
    /// `users_file[0]`) for later checks to name.
    fn users(&mut self, raw: &RawConfig, base: &Path) -> Vec<(String, User)> {
        let mut users: Vec<(String, User)> = raw
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (format!("users[{i}]"), u.clone()))
            .collect();
        if let Some(file) = &raw.users_file {
            let path = base.join(file);
            match std::fs::read_to_string(&path) {
                Err(e) => self.issue("users_file", format!("cannot read {}: {e}", path.display())),
                Ok(src) => match yaml::read::<Vec<User>>(&src, &LineMap::build(&src), "users_file")
                {
                    Ok(list) => users.extend(
                        list.into_iter()
                            .enumerate()
                            .map(|(i, u)| (format!("users_file[{i}]"), u)),
                    ),
                    // The problem is in the other file: name it, with its
                    // own line and path, at `users_file` in this one.
                    Err(e) => {
                        let line = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
                        let at = match e.path() {
                            "" => String::new(),
                            p => format!(" {p}:"),
                        };
                        self.issue("users_file", format!("{}:{line}:{at} {e}", path.display()));
                    }
                },
            }
        }
        let mut ids = std::collections::HashSet::new();
        let mut logins = std::collections::HashSet::new();
        for (at, u) in &users {
            if u.id.is_empty() || u.id.chars().any(|c| c.is_control() || c == ',') {
                self.issue(
                    &format!("{at}.id"),
                    "must be non-empty, without commas or control characters",
                );
            }
            if !ids.insert(u.id.clone()) {
                self.issue(
                    &format!("{at}.id"),
                    format!("`{}` is used by another user", u.id),
                );
            }
            if !u.email.is_empty() && !logins.insert(u.email.to_lowercase()) {
                self.issue(
                    &format!("{at}.email"),
                    format!("`{}` is used by another user", u.email),
                );
            }
            // The directory's own rules (ids and emails fit in headers, the
            // hash is argon2id), reported here with the user's YAML path.
            if let Err(e) = u.check() {
                self.issue(at, e.to_string());
            }
        }
        users
    }
}

fn check_redis_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => Ok(()),
        Ok(_) => Err(format!(
            "`{url}` is not a redis:// or rediss:// URL with a host"
        )),
        Err(e) => Err(format!("`{url}` is not a URL: {e}")),
    }
}

/// What a ref points into: a JSON item or body (named in messages), or an
/// HTML element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Json(&'static str),
    Html,
}
