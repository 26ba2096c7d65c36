//! End-to-end attacks on the gateway as a hostile client would run them,
//! over real loopback sockets: the fourteen classes of hole in issue 8's
//! "Hardening" list, several variants each, with raw bytes wherever a client
//! library would normalise the request. The demo app's `/api/echo` shows
//! exactly what reached the upstream, and the app refuses identity headers
//! the gateway did not sign.
//!
//! - [`headers`]: identity headers under other spellings (1), cookies (10),
//!   hosts (13) and forged forwarding headers, the hygiene of the upstream
//!   login (9);
//! - [`targets`]: request targets (2), paths the upstream reads differently
//!   (3), signed-in paths that cannot be signed (14), malformed requests;
//! - [`logins`]: memory an anonymous client can grow (5), the cap on
//!   password checks (6), lockout (7);
//! - [`admin`]: refused directory writes and bad stored records over two
//!   Redis-backed nodes (4), admin scope (8);
//! - [`connections`]: slow and surplus clients (11);
//! - [`replies`]: protective headers on every answer of the gateway's own (12);
//! - [`proxies`]: client addresses through trusted proxies only, by
//!   `X-Forwarded-For` or the PROXY protocol (issue 10).
//!
//! Nothing may panic: every raw exchange must end in a status line
//! ([`wire::exchange`] fails the test otherwise).

mod support;

#[path = "hardening/admin.rs"]
mod admin;
#[path = "hardening/common.rs"]
mod common;
#[path = "hardening/connections.rs"]
mod connections;
#[path = "hardening/headers.rs"]
mod headers;
#[path = "hardening/logins.rs"]
mod logins;
#[path = "hardening/proxies.rs"]
mod proxies;
#[path = "hardening/replies.rs"]
mod replies;
#[path = "hardening/targets.rs"]
mod targets;
#[path = "hardening/wire.rs"]
mod wire;
