//! Authentication between nodes (PROTOCOL.md §2.4).
//!
//! The grid treats the token as opaque: a *token source* produces it for outgoing connections
//! and a *token validator* checks incoming ones. [`Auth`] pairs the two. Two providers are
//! built in:
//!
//! * [`Auth::minio_jwt`]: MinIO-compatible. An HS512 JWT over the cluster's access key / secret
//!   key (claims `exp` ≈ now + 100 years, `sub` and `accessKey` = access key), created once and
//!   reused. Signing and verification are the `jsonwebtoken` crate's (ring's HMAC); only HS512
//!   is accepted, the one algorithm MinIO signs with. Validation checks the signature, then the
//!   expiry (no leeway) and the access key (`accessKey` or `sub`). Tokens are checked once per
//!   connection, never per message.
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

/// MinIO's internode token: HS512 JWT keyed with the secret key. Signing and verification use
/// the `jsonwebtoken` crate (ring's HMAC); a token is checked once per connection, never on the
/// message path.
struct MinioJwt {
    access_key: String,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
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

/// The JWT header MinIO writes (jwt-go's field order), kept byte for byte.
const JWT_HEADER: &[u8] = br#"{"alg":"HS512","typ":"JWT"}"#;

impl MinioJwt {
    fn new(access_key: String, secret_key: String) -> MinioJwt {
        let exp = SystemTime::now()
            .checked_add(JWT_LIFETIME)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(i64::MAX / 2);
        Self::with_exp(access_key, secret_key, exp)
    }

    fn with_exp(access_key: String, secret_key: String, exp: i64) -> MinioJwt {
        use jsonwebtoken::{Algorithm, Validation};
        let claims = Claims {
            exp: Some(exp),
            sub: Some(access_key.clone()),
            access_key: Some(access_key.clone()),
        };
        // The header is written by hand so the token stays byte-identical to MinIO's
        // (`jsonwebtoken::encode` orders the header's fields differently); the signature is
        // the crate's.
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(JWT_HEADER),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default())
        );
        let sig = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(secret_key.as_bytes()),
            Algorithm::HS512,
        )
        .unwrap_or_default();
        // HS512 only: every MinIO node and every nodegrid node signs with it, so accepting
        // HS256/HS384 (or anything else) would only widen what a forger may choose.
        let mut validation = Validation::new(Algorithm::HS512);
        validation.leeway = 0;
        // MinIO's validation does not require `exp`; it is checked whenever present.
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_exp = true;
        MinioJwt {
            access_key,
            key: jsonwebtoken::DecodingKey::from_secret(secret_key.as_bytes()),
            validation,
            token: format!("{signing_input}.{sig}"),
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
        use jsonwebtoken::errors::ErrorKind;
        // The signature is verified before any claim is looked at.
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::InvalidToken,
            })?
            .claims;
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

    /// A token signed independently of the code under test (the `hmac` crate), with any
    /// header algorithm name and signing hash.
    fn forge(alg: &str, sign_with: Option<&str>, key: &[u8], claims: &str) -> String {
        use hmac::{Hmac, Mac};
        let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        let c = URL_SAFE_NO_PAD.encode(claims);
        let input = format!("{h}.{c}");
        let sig = match sign_with {
            None => Vec::new(),
            Some("HS256") => {
                let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
                m.update(input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            Some("HS384") => {
                let mut m = Hmac::<sha2::Sha384>::new_from_slice(key).unwrap();
                m.update(input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            Some(_) => {
                let mut m = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
                m.update(input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn jwt_token_is_byte_identical_to_minios() {
        // Header, claims order and HS512 signature as MinIO (jwt-go) writes them; computed
        // independently with Python's hmac module.
        let jwt = MinioJwt::with_exp(
            "minioadmin".into(),
            "minioadmin-secret".into(),
            4_102_444_800,
        );
        assert_eq!(
            jwt.token,
            "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.\
             eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6Im1pbmlvYWRtaW4iLCJhY2Nlc3NLZXkiOiJtaW5pb2FkbWluIn0.\
             MlQL6NiyTEcyPDKtn4S8voPxPKC4k6RDc7UwXc5DAwzOOy_NF1_bu7HfCkCmFT7rh6q2wk9ZSdHsJfBl31BRlA"
        );
        let claims = r#"{"exp":4102444800,"sub":"minioadmin","accessKey":"minioadmin"}"#;
        assert_eq!(
            jwt.token,
            forge("HS512", Some("HS512"), b"minioadmin-secret", claims)
        );
        jwt.validate(&jwt.token).unwrap();
        // The 100-year token of `Auth::minio_jwt` has the same shape.
        let t = Auth::minio_jwt("ak", "sk").token();
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], URL_SAFE_NO_PAD.encode(JWT_HEADER));
        let c: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let exp = c["exp"].as_i64().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (exp - now - JWT_LIFETIME.as_secs() as i64).abs() < 60,
            "{c}"
        );
        assert_eq!(
            (c["sub"].as_str(), c["accessKey"].as_str()),
            (Some("ak"), Some("ak"))
        );
    }

    #[test]
    fn jwt_roundtrip_and_rejections() {
        let a = Auth::minio_jwt("ak", "sk");
        let t = a.token();
        assert_eq!(t.split('.').count(), 3);
        a.validate(&t).unwrap();
        // Wrong key, wrong access key.
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
        assert_eq!(a.validate(&format!("{t}.")), Err(AuthError::InvalidToken));
        assert_eq!(a.validate(""), Err(AuthError::InvalidToken));
        // Tampered claims, signature kept.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"exp":9999999999,"sub":"ak","accessKey":"ak"}"#);
        parts[1] = &forged;
        assert_eq!(a.validate(&parts.join(".")), Err(AuthError::InvalidToken));
        // One flipped signature bit.
        let mut sig = URL_SAFE_NO_PAD
            .decode(t.split('.').nth(2).unwrap())
            .unwrap();
        sig[0] ^= 1;
        let (head, _) = t.rsplit_once('.').unwrap();
        let flipped = format!("{head}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(a.validate(&flipped), Err(AuthError::InvalidToken));
    }

    #[test]
    fn jwt_red_team() {
        let a = Auth::minio_jwt("ak", "sk");
        let ok = r#"{"exp":99999999999,"sub":"ak","accessKey":"ak"}"#;
        // The independent signer agrees with the validator on a good token.
        a.validate(&forge("HS512", Some("HS512"), b"sk", ok))
            .unwrap();
        // Either claim naming the access key is enough; `exp` is optional (as in MinIO).
        a.validate(&forge(
            "HS512",
            Some("HS512"),
            b"sk",
            r#"{"accessKey":"ak"}"#,
        ))
        .unwrap();
        a.validate(&forge("HS512", Some("HS512"), b"sk", r#"{"sub":"ak"}"#))
            .unwrap();
        let invalid = Err(AuthError::InvalidToken);
        for (what, token) in [
            ("alg none, no signature", forge("none", None, b"sk", ok)),
            (
                "alg none, HS512 signature",
                forge("none", Some("HS512"), b"sk", ok),
            ),
            ("alg None", forge("None", None, b"sk", ok)),
            (
                "HS256 (not what MinIO signs)",
                forge("HS256", Some("HS256"), b"sk", ok),
            ),
            (
                "HS384 (not what MinIO signs)",
                forge("HS384", Some("HS384"), b"sk", ok),
            ),
            (
                "RS256 header, HMAC signature",
                forge("RS256", Some("HS512"), b"sk", ok),
            ),
            (
                "HS512 header, HS256 signature",
                forge("HS512", Some("HS256"), b"sk", ok),
            ),
            ("wrong key", forge("HS512", Some("HS512"), b"sk2", ok)),
            ("empty key", forge("HS512", Some("HS512"), b"", ok)),
            (
                "wrong access key",
                forge(
                    "HS512",
                    Some("HS512"),
                    b"sk",
                    r#"{"exp":99999999999,"sub":"x","accessKey":"y"}"#,
                ),
            ),
            (
                "no access key",
                forge("HS512", Some("HS512"), b"sk", r#"{"exp":99999999999}"#),
            ),
            (
                "expired and wrong key (signature first)",
                forge("HS512", Some("HS512"), b"sk2", r#"{"exp":1,"sub":"ak"}"#),
            ),
            (
                "exp of the wrong type",
                forge(
                    "HS512",
                    Some("HS512"),
                    b"sk",
                    r#"{"exp":"never","sub":"ak"}"#,
                ),
            ),
            (
                "claims not JSON",
                forge("HS512", Some("HS512"), b"sk", "not json"),
            ),
        ] {
            assert_eq!(a.validate(&token), invalid, "{what}");
        }
        // Expired: no leeway.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for exp in [1, now - 2] {
            let t = forge(
                "HS512",
                Some("HS512"),
                b"sk",
                &format!(r#"{{"exp":{exp},"sub":"ak"}}"#),
            );
            assert_eq!(a.validate(&t), Err(AuthError::Expired), "exp {exp}");
        }
        let t = forge(
            "HS512",
            Some("HS512"),
            b"sk",
            &format!(r#"{{"exp":{},"sub":"ak"}}"#, now + 120),
        );
        a.validate(&t).unwrap();
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
