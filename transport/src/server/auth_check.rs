//! Who is calling: the token in the `authorization` metadata, checked by an [`Authenticator`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use scistream_fsm::Principal;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Why a token could not be checked or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or one that is not valid (expired, revoked, unknown).
    #[error("missing or invalid token")]
    Unauthenticated,
    /// A valid token without the facility's scope.
    #[error("token lacks the facility's scope")]
    WrongScope,
    /// The authorization server could not be asked.
    #[error("authorization server unavailable: {0}")]
    Unavailable(String),
    /// The caller's address sent more unknown tokens than the facility checks for one address;
    /// the token was not checked.
    #[error("too many unknown tokens from this address; try again later")]
    Throttled,
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated => Self::unauthenticated(e.to_string()),
            AuthError::WrongScope => Self::permission_denied(e.to_string()),
            AuthError::Unavailable(_) => Self::unavailable(e.to_string()),
            AuthError::Throttled => Self::resource_exhausted(e.to_string()),
        }
    }
}

/// Boxed future of an authentication.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send + 'a>>;

/// Boxed future of a caller's identity and raw token.
pub type CallerFuture<'a> = Pin<Box<dyn Future<Output = Result<(Principal, String), Status>> + Send + 'a>>;

/// Checks a caller's token.
pub trait Authenticator: Send + Sync + 'static {
    /// The identity `token` proves, for a caller at `peer` (its IP address, when the
    /// connection has one): an authenticator may limit what one address costs it.
    fn authenticate<'a>(&'a self, token: Option<&'a str>, peer: Option<IpAddr>) -> AuthFuture<'a>;

    /// The caller of a request from `peer`: its identity and its raw token (never logged).
    fn caller<'a>(&'a self, md: &'a MetadataMap, peer: Option<SocketAddr>) -> CallerFuture<'a> {
        Box::pin(async move {
            let token = crate::auth::token_from_metadata(md);
            let who = self.authenticate(token.as_deref(), peer.map(|p| p.ip())).await?;
            Ok((who, token.unwrap_or_default()))
        })
    }
}

/// Authentication off (no client secret configured, as SciStream 1.2 allows): every caller is
/// the same identity, `anonymous`. The daemon warns at start.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAuth;

impl Authenticator for OpenAuth {
    fn authenticate<'a>(&'a self, _token: Option<&'a str>, _peer: Option<IpAddr>) -> AuthFuture<'a> {
        Box::pin(async { Ok(Principal("anonymous".into())) })
    }
}
