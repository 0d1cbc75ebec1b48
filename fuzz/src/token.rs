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
pub const CLOCK_SLACK_SECS: i64 = 2;

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
    assert!(
        names_no_audience(&claims),
        "accepted a token naming an audience, with none configured: {token:?}"
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
    check_lifetime(&decoded.claims, token, ttl_secs);
    let names: Vec<&str> = decoded.claims.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["exp", "iat", "username"],
        "claims beyond the contract's: {token}"
    );
}

/// What every issued token carries, whatever its algorithm: integer `iat`
/// and `exp`, `exp - iat` the lifetime, `iat` now.
pub fn check_lifetime(claims: &Map<String, Value>, token: &str, ttl_secs: u64) {
    let claim = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("issued a token without an integer {name}: {token}"))
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

/// Whether a token's `aud` names no one: absent, `null`, `""` or `[]`.
///
/// A verifier configured with no audience refuses a token whose `aud` names
/// someone (it was meant for someone else). That is PyJWT's rule (its
/// `_validate_aud`: `if "aud" not in payload or not payload["aud"]:
/// return`), so the reference verifier's, and ours. jsonwebtoken, asked to
/// check `aud` without an audience, refuses any `aud` it can parse, even
/// `[]` and `""` (its `validate`: `(Parsed(_), None) => InvalidAudience`):
/// the differential therefore switches its audience check off when no
/// audience is configured and checks this rule here instead.
pub fn names_no_audience(claims: &Map<String, Value>) -> bool {
    match claims.get("aud") {
        None | Some(Value::Null) => true,
        Some(Value::String(one)) => one.is_empty(),
        Some(Value::Array(many)) => many.is_empty(),
        Some(_) => false,
    }
}

/// Decodes `token` with the `jsonwebtoken` crate, configured as strictly as
/// PyJWT's defaults and our verifier: HS256 only, `exp` required and checked
/// with no leeway, `nbf` checked when present, no audience required (and
/// its `aud` check off: see [`names_no_audience`]).
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

/// Tokens we refuse on purpose where `jsonwebtoken` (configured by
/// [`decode_with_jsonwebtoken`]) accepts them, the reason if any:
/// - a `typ` other than `JWT` or `…+JWT` (any case), which jwt-simple refuses
///   as not a JWT (explicit typing, RFC 8725 section 3.11; PyJWT ignores it);
/// - a `crit` header: RFC 7515 (section 4.1.11) requires refusing a token
///   whose critical extensions the recipient does not understand, and we
///   understand none (jsonwebtoken ignores `crit`);
/// - registered claims of another type than RFC 7519 gives them (`iat`,
///   `nbf`, `exp` whole seconds; `iss`, `sub`, `jti` strings; `aud` a string
///   or strings), which jwt-simple refuses to parse and jsonwebtoken does not
///   read unless asked to check them (PyJWT refuses such `iat` and `aud`);
/// - an `aud` that names someone, with no audience configured: refused by
///   us and PyJWT, and by jsonwebtoken too when its audience check is on,
///   which it is not here ([`names_no_audience`]);
/// - a header or claims set that names a member twice: jwt-simple refuses
///   it, jsonwebtoken takes the last value (RFC 7515 and 7519 allow both);
/// - a `salt` header, jwt-simple's own parameter (it binds a token to a
///   salted HMAC key): our keys have no salt, so jwt-simple refuses every
///   HS256 token that carries one ("Missing salt"); PyJWT and jsonwebtoken
///   ignore it as an unknown parameter. No creator of this contract sets
///   it (found while giving `verify_token` this differential);
/// - a `jwk` header that is a JSON object, as RFC 7515 (4.1.3) has it:
///   jwt-simple types `jwk` as a string and refuses the header as malformed
///   (jsonwebtoken reads the object, PyJWT ignores it). A token that brings
///   its own key is refused anyway by our EdDSA and ES256 verifiers.
pub fn hs256_stricter_by_design(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    duplicates: bool,
) -> Option<&'static str> {
    let odd_typ = header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|typ| {
            let typ = typ.to_uppercase();
            typ != "JWT" && !typ.ends_with("+JWT")
        });
    let odd_claim = |name: &str, ok: fn(&Value) -> bool| claims.get(name).is_some_and(|v| !ok(v));
    let seconds = |v: &Value| v.is_u64();
    let string = |v: &Value| v.is_string();
    let audience = |v: &Value| match v {
        Value::Array(items) => items.iter().all(Value::is_string),
        other => other.is_string(),
    };
    if duplicates {
        Some("duplicate member")
    } else if odd_typ {
        Some("typ")
    } else if header.contains_key("crit") {
        Some("crit")
    } else if header.contains_key("salt") {
        Some("salt")
    } else if header
        .get("jwk")
        .is_some_and(|jwk| !jwk.is_null() && !jwk.is_string())
    {
        Some("jwk object")
    } else if odd_claim("iat", seconds)
        || odd_claim("nbf", seconds)
        || odd_claim("exp", seconds)
        || ["iss", "sub", "jti", "nonce"]
            .iter()
            .any(|name| odd_claim(name, string))
        || odd_claim("aud", audience)
    {
        Some("mistyped registered claim")
    } else if !names_no_audience(claims) {
        Some("aud names an audience")
    } else {
        None
    }
}

/// The differential the other way, for a token our HS256 verifier refused
/// (`why`) with the keys whose files are `accepted`: if `jsonwebtoken`
/// accepts it with the key its `kid` names (or, without `kid`, any accepted
/// key), and it is a token of this contract (a string username, within our
/// size limit), not about to expire and not refused by a documented rule of
/// ours ([`hs256_stricter_by_design`]), that is a finding.
pub fn check_refused_hs256(token: &str, why: &str, accepted: &[&[u8]]) {
    let segments: Vec<&str> = token.split('.').collect();
    let (Some(header), Some(claims)) = (
        segments.first().and_then(|s| decode_segment(s)),
        segments.get(1).and_then(|s| decode_segment(s)),
    ) else {
        return;
    };
    let username_is_string = claims.get("username").is_some_and(Value::is_string);
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if !username_is_string
        || token.len() > token_contract::token::MAX_TOKEN_LEN
        // Any i64 (a `-9223372036854775808` exp is a fuzz input like another).
        || exp.abs_diff(now_secs()) <= CLOCK_SLACK_SECS.unsigned_abs()
    {
        return;
    }
    let duplicates = segments[..2].iter().any(|segment| {
        LENIENT
            .decode(segment)
            .is_ok_and(|json| crate::published::has_duplicate_members(&json))
    });
    if hs256_stricter_by_design(&header, &claims, duplicates).is_some() {
        return;
    }
    let kid = header.get("kid").map(|kid| kid.as_str().map(str::to_owned));
    let candidates: Vec<&[u8]> = match &kid {
        None => accepted.to_vec(),
        Some(Some(kid)) => accepted
            .iter()
            .copied()
            .filter(|k| expected_kid(k) == *kid)
            .collect(),
        Some(None) => Vec::new(), // a kid that is not a string names no key
    };
    for key in candidates {
        if let Ok(claims) = decode_with_jsonwebtoken(token, key) {
            panic!("jsonwebtoken accepts a token we refuse ({why}), claims {claims:?}: {token:?}");
        }
    }
}
