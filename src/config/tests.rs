use std::path::Path;

use super::*;
use crate::routes::{AnswerAt, AnswerRef};

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn env_with_key(name: &str) -> Option<String> {
    (name == "GUISE_SIGNING_KEY").then(|| KEY.to_string())
}

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(src, "test.yaml", Path::new("/etc/guise"), &env_with_key)
}

const GOOD: &str = "\
listeners:
  http: 127.0.0.1:8080
upstream:
  address: 127.0.0.1:8081
routes:
  - path: /api/companies/{id}
    area: companies
";

#[test]
fn a_minimal_file_gets_documented_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.operations_address.to_string(), "127.0.0.1:9090");
    assert_eq!(c.identity.header_prefix, "x-guise-");
    assert_eq!(c.identity.signing_key, KEY.as_bytes());
    assert_eq!(c.sessions.store, SessionStoreConfig::Memory);
    assert_eq!(c.server.threads, 1);
    assert!(!c.server.work_stealing);
    assert_eq!(c.routes[0].name, "/api/companies/{id}");
    assert_eq!(c.hash.len(), 16);
}

#[test]
fn an_unknown_key_is_refused_with_its_path_and_line() {
    let src = GOOD.replace(
        "  address: 127.0.0.1:8081",
        "  address: 127.0.0.1:8081\n  adress: typo",
    );
    let err = parse(&src).unwrap_err();
    let issue = &err.issues()[0];
    assert_eq!(issue.path, "upstream.adress");
    assert_eq!(issue.line, Some(5));
    assert!(
        issue
            .message
            .starts_with("unknown key `adress`; expected one of `address`, `tls`, "),
        "{}",
        issue.message
    );
    speaks_the_files_terms(issue);
}

#[test]
fn a_wrong_type_names_the_nested_path_and_line() {
    let src = GOOD.replace(
        "    area: companies",
        "    area: companies\n    export: maybe",
    );
    let err = parse(&src).unwrap_err();
    let issue = &err.issues()[0];
    assert_eq!(issue.path, "routes[0].export");
    assert_eq!(issue.line, Some(8));
}

/// The first problem found in `src`, which must be refused.
fn first_issue(src: &str) -> ConfigIssue {
    parse(src).unwrap_err().issues()[0].clone()
}

/// `err` names every one of `want`'s YAML paths at its line (and maybe
/// more).
fn names_each_at(err: &ConfigError, want: &[(&str, usize)]) {
    let got: Vec<(String, Option<usize>)> = err
        .issues()
        .iter()
        .map(|i| (i.path.clone(), i.line))
        .collect();
    for &(path, line) in want {
        assert!(
            got.contains(&(path.to_string(), Some(line))),
            "missing {:?} in {got:?}",
            (path, line)
        );
    }
}

/// A message about the file names its path and line once (the `Display`
/// of the issue prints them) and never a Rust type.
fn speaks_the_files_terms(issue: &ConfigIssue) {
    let shown = issue.to_string();
    for rust in ["Raw", "struct ", "enum ", "invalid type", "u64", "usize"] {
        assert!(!shown.contains(rust), "{rust} in {shown}");
    }
    assert!(issue.line.is_some(), "no line: {shown}");
    if !issue.path.is_empty() {
        let at = format!("{}:", issue.path);
        assert_eq!(shown.matches(&at).count(), 1, "{shown}");
        assert!(!issue.message.contains(&at), "{shown}");
    }
}

#[test]
fn a_sequence_where_a_mapping_belongs_says_what_the_mapping_needs() {
    let src = GOOD.replace("  address: 127.0.0.1:8081", "  - 127.0.0.1:8081");
    let err = parse(&src).unwrap_err();
    let issue = &err.issues()[0];
    assert_eq!(issue.path, "upstream");
    assert_eq!(issue.line, Some(4));
    assert_eq!(
        issue.message,
        "expected a mapping with `address` (found a sequence)"
    );
    assert_eq!(
        issue.to_string(),
        "line 4: upstream: expected a mapping with `address` (found a sequence)"
    );
    speaks_the_files_terms(issue);
}

#[test]
fn a_string_where_a_number_belongs_says_a_number() {
    let src = format!("{GOOD}server:\n  threads: many\n");
    let err = parse(&src).unwrap_err();
    let issue = &err.issues()[0];
    assert_eq!(issue.path, "server.threads");
    assert_eq!(issue.line, Some(9));
    assert_eq!(
        issue.message,
        "expected a whole number of 0 or more (found `many`)"
    );
    speaks_the_files_terms(issue);

    let src = GOOD.replace(
        "    area: companies",
        "    area: companies\n    export: maybe",
    );
    let issue = &first_issue(&src);
    assert_eq!(issue.message, "expected `true` or `false` (found `maybe`)");
    speaks_the_files_terms(issue);
}

#[test]
fn a_missing_required_key_is_named_at_its_mapping() {
    let src = GOOD.replace("  address: 127.0.0.1:8081", "  tls: true");
    let err = parse(&src).unwrap_err();
    let issue = &err.issues()[0];
    assert_eq!(issue.path, "upstream");
    assert_eq!(issue.line, Some(4));
    assert_eq!(issue.message, "missing required key `address`");
    speaks_the_files_terms(issue);

    let issue = &first_issue("listeners:\n  http: 127.0.0.1:8080\n");
    assert_eq!(issue.path, "");
    assert_eq!(issue.message, "missing required key `upstream`");
    speaks_the_files_terms(issue);
}

#[test]
fn a_word_that_is_not_one_of_the_choices_lists_them() {
    let src = format!("{GOOD}sessions:\n  store: disk\n");
    let issue = &first_issue(&src);
    assert_eq!(issue.path, "sessions.store");
    assert_eq!(issue.line, Some(9));
    assert_eq!(issue.message, "expected `memory` or `redis` (found `disk`)");
    speaks_the_files_terms(issue);

    let src = format!("{GOOD}sessions:\n  store: [memory]\n");
    let issue = &first_issue(&src);
    assert_eq!(
        issue.message,
        "expected `memory` or `redis` (found a sequence)"
    );
}

#[test]
fn every_section_of_the_wrong_shape_says_what_belongs_there() {
    let base = [
        ("listeners", "listeners:\n  http: 127.0.0.1:8080\n"),
        ("upstream", "upstream:\n  address: 127.0.0.1:8081\n"),
    ];
    let sections = [
        "listeners",
        "operations",
        "server",
        "upstream",
        "identity",
        "sessions",
        "routes",
        "logging",
        "auth",
        "http",
        "admin",
        "mail",
        "users",
    ];
    for key in sections {
        let mut src: String = base
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(_, v)| *v)
            .collect();
        src.push_str(&format!("{key}: 5\n"));
        let err = parse(&src).unwrap_err();
        let issue = &err.issues()[0];
        assert_eq!(issue.path, key, "{issue}");
        assert!(
            issue.message.starts_with("expected a ") && issue.message.ends_with(" (found `5`)"),
            "{issue}"
        );
        speaks_the_files_terms(issue);
    }
    for (extra, path) in [
        ("listeners:\n  https: 5\n", "listeners.https"),
        ("sessions:\n  redis: [x]\n", "sessions.redis"),
        ("auth:\n  upstream: x\n", "auth.upstream"),
        ("auth:\n  password_checks: []\n", "auth.password_checks"),
        ("http:\n  hsts: true\n", "http.hsts"),
        (
            "mail:\n  from: a@b.test\n  smtp:\n    host: h\n    security: ssl\n",
            "mail.smtp.security",
        ),
        ("http:\n  allowed_hosts: {a: b}\n", "http.allowed_hosts"),
        ("users:\n  - 5\n", "users[0]"),
        (
            "users:\n  - {id: u, name: n, email: e@x, roles: admin}\n",
            "users[0].roles",
        ),
    ] {
        let src = if extra.starts_with("listeners") {
            format!("{extra}upstream:\n  address: 127.0.0.1:8081\n")
        } else {
            format!("{GOOD}{extra}")
        };
        let err = parse(&src).unwrap_err();
        let issue = &err.issues()[0];
        assert_eq!(issue.path, path, "{issue}");
        assert!(issue.message.starts_with("expected "), "{issue}");
        speaks_the_files_terms(issue);
    }
}

#[test]
fn an_emptied_section_or_list_means_its_defaults() {
    let src = format!(
        "{GOOD}server:\n  # threads: 4\nauth:\n  password_checks:\nhttp:\n  allowed_hosts:\n  hsts:\nusers:\n"
    )
    .replace("    area: companies", "    area: companies\n    methods:");
    let c = parse(&src).unwrap();
    assert_eq!(c.server.threads, 1);
    assert_eq!(c.auth.password_checks.max_concurrent, 4);
    assert!(c.http.allowed_hosts.is_empty());
    assert!(c.http.hsts.is_some());
    assert!(c.users.is_empty());
    assert!(c.routes[0].methods.is_empty());
    let no_routes =
        "listeners:\n  http: 127.0.0.1:8080\nupstream:\n  address: 127.0.0.1:8081\nroutes:\n";
    assert!(parse(no_routes).unwrap().routes.is_empty());
}

#[test]
fn a_file_that_is_not_yaml_is_refused_without_a_panic() {
    let deep = "[".repeat(100_000);
    for src in [
        "",
        "\t",
        "{{{{",
        ": : :",
        "listeners: [unclosed\n",
        "a: b: c",
        "- - -",
        "&a [*a, *b]",
        "\u{0}\u{1}",
        "key: \"unterminated",
        "%YAML 9.9\n--- x\n",
        "listeners:\n  http: x\n\tupstream: y\n",
        "listeners: {}\n---\nupstream: {}\n",
        "listeners: {}\nlisteners: {}\n",
        deep.as_str(),
    ] {
        let err = parse(src).unwrap_err();
        assert!(!err.issues().is_empty(), "{src:?}");
        for issue in err.issues() {
            assert!(!issue.message.is_empty(), "{src:?}");
            assert!(!issue.to_string().contains("Raw"), "{src:?}: {issue}");
        }
    }
}

#[test]
fn a_users_file_problem_names_that_file_its_line_and_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.yaml"),
        "- id: u1\n  name: Ann\n  email: ann@example.com\n  roles: root\n",
    )
    .unwrap();
    let src = format!("{GOOD}users_file: users.yaml\n");
    let err = Config::parse(&src, "test.yaml", dir.path(), &env_with_key).unwrap_err();
    let issue = &err.issues()[0];
    assert_eq!(issue.path, "users_file");
    assert!(
        issue.message.ends_with(
            "users.yaml: line 4: [0].roles: expected a sequence of roles: `super_admin`, `admin`, `user` (found `root`)"
        ),
        "{issue}"
    );
}

#[test]
fn every_semantic_problem_is_reported_in_one_run_with_lines() {
    let src = "\
listeners:
  http: not-an-address
upstream:
  address: 127.0.0.1:8081
  connect_timeout_ms: 0
routes:
  - path: no-slash
  - path: /ok
    methods: [GET, \"BAD METHOD\"]
    action: delete
";
    let err = parse(src).unwrap_err();
    names_each_at(
        &err,
        &[
            ("listeners.http", 2),
            ("upstream.connect_timeout_ms", 5),
            ("routes[0].path", 7),
            ("routes[1].methods[1]", 9),
            ("routes[1].action", 10),
        ],
    );
    let text = err.to_string();
    assert!(
        text.contains("test.yaml: line 2: listeners.http:"),
        "{text}"
    );
}

#[test]
fn a_missing_signing_key_names_the_variable_and_never_a_value() {
    let none = |_: &str| None;
    let err = Config::parse(GOOD, "t.yaml", Path::new("."), &none).unwrap_err();
    assert!(err.to_string().contains("$GUISE_SIGNING_KEY is not set"));

    let short = |_: &str| Some("short-secret".to_string());
    let err = Config::parse(GOOD, "t.yaml", Path::new("."), &short).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("shorter than 32 bytes"));
    assert!(!text.contains("short-secret"));
}

#[test]
fn the_signing_key_never_shows_in_debug_output() {
    let c = parse(GOOD).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains(KEY));
    assert!(dbg.contains("<32 bytes>"));
}

#[test]
fn redis_needs_exactly_one_connection_kind() {
    let src = format!("{GOOD}sessions:\n  store: redis\n");
    assert_eq!(parse(&src).unwrap_err().issues()[0].path, "sessions.redis");

    let both = format!("{GOOD}sessions:\n  store: redis\n  redis:\n    url: redis://127.0.0.1:1\n    cluster:\n      urls: [redis://127.0.0.1:2]\n");
    assert!(parse(&both).unwrap_err().issues()[0]
        .message
        .contains("exactly one"));

    let cluster = format!("{GOOD}sessions:\n  store: redis\n  redis:\n    cluster:\n      urls: [redis://127.0.0.1:7000, \"http://x\"]\n");
    let err = parse(&cluster).unwrap_err();
    assert_eq!(err.issues()[0].path, "sessions.redis.cluster.urls[1]");
}

#[test]
fn certificate_paths_are_relative_to_the_file() {
    let src = GOOD.replace(
        "  http: 127.0.0.1:8080",
        "  https:\n    address: 127.0.0.1:8443\n    cert: certs/c.pem\n    key: /abs/k.pem",
    );
    let c = parse(&src).unwrap();
    let https = c.listeners.https.unwrap();
    assert_eq!(https.cert, Path::new("/etc/guise/certs/c.pem"));
    assert_eq!(https.key, Path::new("/abs/k.pem"));
    assert!(https.http2);
}

#[test]
fn reload_names_settings_that_need_a_restart() {
    let a = parse(GOOD).unwrap();
    let b = parse(
        &GOOD
            .replace("8080", "8090")
            .replace("area: companies", "area: other"),
    )
    .unwrap();
    assert_eq!(a.fixed_settings_changed(&b), vec!["listeners.http"]);
    let c = parse(&GOOD.replace("area: companies", "area: other")).unwrap();
    assert!(a.fixed_settings_changed(&c).is_empty());
    // The runtime is made once, at start-up.
    let d = parse(&format!("{GOOD}server:\n  work_stealing: true\n")).unwrap();
    assert!(d.server.work_stealing);
    assert_eq!(a.fixed_settings_changed(&d), vec!["server"]);
}

#[test]
fn the_shipped_example_files_are_valid() {
    for f in ["config/guise.yaml", "config/demo.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        if let Err(e) = Config::load(&path, &env_with_key) {
            panic!("{f}: {e}");
        }
    }
}

fn upstream(block: &str) -> Result<Config, ConfigError> {
    parse(&format!(
        "{GOOD}auth:\n  mode: upstream\n  upstream:\n{block}"
    ))
}

#[test]
fn upstream_login_reads_the_app_in_the_ways_django_needs() {
    let c = upstream(
        "    success_status: [302]\n    success_cookie: sessionid\n    user_id_from_username: true\n    app_session_cookies: [sessionid]\n    logout_path: /admin/logout/\n",
    )
    .unwrap();
    let LoginMode::Upstream(u) = &c.auth.mode else {
        panic!("not upstream mode")
    };
    assert!(matches!(u.user_id, UserIdSource::Username));
    assert_eq!(u.app_session_cookies, ["sessionid"]);
    assert_eq!(u.logout_path.as_deref(), Some("/admin/logout/"));
    assert!(
        u.provision.is_some(),
        "users the app owns are provisioned by default"
    );

    let c = upstream("    whoami: { path: /api/me, json_pointer: /id }\n").unwrap();
    let LoginMode::Upstream(u) = &c.auth.mode else {
        panic!("not upstream mode")
    };
    assert!(matches!(&u.user_id, UserIdSource::Whoami(w) if w.path == "/api/me"));
}

#[test]
fn upstream_login_settings_that_cannot_work_are_refused_and_say_why() {
    for (block, path, says) in [
        (
            "    user_id_from_username: true\n",
            "auth.upstream.success_cookie",
            "needs `success_cookie`",
        ),
        (
            "    user_id_header: x-id\n    user_id_from_username: true\n    success_cookie: s\n",
            "auth.upstream",
            "exactly one of",
        ),
        (
            "    whoami: { path: /me, header: x-id, body_regex: \"(?P<id>.)\" }\n",
            "auth.upstream.whoami",
            "exactly one of",
        ),
        (
            "    whoami: { path: /me, body_regex: \"no group\" }\n",
            "auth.upstream.whoami.body_regex",
            "(?P<id>",
        ),
        (
            "    user_id_header: x-id\n    app_cookies: drop\n    app_session_cookies: [sid]\n",
            "auth.upstream.app_cookies",
            "could never see its own session",
        ),
        (
            "    user_id_header: x-id\n    logout_path: /a/../b\n",
            "auth.upstream.logout_path",
            "normal path",
        ),
        (
            "    user_id_header: x-id\n    provision: { roles: [admin] }\n",
            "auth.upstream.provision.roles",
            "ordinary roles only",
        ),
    ] {
        let err = upstream(block).unwrap_err();
        let issue = err
            .issues()
            .iter()
            .find(|i| i.path == path)
            .unwrap_or_else(|| panic!("{block}: no issue at {path}: {err}"));
        assert!(issue.message.contains(says), "{block}: {}", issue.message);
        assert!(issue.line.is_some(), "{block}: no line");
    }
}

fn env_with_smtp(name: &str) -> Option<String> {
    match name {
        "SMTP_PASSWORD" => Some("smtp-secret-value".to_string()),
        other => env_with_key(other),
    }
}

#[test]
fn mail_gets_documented_defaults_and_an_outbox_relative_to_the_file() {
    let c = parse(&format!(
        "{GOOD}mail:\n  from: Guise <guise@x.test>\n  outbox: out\n"
    ))
    .unwrap();
    let m = c.mail.unwrap();
    assert_eq!(m.link_lifetime, Duration::from_secs(24 * 3600));
    assert_eq!(m.subject, "Set your password");
    assert_eq!(m.base_url, None);
    assert_eq!(m.from.to_string(), "Guise <guise@x.test>");
    assert!(
        matches!(m.transport, MailTransport::Outbox(ref d) if d == Path::new("/etc/guise/out"))
    );
    assert!(parse(GOOD).unwrap().mail.is_none(), "no section, no mail");
}

#[test]
fn smtp_takes_its_port_from_the_security_and_its_password_from_the_environment() {
    let src = format!(
        "{GOOD}mail:\n  from: guise@x.test\n  base_url: https://gw.x.test/\n  link_lifetime_hours: 1.5\n  smtp:\n    host: smtp.x.test\n    username: guise\n    password_env: SMTP_PASSWORD\n"
    );
    let c = Config::parse(&src, "t.yaml", Path::new("."), &env_with_smtp).unwrap();
    let m = c.mail.unwrap();
    assert_eq!(m.base_url.as_deref(), Some("https://gw.x.test"));
    assert_eq!(m.link_lifetime, Duration::from_secs(90 * 60));
    let MailTransport::Smtp(smtp) = &m.transport else {
        panic!("smtp expected")
    };
    assert_eq!((smtp.port, smtp.security), (587, SmtpSecurity::Starttls));
    let creds = smtp.credentials.as_ref().unwrap();
    assert_eq!(creds.password, "smtp-secret-value");
    assert!(
        !format!("{m:?}").contains("smtp-secret-value"),
        "never in Debug"
    );
    for (security, port) in [("tls", 465), ("none", 25)] {
        let src = format!(
            "{GOOD}mail:\n  from: guise@x.test\n  smtp:\n    host: 127.0.0.1\n    security: {security}\n"
        );
        let m = parse(&src).unwrap().mail.unwrap();
        let MailTransport::Smtp(smtp) = &m.transport else {
            panic!("smtp expected")
        };
        assert_eq!(smtp.port, port, "{security}");
    }
}

#[test]
fn every_mail_problem_is_reported_with_its_path_and_line() {
    let src = format!(
        "{GOOD}mail:
  from: not an address
  base_url: https://gw.x.test/some/path
  link_lifetime_hours: 0
  subject: \"\"
  smtp:
    host: mail.x.test
    security: none
    username: guise
    password_env: NOT_SET_ANYWHERE
"
    );
    let err = parse(&src).unwrap_err();
    names_each_at(
        &err,
        &[
            ("mail.from", 9),
            ("mail.base_url", 10),
            ("mail.link_lifetime_hours", 11),
            ("mail.subject", 12),
            ("mail.smtp.security", 15),
            ("mail.smtp.password_env", 17),
        ],
    );
    let text = err.to_string();
    assert!(
        text.contains("only for a test server on loopback"),
        "{text}"
    );
    assert!(text.contains("$NOT_SET_ANYWHERE is not set"), "{text}");

    for (block, path, says) in [
        ("  from: a@x.test\n", "mail", "exactly one of `smtp`"),
        (
            "  from: a@x.test\n  outbox: o\n  smtp:\n    host: h\n",
            "mail",
            "exactly one of `smtp`",
        ),
        (
            "  from: a@x.test\n  smtp:\n    host: h\n    username: u\n",
            "mail.smtp.password_env",
            "needs `password_env`",
        ),
        (
            "  from: a@x.test\n  smtp:\n    host: \"bad host\"\n",
            "mail.smtp.host",
            "not a host name",
        ),
        (
            "  from: a@x.test\n  outbox: o\n  link_lifetime_hours: 721\n",
            "mail.link_lifetime_hours",
            "at most 720",
        ),
        ("  outbox: o\n", "mail", "missing required key `from`"),
    ] {
        let err = parse(&format!("{GOOD}mail:\n{block}")).unwrap_err();
        let issue = &err.issues()[0];
        assert_eq!(issue.path, path, "{block}: {issue}");
        assert!(issue.message.contains(says), "{block}: {issue}");
        assert!(issue.line.is_some(), "{block}: no line");
    }
}

#[test]
fn partner_parents_are_checked_with_their_lines() {
    let src = format!(
        "{GOOD}partners:
  lookup_seconds: -1
  parents:
    - resource: company
      lookup: {{ path: \"/api/companies/{{id}}\", pointer: /data }}
      refs: [{{ resource: company, field: /id }}]
    - resource: cta
      lookup: {{ path: api/ctas, pointer: data }}
      refs: [{{ resource: contact, field: company_id }}]
    - resource: task
      lookup: {{ path: \"/api/tasks/{{id}}\" }}
      refs: []
"
    );
    let err = parse(&src).unwrap_err();
    names_each_at(
        &err,
        &[
            ("partners.lookup_seconds", 9),
            ("partners.parents[0].resource", 11),
            ("partners.parents[1].lookup.path", 15),
            ("partners.parents[1].lookup.pointer", 15),
            ("partners.parents[1].refs[0].resource", 16),
            ("partners.parents[1].refs[0].field", 16),
            ("partners.parents[2].refs", 19),
        ],
    );

    let good = format!(
        "{GOOD}partners:
  lookup_seconds: 2.5
  parents:
    - resource: cta
      lookup: {{ path: \"/api/ctas/{{id}}\", pointer: /data }}
      refs: [{{ resource: company, field: /company_id }}]
"
    );
    let config = parse(&good).unwrap();
    assert_eq!(config.partners.lookup_ttl, Duration::from_millis(2500));
    assert_eq!(
        config.partners.parents,
        vec![partners::ParentSpec {
            resource: "cta".into(),
            path: "/api/ctas/{id}".into(),
            pointer: "/data".into(),
            refs: vec![("company".into(), "/company_id".into())],
        }]
    );
}

#[test]
fn tenant_roles_are_app_role_names_and_partner_assignable_defaults_to_the_hubs() {
    let c = parse(&format!(
        "{GOOD}tenants:
  path_prefix: \"/t/{{tenant}}/\"
  hubs:
    default: [user]
    emea: [Partner User, Viewer]
  list:
    - {{ id: t1, name: T1, hub: emea }}
"
    ))
    .unwrap();
    let t = &c.partners.tenants;
    assert_eq!(t.roles_for("emea"), ["Partner User", "Viewer"]);
    assert_eq!(t.roles_for("apac"), ["user"]);
    assert_eq!(t.roles, None);
    let assignable: Vec<&str> = t.partner_assignable.iter().map(String::as_str).collect();
    assert_eq!(assignable, ["Partner User", "Viewer", "user"]);
    // Without hubs: the built-in default role, which partners may give.
    let c = parse(GOOD).unwrap();
    assert_eq!(c.partners.tenants.roles_for("any"), ["user"]);
    assert!(c.partners.tenants.partner_assignable.contains("user"));
}

#[test]
fn every_tenant_role_problem_is_reported_with_its_path_and_line() {
    let src = format!(
        "{GOOD}tenants:
  path_prefix: \"/t/{{tenant}}/\"
  roles: [Partner User, Viewer, Viewer]
  hubs:
    default: [Partner User, Admin]
    emea: []
    apac: [\"Bad,Name\"]
  partner_assignable: [Viewer, Root]
  list:
    - {{ id: t1, name: T1, hub: default }}
"
    );
    let err = parse(&src).unwrap_err();
    names_each_at(
        &err,
        &[
            ("tenants.roles[2]", 10),
            ("tenants.hubs.default[1]", 12),
            ("tenants.hubs.emea", 13),
            ("tenants.hubs.apac[0]", 14),
            ("tenants.partner_assignable[1]", 15),
        ],
    );
    let text = err.to_string();
    for says in [
        "`Viewer` is listed twice",
        "`Admin` is not one of `tenants.roles` (Partner User, Viewer, Viewer)",
        "give at least one role",
        "without commas",
        "`Root` is not one of `tenants.roles`",
    ] {
        assert!(text.contains(says), "{says:?} not in {text}");
    }

    // With the app's roles listed, every tenant's hub must give some.
    let err = parse(&format!(
        "{GOOD}tenants:
  path_prefix: \"/t/{{tenant}}/\"
  roles: [Viewer]
  hubs:
    emea: [Viewer]
  list:
    - {{ id: t1, name: T1, hub: emea }}
    - {{ id: t2, name: T2, hub: apac }}
"
    ))
    .unwrap_err();
    let issue = &err.issues()[0];
    assert_eq!(
        (issue.path.as_str(), issue.line),
        ("tenants.list[1].hub", Some(15)),
        "{err}"
    );
    assert!(
        issue.message.contains("hub `apac` has no default roles"),
        "{issue}"
    );
    // Gateway role names are not special: a hub's `[user]` is the app's.
    assert!(parse(&format!("{GOOD}tenants:\n  hubs:\n    default: [user]\n")).is_ok());
}

/// A `mail` section sending to `127.0.0.1` with `security` and `ca_file`;
/// `ca_file` is on line 13.
fn smtp_with_ca(security: &str, ca_file: &str) -> String {
    format!(
        "{GOOD}mail:\n  from: guise@x.test\n  smtp:\n    host: 127.0.0.1\n    security: {security}\n    ca_file: {ca_file}\n"
    )
}

#[test]
fn smtp_ca_file_is_read_relative_to_the_file_and_every_certificate_in_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b] = [0, 1].map(|_| crate::tls::DevCerts::generate(&["127.0.0.1"]).unwrap());
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    let file = dir.path().join("certs/relay-ca.pem");
    std::fs::write(&file, format!("{}{}", a.ca_pem, b.ca_pem)).unwrap();
    for security in ["starttls", "tls"] {
        let src = smtp_with_ca(security, "certs/relay-ca.pem");
        let c = Config::parse(&src, "t.yaml", dir.path(), &env_with_key).unwrap();
        let mail = c.mail.unwrap();
        let MailTransport::Smtp(smtp) = &mail.transport else {
            panic!("smtp expected")
        };
        let ca = smtp.ca.as_ref().expect("the CA file's certificates");
        assert_eq!(ca.file, file);
        assert_eq!(ca.certs.len(), 2, "both CAs");
        assert!(
            format!("{ca:?}").contains("certs: 2"),
            "Debug counts them: {ca:?}"
        );
        crate::mail::build(&mail).expect("the mailer builds with them");
    }
    let plain = smtp_with_ca("tls", "x").replace("    ca_file: x\n", "");
    let mail = parse(&plain).unwrap().mail.unwrap();
    let MailTransport::Smtp(smtp) = &mail.transport else {
        panic!("smtp expected")
    };
    assert!(smtp.ca.is_none(), "no file: the system's roots");
}

#[test]
fn an_smtp_ca_file_that_cannot_be_used_is_refused_with_its_path_line_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = crate::tls::DevCerts::generate(&["127.0.0.1"]).unwrap();
    let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
    write("ca.pem", &certs.ca_pem);
    write("key.pem", &certs.key_pem);
    write(
        "not-base64.pem",
        "-----BEGIN CERTIFICATE-----\n!!! not base64 !!!\n-----END CERTIFICATE-----\n",
    );
    // Three zero bytes: PEM, but no X.509 certificate.
    write(
        "not-a-certificate.pem",
        &format!(
            "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            certs.ca_pem
        ),
    );
    let at = |name: &str| dir.path().join(name).display().to_string();
    for (security, file, says) in [
        (
            "starttls",
            "missing.pem",
            format!("cannot read {}: ", at("missing.pem")),
        ),
        ("tls", ".", format!("cannot read {}: ", at("."))),
        (
            "tls",
            "key.pem",
            format!(
                "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                at("key.pem")
            ),
        ),
        (
            "starttls",
            "not-base64.pem",
            format!("{} is not valid PEM: ", at("not-base64.pem")),
        ),
        (
            "tls",
            "not-a-certificate.pem",
            format!(
                "certificate 2 of 2 in {} cannot be a trusted root: ",
                at("not-a-certificate.pem")
            ),
        ),
        (
            "none",
            "ca.pem",
            "`security: none` checks no certificate".to_string(),
        ),
        ("tls", "\"\"", "name a PEM file".to_string()),
    ] {
        let src = smtp_with_ca(security, file);
        let err = Config::parse(&src, "t.yaml", dir.path(), &env_with_key).unwrap_err();
        let issues = err.issues();
        assert_eq!(issues.len(), 1, "{file}: {err}");
        assert_eq!(issues[0].path, "mail.smtp.ca_file", "{file}: {err}");
        assert_eq!(issues[0].line, Some(13), "{file}: {err}");
        assert!(issues[0].message.contains(&says), "{file}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("t.yaml: line 13: mail.smtp.ca_file: {says}")),
            "{file}: {err}"
        );
    }
}

#[test]
fn body_refs_are_json_pointers_checked_with_their_lines() {
    let src = "\
listeners:
  http: 127.0.0.1:8080
upstream:
  address: 127.0.0.1:8081
routes:
  - path: /api/ctas
    body: { refs: [] }
  - path: /api/tasks
    body:
      refs:
        - { resource: company, field: company_id }
        - { resource: company, attribute: data-company }
";
    let err = parse(src).unwrap_err();
    names_each_at(
        &err,
        &[
            ("routes[0].body.refs", 7),
            ("routes[1].body.refs[0].field", 11),
            ("routes[1].body.refs[1]", 12),
        ],
    );
    // The body is the record: there is no pointer to give.
    let err = parse(&format!(
        "{GOOD}  - path: /api/notes
    body: {{ refs: [{{ resource: company, field: /company_id }}], pointer: /data }}
"
    ))
    .unwrap_err();
    names_each_at(&err, &[("routes[1].body.pointer", 9)]);

    let good = format!(
        "{GOOD}  - path: /api/ctas
    body: {{ refs: [{{ resource: company, field: /company_id }}, {{ resource: relationship, field: /link/id }}] }}
"
    );
    let config = parse(&good).unwrap();
    let route = &config.routes[1];
    assert_eq!(
        route.body,
        vec![
            AnswerRef {
                resource: "company".into(),
                at: AnswerAt::Field("/company_id".into()),
            },
            AnswerRef {
                resource: "relationship".into(),
                at: AnswerAt::Field("/link/id".into()),
            },
        ]
    );
    let table = crate::routes::RouteTable::compile(&config.routes).unwrap();
    assert!(table.body(0).is_none() && table.body(1).is_some());
}
