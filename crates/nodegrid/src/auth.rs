//! Authentication between nodes (PROTOCOL.md §2.4).
//!
//! The grid treats the token as opaque: a *token source* produces it for outgoing connections
//! and a *token validator* checks incoming ones. [`Auth`] pairs the two. Two providers are
//! built in:
//!
//! * [`Auth::minio_jwt`]: MinIO-compatible. An HS512 JWT over the cluster's access key / secret
//!   key (claims `exp` ≈ now + 100 years, `sub` and `accessKey` = access key), created once and
//!   reused; validation checks the HMAC in constant time, the expiry, and the access key.
//! * [`Auth::shared_token`]: a static bearer token compared in constant time.
//!
//! Custom providers implement [`TokenSource`] and [`TokenValidator`].
//!
//! ```
//! use nodegrid::auth::Auth;
//! let auth = Auth::minio_jwt("minioadmin", "minioadmin-secret");
//! let token = auth.token();
//! assert!(auth.validate(&token).is_ok());
//! assert!(Auth::minio_jwt("minioadmin", "other").validate(&token).is_err());
//! ```

use crate::error::CredentialProblem;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// Name of the header carrying the dialer's clock in Unix nanoseconds.
pub const TIME_HEADER: &str = "X-Minio-Time";
/// Maximum clock difference accepted on the HTTP upgrade (check A): 15 minutes.
pub const HTTP_MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// Maximum clock difference accepted in the grid handshake (check B): 5 minutes.
pub const HANDSHAKE_MAX_SKEW: Duration = Duration::from_secs(5 * 60);
/// Lifetime MinIO gives its internode JWT: 100 years.
const JWT_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not valid for this cluster. The text is MinIO's, since it travels in
    /// handshake rejections.
    #[error("Authentication failed, check your access credentials")]
    InvalidToken,
    /// The token has expired.
    #[error("Authentication failed, check your access credentials (token expired)")]
    Expired,
    /// The request carries no bearer token.
    #[error("missing bearer token")]
    MissingToken,
    /// The time header is missing or not a number.
    #[error("missing or malformed {TIME_HEADER} header")]
    BadTimeHeader,
    /// The peer's clock is too far from ours.
    #[error("time difference too large between servers: {0}")]
    ClockSkew(String),
}

/// Produces the token sent on outgoing connections.
pub trait TokenSource: Send + Sync + 'static {
    /// The token to present to a peer.
    fn token(&self) -> String;
}

/// Checks tokens presented by peers.
pub trait TokenValidator: Send + Sync + 'static {
    /// `Ok` if `token` grants access.
    fn validate(&self, token: &str) -> Result<(), AuthError>;
}

impl<F: Fn() -> String + Send + Sync + 'static> TokenSource for F {
    fn token(&self) -> String {
        self()
    }
}

/// A token source and validator, shared by the grid and the REST path.
#[derive(Clone)]
pub struct Auth {
    source: Arc<dyn TokenSource>,
    validator: Arc<dyn TokenValidator>,
    /// Why the credentials this provider was built from cannot work, if they cannot.
    problem: Option<CredentialProblem>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { .. }")
    }
}

impl Auth {
    /// Pairs a custom source and validator.
    pub fn new(source: impl TokenSource, validator: impl TokenValidator) -> Auth {
        Auth {
            source: Arc::new(source),
            validator: Arc::new(validator),
            problem: None,
        }
    }

    /// MinIO-compatible HS512 JWT provider for the given root credentials.
    pub fn minio_jwt(access_key: impl Into<String>, secret_key: impl Into<String>) -> Auth {
        let (access_key, secret_key) = (access_key.into(), secret_key.into());
        let problem = CredentialProblem::of_keys(&access_key, &secret_key);
        let jwt = Arc::new(MinioJwt::new(access_key, secret_key));
        Auth {
            source: jwt.clone(),
            validator: jwt,
            problem,
        }
    }

    /// A static shared bearer token, sent as is and required from peers.
    pub fn shared_token(token: impl Into<String>) -> Auth {
        let token = token.into();
        let problem = CredentialProblem::of_token(&token);
        let t = Arc::new(SharedToken(token));
        Auth {
            source: t.clone(),
            validator: t,
            problem,
        }
    }

    /// Why the credentials this provider was built from cannot work, if they cannot: an
    /// empty shared token or key, or a token an HTTP header cannot carry. Managers and REST
    /// endpoints refuse such a provider when built. Custom providers ([`Auth::new`]) report
    /// none.
    ///
    /// ```
    /// use nodegrid::{auth::Auth, CredentialProblem};
    /// assert_eq!(Auth::shared_token("").credential_problem(), Some(CredentialProblem::EmptyToken));
    /// assert_eq!(Auth::minio_jwt("minioadmin", "").credential_problem(), Some(CredentialProblem::EmptySecretKey));
    /// assert_eq!(Auth::shared_token("s3cret").credential_problem(), None);
    /// ```
    pub fn credential_problem(&self) -> Option<CredentialProblem> {
        self.problem
    }

    /// The token to send.
    pub fn token(&self) -> String {
        self.source.token()
    }

    /// Validates a received token.
    pub fn validate(&self, token: &str) -> Result<(), AuthError> {
        self.validator.validate(token)
    }

    /// HTTP-level check (check A): `Authorization: Bearer <token>` and `X-Minio-Time` within
    /// ±15 minutes of `now`. Header values are passed in already extracted.
    pub fn check_http(
        &self,
        authorization: Option<&str>,
        time_header: Option<&str>,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AuthError::MissingToken)?;
        self.validate(token.trim())?;
        let nanos: i128 = time_header
            .and_then(|t| t.trim().parse::<i128>().ok())
            .ok_or(AuthError::BadTimeHeader)?;
        check_skew(nanos, now, HTTP_MAX_SKEW)
    }
}

/// The current time as the decimal Unix-nanoseconds string sent in [`TIME_HEADER`].
pub fn time_header_value(now: SystemTime) -> String {
    crate::wire::GridTime::from(now).unix_nanos().to_string()
}

/// Checks that `peer_nanos` (Unix ns) is within `max` of `now`; the error carries the
/// difference in Go's duration format, as the reference prints it.
pub fn check_skew(peer_nanos: i128, now: SystemTime, max: Duration) -> Result<(), AuthError> {
    let now_n = crate::wire::GridTime::from(now).unix_nanos();
    let diff = now_n - peer_nanos;
    if diff.unsigned_abs() > max.as_nanos() {
        return Err(AuthError::ClockSkew(crate::wire::go_duration_string(diff)));
    }
    Ok(())
}

struct SharedToken(String);

impl TokenSource for SharedToken {
    fn token(&self) -> String {
        self.0.clone()
    }
}

impl TokenValidator for SharedToken {
    fn validate(&self, token: &str) -> Result<(), AuthError> {
        if bool::from(token.as_bytes().ct_eq(self.0.as_bytes())) {
            Ok(())
        } else {
            Err(AuthError::InvalidToken)
        }
    }
}

/// MinIO's internode token: HS512 JWT keyed with the secret key.
struct MinioJwt {
    access_key: String,
    secret_key: String,
    token: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(rename = "accessKey", default)]
    access_key: Option<String>,
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
}

fn hmac_sign(alg: &str, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    fn sign<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        let mut m = <M as Mac>::new_from_slice(key).ok()?;
        m.update(data);
        Some(m.finalize().into_bytes().to_vec())
    }
    match alg {
        "HS256" => sign::<Hmac<sha2::Sha256>>(key, data),
        "HS384" => sign::<Hmac<sha2::Sha384>>(key, data),
        "HS512" => sign::<Hmac<sha2::Sha512>>(key, data),
        _ => None,
    }
}

impl MinioJwt {
    fn new(access_key: String, secret_key: String) -> MinioJwt {
        let exp = SystemTime::now()
            .checked_add(JWT_LIFETIME)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(i64::MAX / 2);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
        let claims = Claims {
            exp: Some(exp),
            sub: Some(access_key.clone()),
            access_key: Some(access_key.clone()),
        };
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signing_input = format!("{header}.{claims}");
        let sig =
            hmac_sign("HS512", secret_key.as_bytes(), signing_input.as_bytes()).unwrap_or_default();
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
        MinioJwt {
            access_key,
            secret_key,
            token,
        }
    }
}

impl TokenSource for MinioJwt {
    fn token(&self) -> String {
        self.token.clone()
    }
}

impl TokenValidator for MinioJwt {
    fn validate(&self, token: &str) -> Result<(), AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::InvalidToken);
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::InvalidToken)?;
        let signing_input_len = h.len() + 1 + c.len();
        let expected = hmac_sign(
            &header.alg,
            self.secret_key.as_bytes(),
            &token.as_bytes()[..signing_input_len],
        )
        .ok_or(AuthError::InvalidToken)?;
        let got = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| AuthError::InvalidToken)?;
        if !bool::from(expected.ct_eq(&got)) {
            return Err(AuthError::InvalidToken);
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::InvalidToken)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if let Some(exp) = claims.exp {
            if exp <= now {
                return Err(AuthError::Expired);
            }
        }
        let ak = self.access_key.as_str();
        if claims.access_key.as_deref() == Some(ak) || claims.sub.as_deref() == Some(ak) {
            Ok(())
        } else {
            Err(AuthError::InvalidToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_roundtrip_and_rejections() {
        let a = Auth::minio_jwt("ak", "sk");
        let t = a.token();
        assert_eq!(t.split('.').count(), 3);
        a.validate(&t).unwrap();
        assert_eq!(
            Auth::minio_jwt("ak", "sk2").validate(&t),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(
            Auth::minio_jwt("ak2", "sk").validate(&t),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(a.validate("garbage"), Err(AuthError::InvalidToken));
        assert_eq!(a.validate("a.b.c.d"), Err(AuthError::InvalidToken));
        // Tampered claims.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"exp":9999999999,"sub":"ak","accessKey":"ak"}"#);
        parts[1] = &forged;
        assert_eq!(a.validate(&parts.join(".")), Err(AuthError::InvalidToken));
    }

    #[test]
    fn jwt_expired_and_hs256_accepted() {
        let sign = |alg: &str, claims: &str| {
            let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let c = URL_SAFE_NO_PAD.encode(claims);
            let input = format!("{h}.{c}");
            let key_alg = if alg == "none" { "HS512" } else { alg };
            let s = URL_SAFE_NO_PAD.encode(hmac_sign(key_alg, b"sk", input.as_bytes()).unwrap());
            format!("{input}.{s}")
        };
        let a = Auth::minio_jwt("ak", "sk");
        a.validate(&sign("HS256", r#"{"exp":99999999999,"accessKey":"ak"}"#))
            .unwrap();
        assert_eq!(
            a.validate(&sign("HS512", r#"{"exp":1,"sub":"ak"}"#)),
            Err(AuthError::Expired)
        );
        assert_eq!(
            a.validate(&sign("none", r#"{"sub":"ak"}"#)),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn shared_token_and_http_check() {
        let a = Auth::shared_token("s3cret");
        let now = SystemTime::now();
        let th = time_header_value(now);
        a.check_http(Some("Bearer s3cret"), Some(&th), now).unwrap();
        assert_eq!(
            a.check_http(Some("Bearer nope"), Some(&th), now),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(
            a.check_http(None, Some(&th), now),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            a.check_http(Some("Bearer s3cret"), None, now),
            Err(AuthError::BadTimeHeader)
        );
        let late = now + Duration::from_secs(16 * 60);
        assert!(matches!(
            a.check_http(Some("Bearer s3cret"), Some(&th), late),
            Err(AuthError::ClockSkew(s)) if s == "16m0s"
        ));
    }
}
