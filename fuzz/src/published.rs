//! Independent checks of EdDSA and ES256 tokens, the ones verified against a
//! published JWK Set: what a token the verifier accepted, or the creator
//! issued, must be, judged without the code under test (keys and signatures
//! on RustCrypto, the token by `jsonwebtoken`).

use jsonwebtoken::Validation;
use serde_json::{Map, Value};
use token_contract::Algorithm;
use token_contract::token::{ClaimsPolicy, MAX_TOKEN_LEN};

use crate::jwk::{Public, object, thumbprint};
use crate::now_secs;
use crate::token::{check_lifetime, decode_segment, jsonwebtoken_reads_header, names_no_audience};

/// base64url without padding, strictly (as jwt-simple and jsonwebtoken
/// decode signatures).
const STRICT: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Tokens whose `exp` or `nbf` is this close to now may be judged
/// differently by two checks a moment apart (or by jsonwebtoken, which
/// rounds a fraction of a second where jwt-simple truncates it): the same
/// slack as for HS256.
pub const CLOCK_SLACK_SECS: f64 = crate::token::CLOCK_SLACK_SECS as f64;

/// Header parameters that carry or point to a key (RFC 7515, 4.1.2-4.1.6).
pub const KEY_HEADERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// The `alg` values a deployment of `alg` accepts. EdDSA deployments also
/// accept `Ed25519`, the fully-specified name of RFC 9864, which jwt-simple
/// treats as the same algorithm (jsonwebtoken does not know it).
pub fn accepted_alg_names(alg: Algorithm) -> &'static [&'static str] {
    match alg {
        Algorithm::EdDsa => &["EdDSA", "Ed25519"],
        Algorithm::Es256 => &["ES256"],
        Algorithm::Hs256 => &["HS256"],
    }
}

/// A JWK Set read independently: each key's `kid` and public key, for the
/// members that are public keys of `alg` whose `kid` is their thumbprint.
pub fn read_set(alg: Algorithm, json: &str) -> Vec<(String, Public)> {
    let Some(document) = object(json) else {
        return Vec::new();
    };
    let Some(Value::Array(keys)) = document.get("keys") else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(Value::as_object)
        .filter_map(|key| {
            let kid = key.get("kid")?.as_str()?;
            (thumbprint(alg, key)? == kid).then_some(())?;
            Some((kid.to_owned(), Public::from_jwk(alg, key)?))
        })
        .collect()
}

/// The key of `set` named `kid`.
pub fn key_named<'a>(set: &'a [(String, Public)], kid: &str) -> Option<&'a Public> {
    set.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
}

fn jsonwebtoken_algorithm(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
    }
}

/// Decodes `token` with `jsonwebtoken`, configured as our verifier is
/// documented to be: the deployment's algorithm only, `key`, `exp` required
/// and checked with no leeway, `nbf` checked, `iss` and `aud` required and
/// checked when the policy names them. When it names no audience,
/// jsonwebtoken's `aud` check is off: it would refuse every `aud`, even an
/// empty one, where PyJWT and we refuse only one that names someone
/// ([`names_no_audience`], checked by [`check_accepted`] and
/// [`stricter_rule`] instead).
pub fn decode_with_jsonwebtoken(
    token: &str,
    alg: Algorithm,
    key: &Public,
    policy: &ClaimsPolicy,
) -> Result<Map<String, Value>, String> {
    let mut validation = Validation::new(jsonwebtoken_algorithm(alg));
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.validate_aud = policy.audience.is_some();
    let mut required = vec!["exp"];
    if let Some(issuer) = &policy.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    if let Some(audience) = &policy.audience {
        validation.set_audience(&[audience]);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding_key(), &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

/// Whether `value` of an `aud` claim names `audience`.
fn names_audience(value: &Value, audience: &str) -> bool {
    match value {
        Value::String(one) => one == audience,
        Value::Array(many) => many.iter().any(|v| v.as_str() == Some(audience)),
        _ => false,
    }
}

/// A `crit` that asks for nothing: absent, `null` or `[]`. jwt-simple
/// refuses only a non-empty list (RFC 7515 forbids producers the empty
/// list, and lets recipients decide).
pub fn crit_is_empty(header: &Map<String, Value>) -> bool {
    match header.get("crit") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

/// Whether `typ` is absent or says JWT (any case, or a `+JWT` suffix).
pub fn typ_is_jwt(header: &Map<String, Value>) -> bool {
    match header.get("typ") {
        None | Some(Value::Null) => true,
        Some(Value::String(typ)) => {
            let typ = typ.to_uppercase();
            typ == "JWT" || typ.ends_with("+JWT")
        }
        Some(_) => false,
    }
}

/// Whether the header carries a key: a key header with a value. `null` is
/// no value (jwt-simple and jsonwebtoken both read it as absent).
pub fn carries_key(header: &Map<String, Value>) -> bool {
    KEY_HEADERS
        .iter()
        .any(|name| header.get(*name).is_some_and(|v| !v.is_null()))
}

/// Whether a JSON text has an object with a member name twice (compared
/// after unescaping, at any depth). RFC 7515 (section 4) and RFC 7519
/// (section 4) let parsers refuse such a header or claims set, or take the
/// last value: jwt-simple refuses a duplicated parameter it reads, serde_json
/// (and so this crate's `Map`s) and jsonwebtoken's flattened header take the
/// last.
pub fn has_duplicate_members(json: &[u8]) -> bool {
    use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};

    struct Unique;
    impl<'de> Visitor<'de> for Unique {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut duplicate = false;
            while let Some(inner) = seq.next_element_seed(UniqueSeed)? {
                duplicate |= inner;
            }
            Ok(duplicate)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut names = std::collections::HashSet::new();
            let mut duplicate = false;
            while let Some(name) = map.next_key::<String>()? {
                duplicate |= !names.insert(name);
                duplicate |= map.next_value_seed(UniqueSeed)?;
            }
            Ok(duplicate)
        }
    }
    struct UniqueSeed;
    impl<'de> serde::de::DeserializeSeed<'de> for UniqueSeed {
        type Value = bool;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(Unique)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    deserializer.deserialize_any(Unique).unwrap_or(false)
}

/// Whether jsonwebtoken can read the token's `exp` and `nbf`: it takes a
/// NumericDate as a whole number of seconds, or a fraction it rounds, from
/// 0 to 2^64; jwt-simple also takes a larger one (as the largest time) and
/// a negative fraction (as 0). Outside that, its refusal says nothing.
pub fn jsonwebtoken_reads_times(claims: &Map<String, Value>) -> bool {
    ["exp", "nbf"].iter().all(|name| match claims.get(*name) {
        None => true,
        Some(value) => {
            value.is_u64()
                || value
                    .as_f64()
                    .is_some_and(|t| t.is_finite() && t >= 0.0 && t < u64::MAX as f64)
        }
    })
}

/// A token taken apart: its segments decoded, strictly.
#[derive(Debug, Clone)]
pub struct Parts {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub signature: Vec<u8>,
    pub signing_input: String,
    /// Whether the header or the claims name a member twice.
    pub duplicates: bool,
}

impl Parts {
    pub fn of(token: &str) -> Option<Self> {
        use base64::Engine as _;
        let segments: Vec<&str> = token.split('.').collect();
        if segments.len() != 3 {
            return None;
        }
        let duplicates = segments[..2].iter().any(|segment| {
            STRICT
                .decode(segment)
                .is_ok_and(|json| has_duplicate_members(&json))
        });
        Some(Parts {
            header: decode_segment(segments[0])?,
            claims: decode_segment(segments[1])?,
            signature: STRICT.decode(segments[2]).ok()?,
            signing_input: format!("{}.{}", segments[0], segments[1]),
            duplicates,
        })
    }

    fn number(&self, name: &str) -> Option<f64> {
        self.claims.get(name).and_then(Value::as_f64)
    }

    /// Whether `exp` or `nbf` is so close to now that checks a moment apart
    /// may disagree.
    pub fn near_now(&self) -> bool {
        let now = now_secs() as f64;
        ["exp", "nbf"].iter().any(|name| {
            self.number(name)
                .is_some_and(|t| (t - now).abs() <= CLOCK_SLACK_SECS + 1.0)
        })
    }
}

/// What must hold of `token` when a verifier of `alg` with the JWK Set
/// `set` (read by [`read_set`]) and `policy` accepted it and answered
/// `username`:
///
/// - three segments, in strict base64url;
/// - `alg` the deployment's ([`accepted_alg_names`]), a `kid` naming a key of
///   the set, no key in the header, `typ` JWT, no critical extension;
/// - the signature is that key's over the first two segments (checked on
///   RustCrypto), and for ES256 `r || s` with `s` low;
/// - claims: the `username` answered, an `exp` not passed, an `nbf` passed,
///   `iss` and `aud` those of the policy when it names them, and an `aud`
///   that names no one when it names none (`""` and `[]` are PyJWT's no
///   audience, and ours);
/// - jsonwebtoken accepts it with that key and reads the same username,
///   unless it cannot read the header or the token's times are about now.
pub fn check_accepted(
    token: &str,
    username: &str,
    alg: Algorithm,
    set: &[(String, Public)],
    policy: &ClaimsPolicy,
) -> Parts {
    let parts = Parts::of(token)
        .unwrap_or_else(|| panic!("accepted a token that is not three strict segments: {token:?}"));
    let header = &parts.header;
    let header_alg = header.get("alg").and_then(Value::as_str);
    assert!(
        header_alg.is_some_and(|a| accepted_alg_names(alg).contains(&a)),
        "a {alg} verifier accepted a token of alg {header_alg:?}: {token:?}"
    );
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("accepted a token without a string kid: {token:?}"));
    let key = key_named(set, kid).unwrap_or_else(|| {
        panic!("accepted a token whose kid {kid:?} is not in the set: {token:?}")
    });
    assert!(
        !carries_key(header),
        "accepted a token that carries a key: {token:?}"
    );
    assert!(
        typ_is_jwt(header),
        "accepted a token of another typ: {token:?}"
    );
    assert!(
        crit_is_empty(header),
        "accepted a token with a critical extension: {token:?}"
    );
    if alg == Algorithm::Es256 {
        assert_eq!(
            parts.signature.len(),
            64,
            "ES256 signature length: {token:?}"
        );
    }
    assert!(
        key.verifies(parts.signing_input.as_bytes(), &parts.signature),
        "accepted a token the key its kid names did not sign (RustCrypto): {token:?}"
    );

    let claims = &parts.claims;
    assert_eq!(
        claims.get("username"),
        Some(&Value::from(username)),
        "the verifier answered a username the token does not hold: {token:?}"
    );
    let now = now_secs() as f64;
    let exp = parts
        .number("exp")
        .unwrap_or_else(|| panic!("accepted a token without a numeric exp: {token:?}"));
    assert!(
        exp > now - CLOCK_SLACK_SECS,
        "accepted an expired token: {token:?}"
    );
    if let Some(nbf) = claims.get("nbf").filter(|v| !v.is_null()) {
        let nbf = nbf
            .as_f64()
            .unwrap_or_else(|| panic!("accepted a non-numeric nbf: {token:?}"));
        assert!(
            nbf < now + CLOCK_SLACK_SECS,
            "accepted a token not valid yet: {token:?}"
        );
    }
    if let Some(issuer) = &policy.issuer {
        assert_eq!(
            claims.get("iss"),
            Some(&Value::from(issuer.as_str())),
            "accepted a token of another issuer: {token:?}"
        );
    }
    let aud = claims.get("aud").filter(|v| !v.is_null());
    match &policy.audience {
        Some(audience) => assert!(
            aud.is_some_and(|aud| names_audience(aud, audience)),
            "accepted a token for another audience: {token:?}"
        ),
        None => assert!(
            names_no_audience(claims),
            "accepted a token naming an audience, with none configured: {token:?}"
        ),
    }

    // jsonwebtoken does not know `Ed25519` as an alg, and types some header
    // parameters more narrowly; then its refusal says nothing.
    if header_alg == Some(alg.name())
        && jsonwebtoken_reads_header(header)
        && jsonwebtoken_reads_times(claims)
        && !parts.duplicates
        && !parts.near_now()
    {
        let other = decode_with_jsonwebtoken(token, alg, key, policy)
            .unwrap_or_else(|e| panic!("accepted a token jsonwebtoken refuses ({e}): {token:?}"));
        assert_eq!(
            other.get("username"),
            Some(&Value::from(username)),
            "jsonwebtoken reads another username: {token:?}"
        );
    }
    parts
}

/// What must hold of a token the creator of `alg` issued for `username`
/// with `key` (kid `kid`), a lifetime of `ttl_secs` and `policy`: header
/// exactly `{"alg", "typ": "JWT", "kid"}`, claims exactly `username`,
/// `iat` (now), `exp` (`iat` + lifetime) and the policy's `iss` and `aud`,
/// signed by the key (low-S for ES256) and accepted by jsonwebtoken.
pub fn check_issued(
    token: &str,
    username: &str,
    alg: Algorithm,
    kid: &str,
    key: &Public,
    ttl_secs: u64,
    policy: &ClaimsPolicy,
) {
    let set = [(kid.to_owned(), key.clone())];
    let parts = check_accepted(token, username, alg, &set, policy);
    let mut expected_header = Map::new();
    expected_header.insert("alg".into(), Value::from(alg.name()));
    expected_header.insert("typ".into(), Value::from("JWT"));
    expected_header.insert("kid".into(), Value::from(kid));
    assert_eq!(parts.header, expected_header, "issued header: {token}");
    check_lifetime(&parts.claims, token, ttl_secs);
    let mut names: Vec<&str> = parts.claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = vec!["exp", "iat", "username"];
    if policy.issuer.is_some() {
        expected.push("iss");
    }
    if policy.audience.is_some() {
        expected.push("aud");
    }
    expected.sort_unstable();
    assert_eq!(names, expected, "issued claims: {token}");
    if let Some(audience) = &policy.audience {
        assert_eq!(
            parts.claims["aud"],
            Value::from(audience.as_str()),
            "{token}"
        );
    }
}

/// Why a token is refused by our documented rules that jsonwebtoken does not
/// have, if it is (`None`: by those rules it should be accepted whenever
/// jsonwebtoken accepts it):
///
/// - `alg` must be the deployment's, and the `kid` a string naming a key of
///   the set (jsonwebtoken is given that key: it has no key sets);
/// - no `jwk`, `jku`, `x5u` or `x5c` (jsonwebtoken reads and ignores them);
/// - `typ` JWT and no critical extension, registered claims of their RFC
///   7519 types, a string `username`, within 8 KiB (as for HS256,
///   docs/fuzzing.md);
/// - jwt-simple's `salt` header, when not base64url, is refused by it;
/// - a header or claims set that names a member twice (jwt-simple refuses
///   it, jsonwebtoken takes the last value; RFC 7515 allows both);
/// - with no audience configured, an `aud` that names someone (PyJWT's rule
///   and ours; jsonwebtoken's audience check is then off, see
///   [`decode_with_jsonwebtoken`]).
pub fn stricter_rule(
    alg: Algorithm,
    set: &[(String, Public)],
    token: &str,
    parts: &Parts,
    policy: &ClaimsPolicy,
) -> Option<&'static str> {
    let header = &parts.header;
    let claims = &parts.claims;
    if parts.duplicates {
        return Some("duplicate member");
    }
    if header.get("alg").and_then(Value::as_str) != Some(alg.name()) {
        return Some("alg");
    }
    match header.get("kid").and_then(Value::as_str) {
        Some(kid) if key_named(set, kid).is_some() => {}
        _ => return Some("kid"),
    }
    if carries_key(header) {
        return Some("key in header");
    }
    if !typ_is_jwt(header) || !crit_is_empty(header) {
        return Some("typ or crit");
    }
    if header.get("salt").is_some_and(|salt| {
        use base64::Engine as _;
        salt.as_str().is_none_or(|s| STRICT.decode(s).is_err())
    }) {
        return Some("salt");
    }
    if token.len() > MAX_TOKEN_LEN || !claims.get("username").is_some_and(Value::is_string) {
        return Some("not a token of this contract");
    }
    // NumericDate: a JSON number; jwt-simple refuses negative integers,
    // and `null` for a time or an audience (jsonwebtoken reads `null` as
    // absent); `null` is absent for the string claims of both.
    let time = |v: &Value| v.is_u64() || v.is_f64();
    let string = |v: &Value| v.is_string() || v.is_null();
    let audience = |v: &Value| match v {
        Value::Array(items) => items.iter().all(Value::is_string),
        other => other.is_string(),
    };
    let odd = |name: &str, ok: &dyn Fn(&Value) -> bool| claims.get(name).is_some_and(|v| !ok(v));
    if odd("iat", &time)
        || odd("nbf", &time)
        || odd("exp", &time)
        || ["iss", "sub", "jti", "nonce"]
            .iter()
            .any(|name| odd(name, &string))
        || odd("aud", &audience)
    {
        return Some("mistyped registered claim");
    }
    if policy.audience.is_none() && !names_no_audience(claims) {
        return Some("aud names an audience");
    }
    None
}
