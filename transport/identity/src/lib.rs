//! # scistream-identity — who the user is
//!
//! This crate owns the user-identity stack: OAuth2 for the control plane, through the `oauth2`
//! crate over `reqwest` (rustls). Kept apart from `scistream-transport`, it keeps `oauth2` and
//! `reqwest` out of every crate that does not depend on it (the actors in particular); only
//! the binaries and the tests do.
//!
//! - [`login`]: the user's side (`s2uc login`): authorization code with PKCE (S256) for a
//!   native client, refresh before expiry, revocation (RFC 7009) at logout;
//! - [`store`]: where `s2uc` keeps its tokens: one entry per scope in a file of mode 0600;
//! - [`introspect`]: the facility's side (`s2cs --client-id/--client-secret`): every caller's
//!   token checked by RFC 7662 introspection with the facility's client credentials, positive
//!   answers cached for a bounded time in a bounded cache, never failing open; under pressure,
//!   one introspection per token however many calls carry it (`scistream-flights`), a cap on
//!   introspections in flight, and a token bucket per caller address for unknown tokens.
//!
//! Its contract with the control plane: [`IntrospectAuth`](introspect::IntrospectAuth)
//! implements `scistream-transport`'s
//! [`Authenticator`](scistream_transport::server::Authenticator): given the token
//! `scistream-transport` read from a call's metadata (and the caller's address), it answers
//! the caller's identity (the token's subject, a [`Principal`](scistream_fsm::Principal)) or
//! why not (no valid token, a token without the facility's scope, too many unknown tokens from
//! that address, or the authorization server unavailable). The control
//! server sees nothing else of OAuth2, and this crate nothing of sessions.
//!
//! Defaults follow Globus Auth, the authorization server SciStream 1.2 uses: endpoints under
//! `https://auth.globus.org/v2/oauth2/`, scopes `https://auth.globus.org/scopes/<id>/scistream`.
//! Every endpoint can be set on its own for any other OAuth2 server.

pub mod introspect;
pub mod login;
pub mod store;

use std::time::Duration;

pub use oauth2::url::Url;

/// The authorization server SciStream uses by default.
pub const GLOBUS_AUTH: &str = "https://auth.globus.org";

/// What went wrong talking OAuth2.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// A setting cannot work (a URL that is not https, an empty client id, …).
    #[error("{0}")]
    Config(String),
    /// The authorization server could not be reached or answered nonsense.
    #[error("authorization server unavailable: {0}")]
    Unavailable(String),
    /// The authorization server refused (an expired code, a revoked refresh token, …).
    #[error("authorization server refused: {0}")]
    Refused(String),
    /// The token store could not be read or written.
    #[error("token store: {0}")]
    Store(String),
}

/// The four endpoints of an authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Where the user authorizes (a browser opens it).
    pub authorize: Url,
    /// Code and refresh-token exchange.
    pub token: Url,
    /// RFC 7662 token introspection.
    pub introspect: Url,
    /// RFC 7009 token revocation.
    pub revoke: Url,
}

impl Endpoints {
    /// The endpoints under `base` as Globus Auth lays them out: `/v2/oauth2/authorize`,
    /// `/v2/oauth2/token`, `/v2/oauth2/token/introspect`, `/v2/oauth2/token/revoke`.
    pub fn under(base: &str) -> Result<Self, OAuthError> {
        let base = base.trim_end_matches('/');
        let at = |path: &str| checked_url(&format!("{base}/v2/oauth2/{path}"));
        Ok(Self {
            authorize: at("authorize")?,
            token: at("token")?,
            introspect: at("token/introspect")?,
            revoke: at("token/revoke")?,
        })
    }
}

/// `text` as an endpoint URL: https, or plain http only to a loopback address (a local test
/// server) — tokens and client secrets never travel in clear text across a network.
pub fn checked_url(text: &str) -> Result<Url, OAuthError> {
    let url = Url::parse(text).map_err(|e| OAuthError::Config(format!("{text:?} is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(oauth2::url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(oauth2::url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(oauth2::url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(OAuthError::Config(format!("{text}: plain http only to a loopback address; use https"))),
        _ => Err(OAuthError::Config(format!("{text}: expected an https URL"))),
    }
}

/// The full scope string for `scope`: a bare Globus client id (a UUID, as SciStream 1.2's
/// `--scope` takes it) becomes `https://auth.globus.org/scopes/<id>/scistream`; anything else is
/// taken as it is.
pub fn full_scope(scope: &str) -> String {
    let scope = scope.trim();
    let is_uuid = scope.len() == 36
        && scope
            .char_indices()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() });
    if is_uuid { format!("{GLOBUS_AUTH}/scopes/{}/scistream", scope.to_ascii_lowercase()) } else { scope.to_owned() }
}

/// The HTTP client for authorization servers: rustls with the system's roots, no redirects
/// followed (a redirect could carry a secret elsewhere), bounded connect and call times.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, OAuthError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .build()
        .map_err(|e| OAuthError::Config(format!("HTTP client: {e}")))
}

/// A readable reason for a failed OAuth2 request: the server's `error` and description when it
/// gave one (`Refused`), otherwise what kept the request from being answered (`Unavailable`).
pub(crate) fn request_error<RE, TE>(e: oauth2::RequestTokenError<RE, TE>) -> OAuthError
where
    RE: std::error::Error + 'static,
    TE: oauth2::ErrorResponse + 'static,
{
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => OAuthError::Refused(r.to_string()),
        oauth2::RequestTokenError::Request(r) => OAuthError::Unavailable(scistream_transport::tls::error_chain(&r)),
        oauth2::RequestTokenError::Parse(p, _) => OAuthError::Unavailable(format!("unreadable answer: {p}")),
        oauth2::RequestTokenError::Other(o) => OAuthError::Unavailable(o),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globus_layout_under_a_base() {
        let e = Endpoints::under("https://auth.globus.org/").unwrap();
        assert_eq!(e.authorize.as_str(), "https://auth.globus.org/v2/oauth2/authorize");
        assert_eq!(e.token.as_str(), "https://auth.globus.org/v2/oauth2/token");
        assert_eq!(e.introspect.as_str(), "https://auth.globus.org/v2/oauth2/token/introspect");
        assert_eq!(e.revoke.as_str(), "https://auth.globus.org/v2/oauth2/token/revoke");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(checked_url("http://127.0.0.1:8080/token").is_ok());
        assert!(checked_url("http://[::1]:8080/token").is_ok());
        assert!(checked_url("http://localhost/token").is_ok());
        for bad in ["http://auth.example.org/token", "http://10.0.0.1/token", "ftp://x/y", "token", "https://"] {
            assert!(matches!(checked_url(bad), Err(OAuthError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn bare_client_ids_become_globus_scopes() {
        assert_eq!(
            full_scope("c42c0dac-0a52-408e-a04f-5d31bfe0aef8"),
            "https://auth.globus.org/scopes/c42c0dac-0a52-408e-a04f-5d31bfe0aef8/scistream"
        );
        assert_eq!(full_scope("scistream:facility-a"), "scistream:facility-a");
        assert_eq!(full_scope("https://auth.globus.org/scopes/x/y"), "https://auth.globus.org/scopes/x/y");
    }
}
