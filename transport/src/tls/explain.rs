//! Words a user can act on for a failed TLS handshake with a control server: rustls' errors
//! name the rule that failed (`NotValidForNameContext`, `CaUsedAsEndEntity`), not what to do.

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

use super::pin::utc;

/// What went wrong in the handshake with `host`, and what to do, if `err`'s chain holds a
/// TLS failure; `None` for other failures (refused, unreachable, timed out).
pub(super) fn explain(err: &(dyn StdError + 'static), host: &str, pinned: bool) -> Option<String> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(tls) = tls_error(e) {
            return Some(words(tls, host, pinned));
        }
        if e.to_string().contains("HTTP/2 was not negotiated") {
            return Some("the server does not offer HTTP/2 (ALPN h2): it is not a SciStream control server".into());
        }
        cause = e.source();
    }
    None
}

/// The rustls error in `e`, also inside an `io::Error` (whose `source` skips the error it wraps).
fn tls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    e.downcast_ref::<rustls::Error>().or_else(|| {
        let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        inner.downcast_ref::<rustls::Error>()
    })
}

fn words(err: &rustls::Error, host: &str, pinned: bool) -> String {
    let give = if pinned {
        "give the server's own certificate (or the CA that signed it) with --server-cert FILE"
    } else {
        "give the server's own certificate (or the CA that signed it) with --server-cert FILE; without \
         --server-cert only the system's CAs are trusted"
    };
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::NotValidForName => format!(
                "the server's certificate is not valid for {host}: connect by a name or address it lists, \
                 or give the server a certificate for {host} (`s2cs gen-cert --listener-ip IP`)"
            ),
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "the server's certificate is not valid for {host} (it is for {}): connect by one of those, \
                 or give the server a certificate for {host} (`s2cs gen-cert --listener-ip IP`)",
                if presented.is_empty() {
                    "no name at all".to_owned()
                } else {
                    presented.iter().map(|n| bare_name(n)).collect::<Vec<_>>().join(", ")
                }
            ),
            CertificateError::Expired => {
                "the server's certificate has expired: the facility must renew it (`s2cs gen-cert`), \
                 or this machine's clock is wrong"
                    .into()
            }
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "the server's certificate expired on {}: the facility must renew it (`s2cs gen-cert`), \
                 or this machine's clock is wrong",
                utc(not_after.as_secs())
            ),
            CertificateError::NotValidYet => {
                "the server's certificate is not valid yet: this machine's clock or the server's is wrong".into()
            }
            CertificateError::NotValidYetContext { not_before, .. } => format!(
                "the server's certificate is valid only from {}: this machine's clock or the server's is wrong",
                utc(not_before.as_secs())
            ),
            CertificateError::UnknownIssuer => {
                format!("the server's certificate is not one you trust, nor signed by one: {give}")
            }
            CertificateError::BadSignature => {
                "the server's certificate's signature does not verify: it is corrupt or forged".into()
            }
            CertificateError::Revoked => "the server's certificate has been revoked".into(),
            CertificateError::BadEncoding => "the server's certificate does not decode".into(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "the server's certificate is not for TLS servers (its extended key usage lacks serverAuth)".into()
            }
            // rustls passes webpki's CaUsedAsEndEntity on as `Other`.
            CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
                "the server presents a CA certificate as its own (`openssl req -x509` makes such \
                 certificates): {give}, which pins exactly that certificate"
            ),
            other => format!("the server's certificate is refused ({other:?}): {give}"),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure => format!(
                "the server refused the TLS handshake ({alert:?}): it may want a client certificate \
                 (a data server node's link port, not a control port?)"
            ),
            AlertDescription::ProtocolVersion => {
                "the server refused the TLS version (SciStream-rs control servers speak TLS 1.3)".into()
            }
            other => format!("the server refused the TLS handshake ({other:?})"),
        },
        rustls::Error::InvalidMessage(_) => {
            "the server did not answer in TLS: is it a plain-text server (started with --insecure)? \
             then connect with --insecure"
                .into()
        }
        rustls::Error::NoApplicationProtocol => {
            "the server does not offer HTTP/2 (ALPN h2): it is not a SciStream control server".into()
        }
        other => format!("the TLS handshake failed: {other}"),
    }
}

/// A name as webpki presents it (`IpAddress(127.0.0.2)`, `DnsName("gw")`), as a user writes it.
fn bare_name(presented: &str) -> &str {
    let inner = ["IpAddress(", "DnsName(", "UriName("]
        .iter()
        .find_map(|kind| presented.strip_prefix(kind)?.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"')
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_read_as_a_user_writes_them() {
        assert_eq!(super::bare_name("IpAddress(127.0.0.2)"), "127.0.0.2");
        assert_eq!(super::bare_name("DnsName(\"gw.example\")"), "gw.example");
        assert_eq!(super::bare_name("gw"), "gw");
    }
}
