//! Independent checks of tokens: what a token the verifier accepted, or the
//! creator issued, must be, judged without the code under test.

use base64::Engine as _;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig, general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::keys::expected_kid;
use crate::now_secs;

/// base64url without padding, decoding as leniently as JWT libraries do
/// about the unused low bits of the last character: a signature whose last
/// character differs only there is the same signature.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JSON object encoded as a JWT segment.
pub fn encode_segment(object: &Map<String, Value>) -> String {
    b64url(&serde_json::to_vec(object).expect("JSON values serialize"))
}

/// A JWT segment decoded as a JSON object, if it is one.
pub fn decode_segment(segment: &str) -> Option<Map<String, Value>> {
    let bytes = LENIENT.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// The HS256 signature of `signing_input` with a key file's contents as the
/// HMAC key (as the reference services and ours sign), in base64url.
pub fn hs256_sign(key_file_contents: &[u8], signing_input: &str) -> String {
    b64url(&hmac_sha256::HMAC::mac(
        signing_input.as_bytes(),
        key_file_contents,
    ))
}

/// A decoded token: its header and claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// Which of the accepted keys signed it.
    pub signed_by: usize,
}

/// Tokens whose `exp` is this close to now may be judged differently by two
/// checks a moment apart; the time-dependent comparisons skip them.
const CLOCK_SLACK_SECS: i64 = 2;

/// What must hold of `token` when the verifier accepted it and answered
/// `username`, with `accepted` the contents of the key files it holds:
///
/// - it is three base64url segments, and its signature is HMAC-SHA256 of the
///   first two with one of the accepted keys (checked here, not by jwt-simple);
/// - its header says `"alg": "HS256"`, its claims hold an `exp` that has not
///   passed and the `username` the verifier answered;
/// - a second implementation (`jsonwebtoken`, HS256 only, `exp` required, no
///   leeway) accepts it with that key and reads the same username.
///
/// Returns the decoded token; panics, as a fuzz finding, otherwise.
pub fn check_accepted(token: &str, username: &str, accepted: &[&[u8]]) -> Decoded {
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(
        segments.len(),
        3,
        "accepted a token that is not three segments: {token:?}"
    );
    let signing_input = &token[..segments[0].len() + 1 + segments[1].len()];
    let signature = LENIENT.decode(segments[2]).unwrap_or_else(|e| {
        panic!("accepted a token whose signature is not base64url ({e}): {token:?}")
    });
    let signed_by = accepted
        .iter()
        .position(|key| hmac_sha256::HMAC::mac(signing_input.as_bytes(), key)[..] == signature[..])
        .unwrap_or_else(|| panic!("accepted a token no accepted key signed: {token:?}"));
    let key = accepted[signed_by];

    let header = decode_segment(segments[0])
        .unwrap_or_else(|| panic!("accepted a token whose header is not a JSON object: {token:?}"));
    assert_eq!(
        header.get("alg"),
        Some(&Value::from("HS256")),
        "accepted a non-HS256 token: {token:?}"
    );
    let claims = decode_segment(segments[1]).unwrap_or_else(|| {
        panic!("accepted a token whose claims are not a JSON object: {token:?}")
    });
    // NumericDate is any JSON number (RFC 7519, section 2), not only whole
    // seconds: jwt-simple and PyJWT take a fraction too.
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("accepted a token without a numeric exp: {token:?}"));
    let now = now_secs() as f64;
    assert!(
        exp > now - CLOCK_SLACK_SECS as f64,
        "accepted an expired token: {token:?}"
    );
    assert_eq!(
        claims.get("username"),
        Some(&Value::from(username)),
        "the verifier answered a username the token does not hold: {token:?}"
    );

    // jsonwebtoken reads only whole seconds; for other times its refusal
    // says nothing.
    let whole_seconds = ["exp", "nbf", "iat"]
        .iter()
        .all(|name| claims.get(*name).is_none_or(Value::is_u64));
    if (exp - now).abs() > CLOCK_SLACK_SECS as f64
        && whole_seconds
        && jsonwebtoken_reads_header(&header)
    {
        let other = decode_with_jsonwebtoken(token, key)
            .unwrap_or_else(|e| panic!("accepted a token jsonwebtoken refuses ({e}): {token:?}"));
        assert_eq!(
            other.get("username"),
            Some(&Value::from(username)),
            "jsonwebtoken reads another username: {token:?}"
        );
    }
    Decoded {
        header,
        claims,
        signed_by,
    }
}

/// What must hold of a token the creator issued for `username` with the key
/// in `key_file_contents` and a lifetime of `ttl_secs`: the header names
/// HS256 and the key's id, `exp - iat` is the lifetime, `iat` is now, and
/// `jsonwebtoken` decodes it to the same username.
pub fn check_issued(token: &str, username: &str, key_file_contents: &[u8], ttl_secs: u64) {
    let decoded = check_accepted(token, username, &[key_file_contents]);
    // `alg` is HS256: check_accepted asserts it of every token.
    let header = &decoded.header;
    assert_eq!(header.get("typ"), Some(&Value::from("JWT")), "{token}");
    assert_eq!(
        header.get("kid"),
        Some(&Value::from(expected_kid(key_file_contents))),
        "issued a token with the wrong key id: {token}"
    );
    let claim = |name: &str| {
        decoded
            .claims
            .get(name)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("issued a token without a numeric {name}: {token}"))
    };
    let (iat, exp) = (claim("iat"), claim("exp"));
    assert_eq!(
        exp - iat,
        ttl_secs as i64,
        "exp - iat is not the lifetime: {token}"
    );
    assert!(
        (iat - now_secs()).abs() <= CLOCK_SLACK_SECS,
        "iat is not now: {token}"
    );
    let names: Vec<&str> = decoded.claims.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["exp", "iat", "username"],
        "claims beyond the contract's: {token}"
    );
}

/// Whether `jsonwebtoken` can read this header at all: it types some header
/// parameters more narrowly than RFC 7515 (private parameters must be
/// strings; `jwk`, `enc`, `zip`, `url` and `nonce` have fixed shapes), so
/// for other headers its refusal says nothing about the token.
pub fn jsonwebtoken_reads_header(header: &Map<String, Value>) -> bool {
    const TYPED_ALIKE: [&str; 10] = [
        "typ", "alg", "cty", "jku", "kid", "x5u", "x5c", "x5t", "x5t#S256", "crit",
    ];
    const NARROW: [&str; 5] = ["jwk", "enc", "zip", "url", "nonce"];
    header.iter().all(|(name, value)| {
        TYPED_ALIKE.contains(&name.as_str())
            || (!NARROW.contains(&name.as_str()) && value.is_string())
    })
}

/// Decodes `token` with the `jsonwebtoken` crate, configured as strictly as
/// PyJWT's defaults and our verifier: HS256 only, `exp` required and checked
/// with no leeway, `nbf` checked when present, no audience required.
pub fn decode_with_jsonwebtoken(
    token: &str,
    key_file_contents: &[u8],
) -> Result<Map<String, Value>, String> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Map<String, Value>>(
        token,
        &DecodingKey::from_secret(key_file_contents),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|e| e.to_string())
}
