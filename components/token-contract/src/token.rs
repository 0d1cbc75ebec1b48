//! Issuing and verifying the service's HS256 tokens.
//!
//! Claims match the reference system exactly: `username`, `iat`, `exp`.
//! Verification is deliberately strict: HS256 only, with our key, and an
//! `exp` that must be present and not in the past (no clock tolerance, as
//! PyJWT and the reference verifier do by default).

use std::fmt;
use std::time::Duration as StdDuration;

use jwt_simple::JWTError;
use jwt_simple::prelude::{
    Clock, Duration, JWTClaims, MACLike, UnixTimeStamp, VerificationOptions,
};
use serde::{Deserialize, Serialize};

use crate::key::SigningKey;

/// Tokens larger than this are not ours; refuse them before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The application claim carried by every token.
#[derive(Debug, Serialize, Deserialize)]
struct UserClaims {
    username: String,
}

/// Signs a token for `username` valid for `ttl` from now.
pub fn issue(key: &SigningKey, username: &str, ttl: StdDuration) -> Result<String, TokenError> {
    issue_at(key, username, ttl, Clock::now_since_epoch())
}

/// Like [`issue`], with an explicit issue time (for tests and tools).
pub fn issue_at(
    key: &SigningKey,
    username: &str,
    ttl: StdDuration,
    now: UnixTimeStamp,
) -> Result<String, TokenError> {
    // `iat` and `exp` are whole seconds on the wire; truncate `now` first so
    // that exp - iat is exactly the TTL.
    let now = Duration::from_secs(now.as_secs());
    let mut claims: JWTClaims<UserClaims> = JWTClaims {
        issued_at: Some(now),
        expires_at: Some(now + Duration::from_secs(ttl.as_secs())),
        // The reference tokens carry no `nbf`; leaving it out also keeps a
        // verifier whose clock lags the creator's from rejecting new tokens.
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: None,
        jwt_id: None,
        nonce: None,
        custom: UserClaims {
            username: username.to_owned(),
        },
    };
    claims.nonce = None;
    key.hs256()
        .authenticate(claims)
        .map_err(|e| TokenError::Signing(e.to_string()))
}

/// Checks `token` and returns the username it was issued for.
pub fn verify(key: &SigningKey, token: &str) -> Result<String, TokenError> {
    verify_at(key, token, None)
}

/// Like [`verify`], with an explicit current time (for tests).
pub fn verify_at(
    key: &SigningKey,
    token: &str,
    now: Option<UnixTimeStamp>,
) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Invalid(format!(
            "token is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let options = VerificationOptions {
        time_tolerance: Some(Duration::from_secs(0)),
        // `iat` slightly ahead of our clock is just skew between pods; the
        // expiry check below still bounds every token's life.
        accept_future: true,
        max_token_length: Some(MAX_TOKEN_LEN),
        artificial_time: now,
        ..VerificationOptions::default()
    };
    let claims = key
        .hs256()
        .verify_token::<UserClaims>(token, Some(options))
        .map_err(|e| TokenError::Invalid(describe(&e)))?;
    if claims.expires_at.is_none() {
        return Err(TokenError::Invalid("token has no exp claim".into()));
    }
    Ok(claims.custom.username)
}

/// Turns jwt-simple's errors into a detail a client can act on.
fn describe(error: &jwt_simple::Error) -> String {
    match error.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => "token has expired".into(),
        Some(JWTError::InvalidAuthenticationTag | JWTError::InvalidSignature) => {
            "signature does not match".into()
        }
        Some(JWTError::AlgorithmMismatch) => "algorithm not accepted; only HS256 is".into(),
        Some(other) => format!("malformed token: {other}"),
        None => format!("malformed token: {error}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The client sent a token we must not accept (a 401).
    Invalid(String),
    /// We could not sign (a server fault).
    Signing(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Invalid(why) => write!(f, "invalid token: {why}"),
            TokenError::Signing(why) => write!(f, "could not sign token: {why}"),
        }
    }
}

impl std::error::Error for TokenError {}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::{HS512Key, NoCustomClaims};

    fn key(fill: u8) -> SigningKey {
        SigningKey::from_file_contents(&[fill; 128]).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Encoder};
        Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
    }

    fn decode_part(part: &str) -> serde_json::Value {
        use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder};
        serde_json::from_slice(&Base64UrlSafeNoPadding::decode_to_vec(part, None).unwrap()).unwrap()
    }

    #[test]
    fn round_trip_returns_the_username() {
        let k = key(b'a');
        let token = issue(&k, "testname", StdDuration::from_secs(300)).unwrap();
        assert_eq!(verify(&k, &token).unwrap(), "testname");
    }

    #[test]
    fn header_and_claims_match_the_reference_shape() {
        let now = Duration::from_secs(1_700_000_000);
        let token = issue_at(&key(b'a'), "alice", StdDuration::from_secs(300), now).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode_part(parts[0]),
            serde_json::json!({"alg": "HS256", "typ": "JWT"})
        );
        assert_eq!(
            decode_part(parts[1]),
            serde_json::json!({"username": "alice", "iat": 1_700_000_000u64, "exp": 1_700_000_300u64})
        );
    }

    #[test]
    fn expired_tokens_are_rejected_without_tolerance() {
        let k = key(b'a');
        let iat = Duration::from_secs(1_700_000_000);
        let token = issue_at(&k, "bob", StdDuration::from_secs(300), iat).unwrap();
        let at = |s| Some(Duration::from_secs(s));
        assert_eq!(verify_at(&k, &token, at(1_700_000_300)).unwrap(), "bob");
        let err = verify_at(&k, &token, at(1_700_000_301)).unwrap_err();
        assert_eq!(err, TokenError::Invalid("token has expired".into()));
    }

    #[test]
    fn a_token_signed_with_another_key_is_rejected() {
        let token = issue(&key(b'a'), "eve", StdDuration::from_secs(60)).unwrap();
        let err = verify(&key(b'b'), &token).unwrap_err();
        assert_eq!(err, TokenError::Invalid("signature does not match".into()));
    }

    #[test]
    fn a_tampered_payload_is_rejected() {
        let k = key(b'a');
        let token = issue(&k, "eve", StdDuration::from_secs(60)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(br#"{"username":"admin","iat":1,"exp":99999999999}"#);
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert!(matches!(verify(&k, &tampered), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn alg_none_is_rejected() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64(br#"{"username":"root","exp":99999999999}"#);
        let token = format!("{header}.{claims}.");
        assert!(matches!(
            verify(&key(b'a'), &token),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn hs512_with_the_same_secret_is_rejected() {
        let secret = [b'a'; 128];
        let claims = jwt_simple::prelude::Claims::create(Duration::from_secs(60));
        let token = HS512Key::from_bytes(&secret)
            .authenticate::<NoCustomClaims>(claims)
            .unwrap();
        let err = verify(&key(b'a'), &token).unwrap_err();
        assert_eq!(
            err,
            TokenError::Invalid("algorithm not accepted; only HS256 is".into())
        );
    }

    #[test]
    fn a_token_without_exp_is_rejected() {
        let k = key(b'a');
        let mut claims = jwt_simple::prelude::Claims::with_custom_claims(
            UserClaims {
                username: "x".into(),
            },
            Duration::from_secs(60),
        );
        claims.expires_at = None;
        let token = k.hs256().authenticate(claims).unwrap();
        let err = verify(&k, &token).unwrap_err();
        assert_eq!(err, TokenError::Invalid("token has no exp claim".into()));
    }

    #[test]
    fn garbage_and_oversized_tokens_are_rejected() {
        let k = key(b'a');
        for garbage in ["", "abc", "a.b.c", "....", "\u{0}"] {
            assert!(matches!(verify(&k, garbage), Err(TokenError::Invalid(_))));
        }
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(verify(&k, &huge), Err(TokenError::Invalid(_))));
    }
}
