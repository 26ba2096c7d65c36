//! Logging in through a gateway the way clients do, with the cookie kept by hand.

use serde_json::Value;

/// Every demo user's password (`config/demo.yaml`).
pub const DEMO_PW: &str = "demo";

/// A signed-in client: the cookie to send and the CSRF token to show.
#[derive(Debug, Clone)]
pub struct Signed {
    /// `name=value` for the Cookie header.
    pub cookie: String,
    pub csrf: String,
    pub session: String,
    pub set_cookie: String,
}

/// The `name=value` part of the first `Set-Cookie` header naming `name`.
pub fn cookie_from(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|full| {
            (
                full.split(';').next().unwrap_or("").to_string(),
                full.to_string(),
            )
        })
}

/// POST /_guise/login; panics unless it succeeds.
pub async fn login(c: &reqwest::Client, base: &str, username: &str, password: &str) -> Signed {
    let r = try_login(c, base, username, password).await;
    assert_eq!(r.status(), 200, "login of {username} failed");
    let (cookie, set_cookie) = cookie_from(&r, "guise_session").expect("session cookie set");
    let v: Value = r.json().await.unwrap();
    Signed {
        cookie,
        set_cookie,
        csrf: v["csrf_token"].as_str().unwrap().to_string(),
        session: v["session"].as_str().unwrap().to_string(),
    }
}

pub async fn try_login(
    c: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    c.post(format!("{base}/_guise/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

/// GET `path` with the session cookie.
pub async fn get(c: &reqwest::Client, base: &str, who: &Signed, path: &str) -> reqwest::Response {
    c.get(format!("{base}{path}"))
        .header("cookie", &who.cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

/// An admin API call (`method` `path` with a JSON body) with the signed-in
/// admin's session, CSRF token and the gateway's own Origin.
pub async fn admin_call(
    c: &reqwest::Client,
    base: &str,
    who: &Signed,
    method: &str,
    path: &str,
    body: Value,
) -> reqwest::Response {
    c.request(method.parse().unwrap(), format!("{base}{path}"))
        .header("cookie", &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .header("origin", base)
        .json(&body)
        .send()
        .await
        .unwrap()
}
