//! Telling a browser tab that its session is no longer the browser's.
//!
//! Every tab of a browser shares the session cookie. When an admin starts
//! impersonating in one tab, the cookie is replaced and the admin's session
//! is revoked on every node, but the admin's other tabs still show pages
//! rendered for the admin: a click there would act as the partner user
//! while the page says admin (or fail on a stale CSRF token). guise cannot
//! tell those tabs by cookie, so each page carries the session it was
//! rendered for and a small script that watches for the moment it stops
//! being the browser's session:
//!
//! - [`snippet()`] renders what goes before `</body>` of each page: the
//!   script tag (with the page's session reference) and, while
//!   impersonating, a banner with the way back that the app's CSS cannot
//!   hide;
//! - [`Injector`] puts the snippet into the app's HTML as it streams
//!   through ([`wants_injection`] says which answers, [`prepare_response`]
//!   fixes their headers);
//! - [`asset`] serves the script and the banner's stylesheet
//!   (`/_guise/tab.js`, `/_guise/tab.css`), external files so that an app
//!   whose CSP allows only `script-src 'self'` still runs them;
//! - [`events()`] is the server-sent event stream (`/_guise/events`) that says
//!   which session the cookie holds now (`hello`) and when this one ends
//!   (`ended`, with the revocation's reason).
//!
//! The script also tells the browser's other tabs which session it was
//! rendered with (a `BroadcastChannel`), so a tab learns of a sign-in in
//! another tab without a round trip. Nothing here decides anything: the
//! session store and the revocations it publishes are the truth, and the
//! script only reloads a tab that no longer shows it.

mod assets;
mod events;
mod inject;
mod snippet;

#[cfg(test)]
mod tests;

pub use assets::{asset, ASSET_NAMES};
pub use events::{events, DEFAULT_REASON, KEEP_ALIVE};
pub use inject::{is_navigation, prepare_request, prepare_response, wants_injection, Injector};
pub use snippet::{snippet, Banner, TabView};

use crate::respond::Refuse;

/// Why a tab request was refused, or the injector was misused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TabError {
    /// `/_guise/events` without a live session: there is nothing to watch.
    /// The script reads this as "signed out" (after asking
    /// `/_guise/session`, since the browser does not show it the status).
    #[error(
        "there is no live session on this request, so there is nothing to watch; sign in again"
    )]
    NotSignedIn,
    /// A name under `/_guise/` that is no tab asset.
    #[error("the gateway has no tab asset named {0:?}")]
    NoAsset(String),
    /// Body bytes after the end of the response: a caller bug, reported
    /// rather than sent after a body that already ended.
    #[error(
        "the page had already ended when more of it arrived; the tab snippet was not added again"
    )]
    AfterEnd,
}

impl Refuse for TabError {
    fn status(&self) -> u16 {
        match self {
            TabError::NotSignedIn => 401,
            TabError::NoAsset(_) => 404,
            TabError::AfterEnd => 500,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            TabError::NotSignedIn => "login_required",
            TabError::NoAsset(_) => "not_found",
            TabError::AfterEnd => "tab_injection",
        }
    }
    fn title(&self) -> &'static str {
        match self {
            TabError::NotSignedIn => "Sign-in required",
            TabError::NoAsset(_) => "Not Found",
            TabError::AfterEnd => "Internal Server Error",
        }
    }
}
