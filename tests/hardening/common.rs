//! Configurations and helpers the hardening modules share.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use crate::support::*;

/// Users and sessions, with pages open to anonymous clients too, so one
/// gateway shows what reaches the upstream signed in or not.
pub fn open_yaml(extra: &str) -> String {
    session_yaml(&format!("auth:\n  require_login: false\n{extra}"))
}

/// `yaml` with further keys in its `server:` block (the base config has
/// one; a second `server:` key would be refused).
pub fn with_server(yaml: &str, keys: &str) -> String {
    assert!(yaml.contains("\nserver:\n"), "no server block in {yaml}");
    yaml.replacen("\nserver:\n", &format!("\nserver:\n{keys}"), 1)
}

/// The `Host` of requests to `f`'s plain HTTP listener.
pub fn host(f: &Fixture) -> String {
    f.http.to_string()
}

/// Whether some upstream (WSGI, Rack, PHP-CGI) would read a header named
/// `name` as one of the gateway's identity headers: lower-cased, with every
/// byte that is not a letter or digit read as `-`.
pub fn reads_as_identity(name: &str) -> bool {
    let folded: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    folded.starts_with("x-guise-")
}

/// The names of every header the echo says the upstream received.
pub fn echoed_names(echo: &Value) -> Vec<String> {
    echo["headers"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The values of header `name` the echo says the upstream received.
pub fn echoed(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The token in a `name=token` cookie pair.
pub fn token_of(cookie: &str) -> &str {
    cookie.split_once('=').map_or("", |(_, t)| t)
}

/// The `n`th loopback client address of a test's own range `127.{net}.*.*`
/// (Linux answers on all of 127/8); each test takes its own `net`, so
/// tests running at once never share a client address.
pub fn client_ip(net: u8, n: u16) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        net,
        (n / 250) as u8,
        (n % 250) as u8 + 1,
    ))
}

/// A plain client whose connections come from `ip`.
pub fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Assert that a refusal answer is `status` with JSON `error` `code`, and
/// return its `detail`.
pub fn refused(a: &crate::wire::Answer, status: u16, code: &str, what: &str) -> String {
    assert_eq!(a.status, status, "{what}: {}", a.text());
    let v: Value = serde_json::from_slice(&a.body).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {} {:?} {}",
            a.status,
            a.headers,
            a.text()
        )
    });
    assert_eq!(v["error"], code, "{what}: {v}");
    v["detail"].as_str().unwrap_or("").to_string()
}
