//! The caller's access token in gRPC metadata.
//!
//! SciStream 1.2 clients send `authorization: <token>`, the raw token without a scheme, and the
//! literal `INVALID_TOKEN` when the user never logged in. Servers here also accept the standard
//! `authorization: Bearer <token>`; clients send the raw form so that 1.2 servers understand
//! them. Checking the token (introspection) is not this module's business.

use tonic::metadata::{Ascii, MetadataMap, MetadataValue};

/// The metadata key that carries the token.
pub const AUTHORIZATION: &str = "authorization";

/// What a 1.2 client sends when it holds no token; read as no token at all.
pub const NO_TOKEN: &str = "INVALID_TOKEN";

/// Why a token cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is empty (send none instead).
    #[error("token is empty")]
    Empty,
    /// The token has a character other than visible ASCII (spaces and control characters
    /// included), which metadata cannot carry or a server would misread.
    #[error("token has characters other than visible ascii")]
    NotAscii,
}

/// The token a request carries, if any: the `authorization` value, raw or after a
/// case-insensitive `Bearer` scheme, trimmed. An absent, empty, non-ASCII or `INVALID_TOKEN`
/// value is no token.
pub fn token_from_metadata(md: &MetadataMap) -> Option<String> {
    let value = md.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let token = strip_bearer(value).trim();
    (!token.is_empty() && token != NO_TOKEN).then(|| token.to_owned())
}

fn strip_bearer(value: &str) -> &str {
    if value.eq_ignore_ascii_case("bearer") {
        return "";
    }
    match value.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest,
        _ => value,
    }
}

/// The metadata value that carries `token` raw, marked sensitive so HTTP/2 header compression
/// never indexes it.
pub fn token_value(token: &str) -> Result<MetadataValue<Ascii>, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    // http accepts obs-text bytes that `to_str` later refuses: check before it does.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::NotAscii);
    }
    let mut value = MetadataValue::try_from(token).map_err(|_| TokenError::NotAscii)?;
    value.set_sensitive(true);
    Ok(value)
}

/// Puts `token` in the request's metadata as `authorization: <token>`, raw, as 1.2 clients do
/// (replacing any token already there).
pub fn set_token<T>(req: &mut tonic::Request<T>, token: &str) -> Result<(), TokenError> {
    req.metadata_mut().insert(AUTHORIZATION, token_value(token)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        md.insert(AUTHORIZATION, value.parse().unwrap());
        md
    }

    #[test]
    fn raw_token_as_sent_by_1_2_clients_is_read() {
        assert_eq!(token_from_metadata(&with_authorization("Ag4xyz")), Some("Ag4xyz".to_owned()));
    }

    #[test]
    fn bearer_scheme_is_stripped_whatever_its_case() {
        for value in ["Bearer Ag4xyz", "bearer Ag4xyz", "BEARER   Ag4xyz", " Bearer\tAg4xyz "] {
            assert_eq!(token_from_metadata(&with_authorization(value)), Some("Ag4xyz".to_owned()), "{value:?}");
        }
    }

    #[test]
    fn token_starting_with_bearer_letters_is_kept_whole() {
        assert_eq!(token_from_metadata(&with_authorization("bearerish")), Some("bearerish".to_owned()));
    }

    #[test]
    fn empty_missing_and_invalid_token_values_are_no_token() {
        for value in ["", "   ", "Bearer", "Bearer  ", "INVALID_TOKEN", "Bearer INVALID_TOKEN"] {
            assert_eq!(token_from_metadata(&with_authorization(value)), None, "{value:?}");
        }
        assert_eq!(token_from_metadata(&MetadataMap::new()), None);
    }

    #[test]
    fn set_token_sends_the_raw_token_marked_sensitive() {
        let mut req = tonic::Request::new(());
        set_token(&mut req, "Ag4xyz").unwrap();
        let value = req.metadata().get(AUTHORIZATION).unwrap();
        assert_eq!(value.to_str().unwrap(), "Ag4xyz");
        assert!(value.is_sensitive());
        assert_eq!(token_from_metadata(req.metadata()), Some("Ag4xyz".to_owned()));
    }

    #[test]
    fn set_token_replaces_a_previous_token() {
        let mut req = tonic::Request::new(());
        set_token(&mut req, "first").unwrap();
        set_token(&mut req, "second").unwrap();
        assert_eq!(req.metadata().get_all(AUTHORIZATION).iter().count(), 1);
        assert_eq!(token_from_metadata(req.metadata()), Some("second".to_owned()));
    }

    #[test]
    fn set_token_refuses_empty_and_unsendable_tokens() {
        let mut req = tonic::Request::new(());
        assert_eq!(set_token(&mut req, ""), Err(TokenError::Empty));
        assert_eq!(set_token(&mut req, "line\nbreak"), Err(TokenError::NotAscii));
        assert_eq!(set_token(&mut req, "café"), Err(TokenError::NotAscii));
        assert_eq!(set_token(&mut req, "two words"), Err(TokenError::NotAscii));
        assert!(req.metadata().get(AUTHORIZATION).is_none());
    }
}
