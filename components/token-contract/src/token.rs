//! Issuing and verifying the service's tokens.
//!
//! Claims match the reference system exactly: `username`, `iat`, `exp`, plus
//! `iss` and `aud` when the deployment sets them ([`ClaimsPolicy`]).
//! Verification is deliberately strict: the deployment's one algorithm,
//! with our keys, and an `exp` that must be present and not in the past (no
//! clock tolerance, as PyJWT and the reference verifier do by default).
//!
//! HS256 (the default) signs with the key file; EdDSA and ES256 sign with a
//! [`PrivateKey`] and are checked against the published [`PublicKeySet`]
//! ([`issue_with`], [`verify_published`]).
//!
//! Key rotation: tokens carry the signing key's id in their `kid` header
//! (see [`SigningKey::kid`]). [`verify_with_keys`] accepts the current key and,
//! during an overlap window, the previous one, choosing by `kid`. Tokens
//! without `kid` (the reference Go creator issues those) are tried with the
//! current key, then the previous one.

use std::fmt;
use std::time::Duration as StdDuration;

use std::collections::HashSet;

use jwt_simple::JWTError;
use jwt_simple::prelude::{
    Audiences, Clock, Duration, ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, EdDSAKeyPairLike,
    EdDSAPublicKeyLike, JWTClaims, MACLike, Token, UnixTimeStamp, VerificationOptions,
};
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use serde::{Deserialize, Serialize};

use crate::alg::Algorithm;
use crate::jwk::{PrivateKey, PublicKey, PublicKeySet};
use crate::key::{KeyError, SigningKey};

/// Tokens larger than this are not ours; refuse them before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The application claim carried by every token.
#[derive(Debug, Serialize, Deserialize)]
struct UserClaims {
    username: String,
}

/// Why a token signed with some other key is refused (the signature check).
const SIGNATURE_MISMATCH: &str = "signature does not match";

/// The registered claims a deployment may add (RFC 8725, 3.9 and 3.10): the
/// creator writes them into every token and the verifier requires them, so
/// that a gateway or a second service can tell tokens meant for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimsPolicy {
    /// `iss` (`TOKEN_ISSUER`).
    pub issuer: Option<String>,
    /// `aud` (`TOKEN_AUDIENCE`). Without one, a token that names an audience
    /// is refused: it was meant for someone else (as PyJWT refuses it).
    pub audience: Option<String>,
}

/// The key a token is signed with, of either family.
#[derive(Debug, Clone, Copy)]
pub enum IssuingKey<'a> {
    /// HS256 with the key file.
    Hmac(&'a SigningKey),
    /// EdDSA or ES256 with the creator's private key.
    Private(&'a PrivateKey),
}

/// Signs a token for `username` valid for `ttl` from now, with a `kid`
/// header naming `key`.
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
    issue_with(
        IssuingKey::Hmac(key),
        username,
        ttl,
        &ClaimsPolicy::default(),
        Some(now),
    )
}

/// Signs a token for `username` valid for `ttl` from `now` (the clock when
/// `None`) with `key`, carrying the `policy`'s claims.
///
/// ES256 signatures are put in low-S form (`s <= n/2`): ECDSA accepts `s`
/// and `n - s` alike, and jwt-simple signs with either; the low form is the
/// one strict verifiers (those that refuse malleable signatures) accept.
pub fn issue_with(
    key: IssuingKey<'_>,
    username: &str,
    ttl: StdDuration,
    policy: &ClaimsPolicy,
    now: Option<UnixTimeStamp>,
) -> Result<String, TokenError> {
    // `iat` and `exp` are whole seconds on the wire; truncate `now` first so
    // that exp - iat is exactly the TTL.
    let now = Duration::from_secs(now.unwrap_or_else(Clock::now_since_epoch).as_secs());
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
    if let Some(issuer) = &policy.issuer {
        claims = claims.with_issuer(issuer);
    }
    if let Some(audience) = &policy.audience {
        claims = claims.with_audience(audience);
    }
    let signing_failed = |e: jwt_simple::Error| TokenError::Signing(e.to_string());
    match key {
        IssuingKey::Hmac(key) => key.hs256().authenticate(claims).map_err(signing_failed),
        IssuingKey::Private(PrivateKey::Ed25519(key)) => key.sign(claims).map_err(signing_failed),
        IssuingKey::Private(PrivateKey::P256(key)) => {
            low_s_form(&key.sign(claims).map_err(signing_failed)?)
        }
    }
}

/// The ES256 token with its signature's `s` replaced by `n - s` when it is
/// in the upper half of the group order.
fn low_s_form(token: &str) -> Result<String, TokenError> {
    let broken = |why: &str| TokenError::Signing(format!("ES256 signature: {why}"));
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| broken("no signature"))?;
    let raw = Base64UrlSafeNoPadding::decode_to_vec(signature, None)
        .map_err(|_| broken("not base64url"))?;
    let signature = p256::ecdsa::Signature::from_slice(&raw).map_err(|_| broken("not r || s"))?;
    let low = Base64UrlSafeNoPadding::encode_to_string(signature.normalize_s().to_bytes())
        .map_err(|_| broken("cannot encode"))?;
    Ok(format!("{signed}.{low}"))
}

/// Checks `token` against the accepted keys and returns its username:
/// `current`, and the key `previous` returns, if any.
///
/// `previous` is called only when the token could be the previous key's
/// (its `kid` is not the current key's, or it has no `kid` and the current
/// key's signature check failed), so hosts that read keys from files on every
/// request pay for the second file only during a rotation, and then only for
/// old tokens.
pub fn verify_with_keys(
    current: &SigningKey,
    previous: impl FnOnce() -> Result<Option<SigningKey>, KeyError>,
    token: &str,
) -> Result<String, TokenError> {
    verify_with_keys_at(current, previous, token, None)
}

/// Like [`verify_with_keys`], with an explicit current time (for tests).
pub fn verify_with_keys_at(
    current: &SigningKey,
    previous: impl FnOnce() -> Result<Option<SigningKey>, KeyError>,
    token: &str,
    now: Option<UnixTimeStamp>,
) -> Result<String, TokenError> {
    verify_hs256(current, previous, token, &ClaimsPolicy::default(), now)
}

/// Like [`verify_with_keys`], also requiring the `policy`'s claims, at `now`
/// (the clock when `None`).
pub fn verify_hs256(
    current: &SigningKey,
    previous: impl FnOnce() -> Result<Option<SigningKey>, KeyError>,
    token: &str,
    policy: &ClaimsPolicy,
    now: Option<UnixTimeStamp>,
) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(too_long());
    }
    // The common case, a token naming the current key, in one pass:
    // jwt-simple compares the `kid` before it checks the signature, and its
    // error says whether the token names another key or none.
    let verified = current
        .hs256()
        .verify_token::<UserClaims>(token, Some(options(now, Some(current.kid()), policy)));
    let error = verified
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<JWTError>());
    if matches!(error, Some(JWTError::MissingJWTKeyIdentifier)) {
        // No `kid` (the reference Go creator's tokens): the current key,
        // then the previous one.
        return match verify_one(current, token, policy, now) {
            Err(TokenError::Invalid(why)) if why == SIGNATURE_MISMATCH => {
                match previous().map_err(TokenError::KeyUnavailable)? {
                    Some(previous) => verify_one(&previous, token, policy, now),
                    None => Err(TokenError::Invalid(why)),
                }
            }
            other => other,
        };
    }
    if !matches!(error, Some(JWTError::KeyIdentifierMismatch)) {
        return username(verified, now, policy, Algorithm::Hs256);
    }
    // Another key's `kid`. The header is unauthenticated, but `kid` only
    // picks which key to try; the signature check with that key decides.
    let metadata = Token::decode_metadata(token)
        .map_err(|e| TokenError::Invalid(describe(&e, Algorithm::Hs256)))?;
    match previous().map_err(TokenError::KeyUnavailable)? {
        Some(previous) if metadata.key_id() == Some(previous.kid()) => {
            verify_one(&previous, token, policy, now)
        }
        _ => Err(TokenError::Invalid(
            "unknown key id: the key that signed this token is not accepted here".into(),
        )),
    }
}

/// Checks `token` with `key` alone (whatever its `kid`) and returns the
/// username it was issued for.
pub fn verify(key: &SigningKey, token: &str) -> Result<String, TokenError> {
    verify_at(key, token, None)
}

/// Like [`verify`], with an explicit current time (for tests).
pub fn verify_at(
    key: &SigningKey,
    token: &str,
    now: Option<UnixTimeStamp>,
) -> Result<String, TokenError> {
    verify_one(key, token, &ClaimsPolicy::default(), now)
}

fn verify_one(
    key: &SigningKey,
    token: &str,
    policy: &ClaimsPolicy,
    now: Option<UnixTimeStamp>,
) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(too_long());
    }
    username(
        key.hs256()
            .verify_token(token, Some(options(now, None, policy))),
        now,
        policy,
        Algorithm::Hs256,
    )
}

/// The `alg` header values a deployment of `alg` accepts: its name, and for
/// Ed25519 also the fully-specified name `Ed25519` (RFC 9864), which
/// jwt-simple treats as the same algorithm.
fn accepted_alg_names(alg: Algorithm) -> &'static [&'static str] {
    match alg {
        Algorithm::Hs256 => &["HS256"],
        Algorithm::EdDsa => &["EdDSA", "Ed25519"],
        Algorithm::Es256 => &["ES256"],
    }
}

/// Checks a token of an EdDSA or ES256 deployment against its published
/// keys and returns its username.
///
/// In this order, each refusal a 401 that says why: the `alg` header must be
/// the deployment's (RFC 8725, 3.1: the algorithm is pinned, never taken
/// from the token); a token may not bring its own key (`jwk`, `jku`, `x5u`,
/// `x5c`: keys come only from `keys`); its `kid` must name a key of the set;
/// then jwt-simple checks the signature with that key and the claims. An
/// ES256 signature may be in either form of `s`, as RFC 7518 allows and
/// other signers (PyJWT, jose, golang-jwt) make them.
pub fn verify_published(
    alg: Algorithm,
    keys: &PublicKeySet,
    token: &str,
    policy: &ClaimsPolicy,
    now: Option<UnixTimeStamp>,
) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(too_long());
    }
    let invalid = |why: String| TokenError::Invalid(why);
    // Before jwt-simple parses the header: it types `jwk` as a string, so a
    // key in the header as RFC 7515 writes it (an object) would otherwise be
    // refused as a malformed header rather than for what it is.
    if header_carries_a_key(token) {
        return Err(invalid(
            "the token header carries a key (jwk, jku, x5u or x5c); keys come only from this \
             service's key set"
                .into(),
        ));
    }
    let metadata = Token::decode_metadata(token).map_err(|e| invalid(describe(&e, alg)))?;
    if !accepted_alg_names(alg).contains(&metadata.algorithm()) {
        return Err(invalid(algorithm_not_accepted(alg)));
    }
    let Some(kid) = metadata.key_id() else {
        return Err(invalid(
            "token has no kid; it must name a key of the published key set".into(),
        ));
    };
    let key = keys
        .find(alg, kid)
        .map_err(TokenError::KeyUnavailable)?
        .ok_or_else(|| {
            invalid("unknown key id: the key that signed this token is not accepted here".into())
        })?;
    let options = Some(options(now, None, policy));
    let verified = match &key {
        PublicKey::Ed25519(key) => key.verify_token::<UserClaims>(token, options),
        // Both forms of `s` are valid ES256 (RFC 7518 does not require the
        // low one, and other signers make either); ours issues low-S only.
        PublicKey::P256(key) => key.verify_token::<UserClaims>(token, options),
    };
    username(verified, now, policy, alg)
}

/// Whether the token's header names a key of its own (`jwk`, `jku`, `x5u`,
/// `x5c`; `null` names none). A header that is not a JSON object is left to
/// jwt-simple, which refuses it with its own reason.
fn header_carries_a_key(token: &str) -> bool {
    #[derive(Deserialize)]
    struct KeyMembers {
        jwk: Option<serde::de::IgnoredAny>,
        jku: Option<serde::de::IgnoredAny>,
        x5u: Option<serde::de::IgnoredAny>,
        x5c: Option<serde::de::IgnoredAny>,
    }
    let header = token.split('.').next().unwrap_or_default();
    let Ok(json) = Base64UrlSafeNoPadding::decode_to_vec(header, None) else {
        return false;
    };
    serde_json::from_slice::<KeyMembers>(&json).is_ok_and(|members| {
        members.jwk.is_some()
            || members.jku.is_some()
            || members.x5u.is_some()
            || members.x5c.is_some()
    })
}

/// How every token is checked; `required_kid`, if given, must be its `kid`.
fn options(
    now: Option<UnixTimeStamp>,
    required_kid: Option<&str>,
    policy: &ClaimsPolicy,
) -> VerificationOptions {
    let one = |value: &Option<String>| value.as_ref().map(|v| HashSet::from([v.clone()]));
    VerificationOptions {
        time_tolerance: Some(Duration::from_secs(0)),
        // `iat` slightly ahead of our clock is just skew between pods; the
        // expiry check below still bounds every token's life.
        accept_future: true,
        max_token_length: Some(MAX_TOKEN_LEN),
        required_key_id: required_kid.map(str::to_owned),
        allowed_issuers: one(&policy.issuer),
        allowed_audiences: one(&policy.audience),
        artificial_time: now,
        ..VerificationOptions::default()
    }
}

/// The username of a token jwt-simple verified, which must also have `exp`
/// and, if it has `nbf`, be valid already.
///
/// jwt-simple checks `nbf` only together with `iat`, when future tokens are
/// refused; we accept an `iat` ahead of our clock (see [`options`]) but not a
/// token its issuer said is not valid yet, as PyJWT and jsonwebtoken refuse
/// it too (found by the `verify_token` fuzz target).
fn username(
    verified: Result<JWTClaims<UserClaims>, jwt_simple::Error>,
    now: Option<UnixTimeStamp>,
    policy: &ClaimsPolicy,
    alg: Algorithm,
) -> Result<String, TokenError> {
    let claims = verified.map_err(|e| TokenError::Invalid(describe(&e, alg)))?;
    if claims.expires_at.is_none() {
        return Err(TokenError::Invalid("token has no exp claim".into()));
    }
    // jwt-simple checks `aud` only when audiences are required. An empty
    // `aud` ("" or []) names no one: PyJWT accepts it, and so do we (found by
    // the `verify_mutated_token` fuzz target).
    if policy.audience.is_none() && claims.audiences.as_ref().is_some_and(names_someone) {
        return Err(TokenError::Invalid(
            "token names an audience (aud), and this verifier has none (TOKEN_AUDIENCE)".into(),
        ));
    }
    if let Some(not_before) = claims.invalid_before {
        let now = now.unwrap_or_else(Clock::now_since_epoch);
        if not_before.as_secs() > now.as_secs() {
            return Err(TokenError::Invalid("token is not valid yet (nbf)".into()));
        }
    }
    Ok(claims.custom.username)
}

fn names_someone(audiences: &Audiences) -> bool {
    match audiences {
        Audiences::AsString(audience) => !audience.is_empty(),
        Audiences::AsSet(audiences) => !audiences.is_empty(),
    }
}

fn too_long() -> TokenError {
    TokenError::Invalid(format!("token is longer than {MAX_TOKEN_LEN} bytes"))
}

fn algorithm_not_accepted(alg: Algorithm) -> String {
    format!("algorithm not accepted; only {alg} is")
}

/// Turns jwt-simple's errors into a detail a client can act on.
fn describe(error: &jwt_simple::Error, alg: Algorithm) -> String {
    match error.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => "token has expired".into(),
        Some(JWTError::InvalidAuthenticationTag | JWTError::InvalidSignature) => {
            SIGNATURE_MISMATCH.into()
        }
        Some(JWTError::AlgorithmMismatch) => algorithm_not_accepted(alg),
        Some(JWTError::RequiredIssuerMissing) => "token has no issuer (iss)".into(),
        Some(JWTError::RequiredIssuerMismatch) => "issuer (iss) not accepted".into(),
        Some(JWTError::RequiredAudienceMissing) => "token has no audience (aud)".into(),
        Some(JWTError::RequiredAudienceMismatch) => "audience (aud) not accepted".into(),
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
    /// The token names a key we may hold but cannot read (a server fault).
    KeyUnavailable(KeyError),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Invalid(why) => write!(f, "invalid token: {why}"),
            TokenError::Signing(why) => write!(f, "could not sign token: {why}"),
            TokenError::KeyUnavailable(error) => error.fmt(f),
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
            serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": key(b'a').kid()})
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

    /// Found by the `verify_token` fuzz target: jwt-simple skips `nbf`
    /// when future `iat`s are accepted, and we accepted a token signed with
    /// our key whose `nbf` was in the future (PyJWT refuses it).
    #[test]
    fn a_token_not_valid_yet_is_rejected_and_valid_from_its_nbf() {
        let k = key(b'a');
        let iat = Duration::from_secs(1_700_000_000);
        let mut claims = jwt_simple::prelude::Claims::with_custom_claims(
            UserClaims {
                username: "x".into(),
            },
            Duration::from_secs(600),
        );
        claims.issued_at = Some(iat);
        claims.expires_at = Some(iat + Duration::from_secs(600));
        claims.invalid_before = Some(iat + Duration::from_secs(60));
        let token = k.hs256().authenticate(claims).unwrap();
        let at = |s| Some(Duration::from_secs(s));
        let err = verify_at(&k, &token, at(1_700_000_059)).unwrap_err();
        assert_eq!(
            err,
            TokenError::Invalid("token is not valid yet (nbf)".into())
        );
        assert_eq!(verify_at(&k, &token, at(1_700_000_060)).unwrap(), "x");
        // With the previous-key logic in front, too.
        let err = verify_with_keys_at(&k, || Ok(None), &token, at(1_700_000_000)).unwrap_err();
        assert_eq!(
            err,
            TokenError::Invalid("token is not valid yet (nbf)".into())
        );
    }

    /// A token with this header and these claims, signed with `key(fill)`
    /// as any HS256 library would.
    fn signed(fill: u8, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let tag = hmac_sha256::HMAC::mac(input.as_bytes(), [fill; 128]);
        format!("{input}.{}", b64(&tag))
    }

    /// How tokens the fuzz targets generated are judged where libraries
    /// differ (docs/fuzzing.md): pinned here so that a change of jwt-simple
    /// cannot change them silently.
    #[test]
    fn edge_cases_found_by_fuzzing() {
        let k = key(b'a');
        let exp = Clock::now_since_epoch().as_secs() + 600;
        let claims = format!(r#"{{"username":"u","exp":{exp}}}"#);
        let verdict = |header: &str, claims: &str| verify(&k, &signed(b'a', header, claims));
        // `typ` must say JWT (any case, or a `+JWT` suffix); PyJWT ignores
        // it, jwt-simple insists (explicit typing, RFC 8725).
        assert_eq!(
            verdict(r#"{"alg":"HS256","typ":"jwt"}"#, &claims).unwrap(),
            "u"
        );
        assert_eq!(
            verdict(r#"{"alg":"HS256","typ":"at+jwt"}"#, &claims).unwrap(),
            "u"
        );
        assert!(matches!(
            verdict(r#"{"alg":"HS256","typ":"dd"}"#, &claims),
            Err(TokenError::Invalid(why)) if why.contains("Not a JWT")
        ));
        // Critical extensions we do not understand (all of them): refused,
        // as RFC 7515 requires.
        assert!(matches!(
            verdict(r#"{"alg":"HS256","crit":["x"],"x":1}"#, &claims),
            Err(TokenError::Invalid(_))
        ));
        // `exp` is a NumericDate: a fraction of a second is a time too.
        let fractional = format!(r#"{{"username":"u","exp":{exp}.5}}"#);
        assert_eq!(verdict(r#"{"alg":"HS256"}"#, &fractional).unwrap(), "u");
        // A null `kid` is no `kid`: tried with the accepted keys.
        let token = signed(b'a', r#"{"alg":"HS256","kid":null}"#, &claims);
        assert_eq!(verify_with_keys(&k, || Ok(None), &token).unwrap(), "u");
        // An empty `aud` names no audience: accepted without TOKEN_AUDIENCE,
        // as PyJWT does; a non-empty one is refused.
        for aud in ["[]", r#""""#] {
            let empty_aud = format!(r#"{{"username":"u","exp":{exp},"aud":{aud}}}"#);
            assert_eq!(verdict(r#"{"alg":"HS256"}"#, &empty_aud).unwrap(), "u");
        }
        for aud in [r#"["api"]"#, r#""api""#, r#"["","api"]"#] {
            let named = format!(r#"{{"username":"u","exp":{exp},"aud":{aud}}}"#);
            assert!(matches!(
                verdict(r#"{"alg":"HS256"}"#, &named),
                Err(TokenError::Invalid(why)) if why.contains("names an audience")
            ));
        }
        // Registered claims of the wrong type are malformed, not ignored.
        let bad_iat = format!(r#"{{"username":"u","exp":{exp},"iat":"yesterday"}}"#);
        assert!(matches!(
            verdict(r#"{"alg":"HS256"}"#, &bad_iat),
            Err(TokenError::Invalid(_))
        ));
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

    // --- rotation: the current key and, during the window, the previous one ---

    /// A token signed by `key` without a `kid`, as the reference Go creator makes them.
    fn token_without_kid(key: &SigningKey, username: &str, exp_in: u64) -> String {
        let claims = jwt_simple::prelude::Claims::with_custom_claims(
            UserClaims {
                username: username.into(),
            },
            Duration::from_secs(exp_in),
        );
        // A fresh HS256Key from the same bytes carries no key id.
        let bare = jwt_simple::prelude::HS256Key::from_bytes(&key.hs256().to_bytes());
        let token = bare.authenticate(claims).unwrap();
        assert!(
            !decode_part(token.split('.').next().unwrap())
                .as_object()
                .unwrap()
                .contains_key("kid")
        );
        token
    }

    /// The `previous` argument, counting how often the verifier asks for it.
    fn previous_key(
        key: Option<&SigningKey>,
        reads: &std::cell::Cell<u32>,
    ) -> impl FnOnce() -> Result<Option<SigningKey>, KeyError> {
        move || {
            reads.set(reads.get() + 1);
            Ok(key.cloned())
        }
    }

    #[test]
    fn tokens_are_checked_with_the_key_their_kid_names() {
        let (current, previous) = (key(b'a'), key(b'b'));
        let reads = std::cell::Cell::new(0);
        let new = issue(&current, "new", StdDuration::from_secs(60)).unwrap();
        let old = issue(&previous, "old", StdDuration::from_secs(60)).unwrap();
        // The common path never asks for the previous key.
        let verified = verify_with_keys(&current, previous_key(Some(&previous), &reads), &new);
        assert_eq!((verified.unwrap().as_str(), reads.get()), ("new", 0));
        let verified = verify_with_keys(&current, previous_key(Some(&previous), &reads), &old);
        assert_eq!((verified.unwrap().as_str(), reads.get()), ("old", 1));
    }

    #[test]
    fn tokens_without_kid_fall_back_to_the_previous_key() {
        let (current, previous) = (key(b'a'), key(b'b'));
        let reads = std::cell::Cell::new(0);
        let new = token_without_kid(&current, "new", 60);
        let verified = verify_with_keys(&current, previous_key(Some(&previous), &reads), &new);
        assert_eq!((verified.unwrap().as_str(), reads.get()), ("new", 0));
        let old = token_without_kid(&previous, "old", 60);
        let verified = verify_with_keys(&current, previous_key(Some(&previous), &reads), &old);
        assert_eq!((verified.unwrap().as_str(), reads.get()), ("old", 1));
        // Neither key: the usual signature error.
        let stranger = token_without_kid(&key(b'c'), "x", 60);
        let err = verify_with_keys(&current, previous_key(Some(&previous), &reads), &stranger)
            .unwrap_err();
        assert_eq!(err, TokenError::Invalid(SIGNATURE_MISMATCH.into()));
        // An expired token of the current key is expired, not a reason to
        // try another key (the signature matched).
        reads.set(0);
        let later = Some(Duration::from_secs(
            Clock::now_since_epoch().as_secs() + 120,
        ));
        let err = verify_with_keys_at(&current, previous_key(Some(&previous), &reads), &new, later)
            .unwrap_err();
        assert_eq!(
            (err, reads.get()),
            (TokenError::Invalid("token has expired".into()), 0)
        );
    }

    #[test]
    fn an_unknown_kid_is_rejected_even_with_a_valid_signature() {
        let (current, previous) = (key(b'a'), key(b'b'));
        let reads = std::cell::Cell::new(0);
        let foreign = issue(&key(b'c'), "x", StdDuration::from_secs(60)).unwrap();
        let err = verify_with_keys(&current, previous_key(Some(&previous), &reads), &foreign)
            .unwrap_err();
        assert!(matches!(&err, TokenError::Invalid(why) if why.contains("unknown key id")));
        // A kid that is not ours on a token our current key signed: the kid
        // is part of the signed header, so someone made this token on purpose.
        let relabelled = jwt_simple::prelude::HS256Key::from_bytes(&current.hs256().to_bytes())
            .with_key_id("0000000000000000")
            .authenticate(jwt_simple::prelude::Claims::create(Duration::from_secs(60)))
            .unwrap();
        let err = verify_with_keys(&current, previous_key(None, &reads), &relabelled).unwrap_err();
        assert!(matches!(&err, TokenError::Invalid(why) if why.contains("unknown key id")));
    }

    #[test]
    fn once_the_window_closes_the_previous_keys_tokens_are_rejected() {
        let (current, previous) = (key(b'a'), key(b'b'));
        let reads = std::cell::Cell::new(0);
        let old = issue(&previous, "old", StdDuration::from_secs(60)).unwrap();
        let old_without_kid = token_without_kid(&previous, "old", 60);
        let err = verify_with_keys(&current, previous_key(None, &reads), &old).unwrap_err();
        assert!(matches!(&err, TokenError::Invalid(why) if why.contains("unknown key id")));
        let err =
            verify_with_keys(&current, previous_key(None, &reads), &old_without_kid).unwrap_err();
        assert_eq!(err, TokenError::Invalid(SIGNATURE_MISMATCH.into()));
        // And within the window, the previous key's tokens still expire.
        let iat = Duration::from_secs(1_700_000_000);
        let expired = issue_at(&previous, "old", StdDuration::from_secs(300), iat).unwrap();
        let err = verify_with_keys_at(
            &current,
            previous_key(Some(&previous), &reads),
            &expired,
            Some(Duration::from_secs(1_700_000_301)),
        )
        .unwrap_err();
        assert_eq!(err, TokenError::Invalid("token has expired".into()));
    }

    #[test]
    fn an_unreadable_previous_key_is_a_server_fault_only_when_needed() {
        let current = key(b'a');
        let broken = || Err(KeyError::Malformed("previous-key.txt: bad".into()));
        let new = issue(&current, "new", StdDuration::from_secs(60)).unwrap();
        assert_eq!(verify_with_keys(&current, broken, &new).unwrap(), "new");
        let old = issue(&key(b'b'), "old", StdDuration::from_secs(60)).unwrap();
        let err = verify_with_keys(&current, broken, &old).unwrap_err();
        assert!(matches!(
            err,
            TokenError::KeyUnavailable(KeyError::Malformed(_))
        ));
    }

    #[test]
    fn garbage_is_rejected_before_any_key_is_asked_for() {
        let reads = std::cell::Cell::new(0);
        for garbage in ["", "abc", "a.b.c", "....", "\u{0}"] {
            let result = verify_with_keys(&key(b'a'), previous_key(None, &reads), garbage);
            assert!(matches!(result, Err(TokenError::Invalid(_))), "{garbage:?}");
        }
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        let result = verify_with_keys(&key(b'a'), previous_key(None, &reads), &huge);
        assert!(matches!(result, Err(TokenError::Invalid(_))));
        assert_eq!(reads.get(), 0);
    }

    // --- EdDSA and ES256: the published keys (RFC 8725 and OWASP's attacks) ---

    mod published {
        use super::*;
        use crate::jwk::PrivateKey;

        const ASYMMETRIC: [Algorithm; 2] = [Algorithm::EdDsa, Algorithm::Es256];

        fn private(alg: Algorithm, fill: u8) -> PrivateKey {
            PrivateKey::derive(alg, &[fill; 128]).unwrap()
        }

        fn set(keys: &[&PrivateKey]) -> PublicKeySet {
            PublicKeySet::from_keys(keys.iter().copied())
        }

        fn issue_signed(key: &PrivateKey, username: &str, policy: &ClaimsPolicy) -> String {
            issue_with(
                IssuingKey::Private(key),
                username,
                StdDuration::from_secs(300),
                policy,
                None,
            )
            .unwrap()
        }

        fn verify(alg: Algorithm, set: &PublicKeySet, token: &str) -> Result<String, TokenError> {
            verify_published(alg, set, token, &ClaimsPolicy::default(), None)
        }

        fn invalid_because(result: Result<String, TokenError>, needle: &str) {
            match result {
                Err(TokenError::Invalid(why)) => {
                    assert!(why.contains(needle), "{why:?} lacks {needle:?}")
                }
                other => panic!("expected a 401 for {needle:?}, got {other:?}"),
            }
        }

        /// A token with this header and claims, HMAC-SHA-256 signed with `secret`.
        fn hmac_token(header: &str, claims: &str, secret: &[u8]) -> String {
            let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
            let tag = hmac_sha256::HMAC::mac(input.as_bytes(), secret);
            format!("{input}.{}", b64(&tag))
        }

        fn fresh_claims(username: &str) -> String {
            let exp = Clock::now_since_epoch().as_secs() + 600;
            format!(r#"{{"username":"{username}","exp":{exp}}}"#)
        }

        #[test]
        fn tokens_round_trip_with_the_reference_claims_and_a_thumbprint_kid() {
            for alg in ASYMMETRIC {
                let key = private(alg, b'a');
                let token = issue_signed(&key, "alice", &ClaimsPolicy::default());
                let parts: Vec<&str> = token.split('.').collect();
                assert_eq!(
                    decode_part(parts[0]),
                    serde_json::json!({"alg": alg.name(), "typ": "JWT", "kid": key.kid().unwrap()})
                );
                let claims = decode_part(parts[1]);
                assert_eq!(claims["username"], "alice");
                assert_eq!(
                    claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
                    300
                );
                assert_eq!(verify(alg, &set(&[&key]), &token).unwrap(), "alice");
            }
        }

        #[test]
        fn the_algorithm_is_pinned_whatever_the_token_says() {
            for alg in ASYMMETRIC {
                let key = private(alg, b'a');
                let keys = set(&[&key]);
                let other = if alg == Algorithm::EdDsa {
                    Algorithm::Es256
                } else {
                    Algorithm::EdDsa
                };
                // A real token of the other algorithm, even one whose kid is in the set.
                let foreign = issue_signed(&private(other, b'a'), "eve", &ClaimsPolicy::default());
                invalid_because(verify(alg, &keys, &foreign), &format!("only {alg} is"));
                // HS256 with our HS256 key, and `none`.
                let hs256 = issue(&super::key(b'a'), "eve", StdDuration::from_secs(60)).unwrap();
                invalid_because(verify(alg, &keys, &hs256), &format!("only {alg} is"));
                let none = format!(
                    "{}.{}.",
                    b64(format!(r#"{{"alg":"none","kid":"{}"}}"#, key.kid().unwrap()).as_bytes()),
                    b64(fresh_claims("root").as_bytes())
                );
                invalid_because(verify(alg, &keys, &none), &format!("only {alg} is"));
            }
        }

        /// The classic confusion attack: an HS256 token whose HMAC key is the
        /// verifier's public key, in every form an attacker could find it.
        #[test]
        fn hs256_tokens_keyed_with_the_public_key_are_refused() {
            for alg in ASYMMETRIC {
                let key = private(alg, b'a');
                let keys = set(&[&key]);
                let kid = key.kid().unwrap();
                let (raw, pem) = match &key {
                    PrivateKey::Ed25519(k) => (k.public_key().to_bytes(), k.public_key().to_pem()),
                    PrivateKey::P256(k) => {
                        (k.public_key().to_bytes(), k.public_key().to_pem().unwrap())
                    }
                };
                let jwk = key.to_public_jwk();
                let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#);
                for secret in [
                    &raw[..],
                    jwk.as_bytes(),
                    pem.as_bytes(),
                    keys.json().as_bytes(),
                ] {
                    let forged = hmac_token(&header, &fresh_claims("admin"), secret);
                    invalid_because(verify(alg, &keys, &forged), &format!("only {alg} is"));
                    // Claiming the deployment's alg does not help either.
                    let relabelled = hmac_token(
                        &header.replace("HS256", alg.name()),
                        &fresh_claims("admin"),
                        secret,
                    );
                    assert!(matches!(
                        verify(alg, &keys, &relabelled),
                        Err(TokenError::Invalid(_))
                    ));
                }
            }
        }

        #[test]
        fn keys_are_only_ever_taken_from_the_set() {
            for alg in ASYMMETRIC {
                let ours = private(alg, b'a');
                let keys = set(&[&ours]);
                let attacker = private(alg, b'f');
                // Signed by a key outside the set: unknown kid.
                let foreign = issue_signed(&attacker, "x", &ClaimsPolicy::default());
                invalid_because(verify(alg, &keys, &foreign), "unknown key id");
                // Named with our kid: the signature check fails.
                let jwt_key = |kid: &str| match &attacker {
                    PrivateKey::Ed25519(k) => PrivateKey::Ed25519(std::sync::Arc::new(
                        jwt_simple::prelude::Ed25519KeyPair::from_bytes(&k.to_bytes())
                            .unwrap()
                            .with_key_id(kid),
                    )),
                    PrivateKey::P256(k) => PrivateKey::P256(std::sync::Arc::new(
                        jwt_simple::prelude::ES256KeyPair::from_bytes(&k.to_bytes())
                            .unwrap()
                            .with_key_id(kid),
                    )),
                };
                let impostor =
                    issue_signed(&jwt_key(ours.kid().unwrap()), "x", &ClaimsPolicy::default());
                invalid_because(verify(alg, &keys, &impostor), "signature does not match");
                // A token that brings its own key: jku, x5u, x5c, jwk.
                let claims = fresh_claims("admin");
                for extra in [
                    r#""jku":"http://127.0.0.1:9/jwks.json""#,
                    r#""x5u":"http://127.0.0.1:9/cert.pem""#,
                    r#""x5c":["MIIB"]"#,
                    r#""jwk":"a key""#,
                ] {
                    let header = format!(
                        r#"{{"alg":"{}","kid":"{}",{extra}}}"#,
                        alg.name(),
                        ours.kid().unwrap()
                    );
                    let token =
                        format!("{}.{}.AAAA", b64(header.as_bytes()), b64(claims.as_bytes()));
                    invalid_because(verify(alg, &keys, &token), "carries a key");
                }
                // RFC 7515 puts a JWK object in `jwk`: refused too.
                let header = format!(
                    r#"{{"alg":"{}","kid":"{}","jwk":{}}}"#,
                    alg.name(),
                    ours.kid().unwrap(),
                    attacker.to_public_jwk()
                );
                let token = format!("{}.{}.AAAA", b64(header.as_bytes()), b64(claims.as_bytes()));
                invalid_because(verify(alg, &keys, &token), "carries a key");
                // No kid at all.
                let header = format!(r#"{{"alg":"{}"}}"#, alg.name());
                let token = format!("{}.{}.AAAA", b64(header.as_bytes()), b64(claims.as_bytes()));
                invalid_because(verify(alg, &keys, &token), "no kid");
            }
        }

        #[test]
        fn every_key_of_the_set_verifies_its_own_tokens() {
            for alg in ASYMMETRIC {
                let (current, next, previous) =
                    (private(alg, b'a'), private(alg, b'b'), private(alg, b'c'));
                let keys = set(&[&current, &next, &previous]);
                for (key, name) in [
                    (&current, "current"),
                    (&next, "next"),
                    (&previous, "previous"),
                ] {
                    let token = issue_signed(key, name, &ClaimsPolicy::default());
                    assert_eq!(verify(alg, &keys, &token).unwrap(), name);
                }
                let dropped = issue_signed(&previous, "old", &ClaimsPolicy::default());
                invalid_because(
                    verify(alg, &set(&[&current, &next]), &dropped),
                    "unknown key id",
                );
            }
        }

        #[test]
        fn tampering_and_bad_signatures_are_refused() {
            for alg in ASYMMETRIC {
                let key = private(alg, b'a');
                let keys = set(&[&key]);
                let token = issue_signed(&key, "bob", &ClaimsPolicy::default());
                let parts: Vec<&str> = token.split('.').collect();
                let forged = b64(fresh_claims("admin").as_bytes());
                invalid_because(
                    verify(alg, &keys, &format!("{}.{forged}.{}", parts[0], parts[2])),
                    "signature does not match",
                );
                for signature in [
                    "",
                    "AAAA",
                    &b64(&[0u8; 64]),
                    &b64(&[0xff; 64]),
                    &b64(&[1u8; 65]),
                ] {
                    let bad = format!("{}.{}.{signature}", parts[0], parts[1]);
                    assert!(
                        matches!(verify(alg, &keys, &bad), Err(TokenError::Invalid(_))),
                        "{signature}"
                    );
                }
            }
        }

        #[test]
        fn es256_signatures_are_issued_low_s_and_high_s_is_accepted() {
            let key = private(Algorithm::Es256, b'a');
            let keys = set(&[&key]);
            for _ in 0..32 {
                let token = issue_signed(&key, "s", &ClaimsPolicy::default());
                let (signed, signature) = token.rsplit_once('.').unwrap();
                let raw = jwt_simple::reexports::ct_codecs::Base64UrlSafeNoPadding::decode_to_vec(
                    signature, None,
                )
                .unwrap();
                let low = p256::ecdsa::Signature::from_slice(&raw).unwrap();
                assert_eq!(low.normalize_s(), low, "issued in high-S form");
                // The same signature with s' = n - s: valid ECDSA, as other
                // signers make it half of the time.
                let (r, s) = low.split_scalars();
                let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
                assert_ne!(high, low);
                let malleated = format!("{signed}.{}", b64(&high.to_bytes()));
                assert_eq!(verify(Algorithm::Es256, &keys, &malleated).unwrap(), "s");
                assert_eq!(verify(Algorithm::Es256, &keys, &token).unwrap(), "s");
            }
        }

        #[test]
        fn issuer_and_audience_are_written_and_required() {
            let policy = ClaimsPolicy {
                issuer: Some("https://tokens.example".into()),
                audience: Some("api".into()),
            };
            for alg in ASYMMETRIC {
                let key = private(alg, b'a');
                let keys = set(&[&key]);
                let token = issue_signed(&key, "carol", &policy);
                let claims = decode_part(token.split('.').nth(1).unwrap());
                assert_eq!(
                    (claims["iss"].as_str(), claims["aud"].as_str()),
                    (Some("https://tokens.example"), Some("api"))
                );
                assert_eq!(
                    verify_published(alg, &keys, &token, &policy, None).unwrap(),
                    "carol"
                );
                // A verifier for another audience or issuer, or without audience.
                let other_aud = ClaimsPolicy {
                    audience: Some("billing".into()),
                    ..policy.clone()
                };
                invalid_because(
                    verify_published(alg, &keys, &token, &other_aud, None),
                    "audience (aud) not accepted",
                );
                let other_iss = ClaimsPolicy {
                    issuer: Some("https://evil.example".into()),
                    ..policy.clone()
                };
                invalid_because(
                    verify_published(alg, &keys, &token, &other_iss, None),
                    "issuer (iss) not accepted",
                );
                invalid_because(verify(alg, &keys, &token), "names an audience");
                // Tokens without the claims a verifier requires.
                let bare = issue_signed(&key, "dave", &ClaimsPolicy::default());
                invalid_because(
                    verify_published(alg, &keys, &bare, &policy, None),
                    "no issuer",
                );
                let issuer_only = ClaimsPolicy {
                    audience: None,
                    ..policy.clone()
                };
                invalid_because(
                    verify_published(alg, &keys, &bare, &issuer_only, None),
                    "no issuer",
                );
                let audience_only = ClaimsPolicy {
                    issuer: None,
                    ..policy.clone()
                };
                invalid_because(
                    verify_published(alg, &keys, &bare, &audience_only, None),
                    "no audience",
                );
            }
        }
    }

    #[test]
    fn hs256_refuses_an_audience_it_was_not_configured_for() {
        // What the reference verifier (PyJWT) does: a token for some audience
        // is not for a verifier that has none.
        let k = key(b'a');
        let policy = ClaimsPolicy {
            issuer: None,
            audience: Some("api".into()),
        };
        let token = issue_with(
            IssuingKey::Hmac(&k),
            "u",
            StdDuration::from_secs(60),
            &policy,
            None,
        )
        .unwrap();
        let err = verify_with_keys(&k, || Ok(None), &token).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(why) if why.contains("names an audience")),
            "{err:?}"
        );
        assert_eq!(
            verify_hs256(&k, || Ok(None), &token, &policy, None).unwrap(),
            "u"
        );
        // Unset policy: byte for byte the reference shape, as before.
        let now = Duration::from_secs(1_700_000_000);
        assert_eq!(
            issue_with(
                IssuingKey::Hmac(&k),
                "alice",
                StdDuration::from_secs(300),
                &ClaimsPolicy::default(),
                Some(now)
            )
            .unwrap(),
            issue_at(&k, "alice", StdDuration::from_secs(300), now).unwrap()
        );
    }
}
