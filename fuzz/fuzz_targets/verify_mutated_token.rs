//! Structure-aware mutations of valid tokens: a token issued for an
//! arbitrary username with arbitrary keys, then its header and claims edited
//! as JSON (`alg`, `kid`, `typ`, `crit`, `exp`, `nbf`, `aud`, the username,
//! anything), its segments replaced or its bytes flipped, and optionally
//! signed again with an accepted key or another one.
//!
//! Properties, on every input:
//! - for any key, username and lifetime, what the creator signs our verifier
//!   accepts, and `jsonwebtoken` decodes it to the same header and claims
//!   (`check_issued`);
//! - the verifier accepts a token only if an accepted key signed it (separate
//!   HMAC check), it is HS256, not expired, and its `kid`, if any, names the
//!   key that signed it; a token nobody signed again after the mutations
//!   must decode to exactly the original header and claims;
//! - where `jsonwebtoken`, given the key the token's `kid` names, accepts a
//!   token that is ours by contract (a string username, within our size
//!   limit) and not about to expire, our verifier accepts it too, unless a
//!   documented rule of ours refuses it (`typ`, `crit`, mistyped registered
//!   claims, an `aud` naming someone: `token::check_refused_hs256`).
//!
//! Inputs are `arbitrary`-structured, not tokens, so this target has no
//! seeds; the raw-token seeds (including the CI input with `"aud": []`,
//! re-signed with a seed key) are `verify_token`'s, which runs the same
//! differential.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use token_contract::token::MAX_TOKEN_LEN;
use token_contract::{TokenError, issue, verify, verify_with_keys};
use token_service_fuzz::keys::{KeyBytes, expected_kid};
use token_service_fuzz::now_secs;
use token_service_fuzz::token::{
    b64url, check_accepted, check_issued, check_refused_hs256, decode_segment, encode_segment,
    hs256_sign,
};

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Current,
    Previous,
    Other(KeyBytes),
}

#[derive(Arbitrary, Debug)]
enum Field {
    Alg,
    Kid,
    Typ,
    Crit,
    Username,
    Exp,
    Iat,
    Nbf,
    Aud,
    Other(String),
}

impl Field {
    fn name(&self) -> &str {
        match self {
            Field::Alg => "alg",
            Field::Kid => "kid",
            Field::Typ => "typ",
            Field::Crit => "crit",
            Field::Username => "username",
            Field::Exp => "exp",
            Field::Iat => "iat",
            Field::Nbf => "nbf",
            Field::Aud => "aud",
            Field::Other(name) => name,
        }
    }
}

/// A JSON value, biased towards the ones that matter in a JWT.
#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Now, plus or minus a little: `exp`, `nbf` and `iat` around the present.
    NearNow(i16),
    CurrentKid,
    PreviousKid,
    Alg(Alg),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

#[derive(Arbitrary, Debug)]
enum Alg {
    Hs256,
    Hs384,
    Hs512,
    None,
    Rs256,
    LowercaseHs256,
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    SetHeader(Field, Json),
    RemoveHeader(Field),
    SetClaim(Field, Json),
    RemoveClaim(Field),
}

#[derive(Arbitrary, Debug)]
enum Text {
    HeaderJson(String),
    ClaimsJson(String),
    Segment(u8, String),
    AddSegment(String),
}

#[derive(Arbitrary, Debug)]
enum Bytes {
    Flip(u16, u8),
    Truncate(u16),
    Append(String),
    DropSignature,
}

#[derive(Arbitrary, Debug)]
struct Input {
    current: KeyBytes,
    previous: Option<KeyBytes>,
    signer: Signer,
    username: String,
    ttl_secs: u16,
    /// Sign as the reference Go creator does: no `kid`.
    without_kid: bool,
    mutations: Vec<Mutation>,
    texts: Vec<Text>,
    resign: Option<Signer>,
    bytes: Vec<Bytes>,
}

struct Keys {
    current: KeyBytes,
    previous: Option<KeyBytes>,
}

impl Keys {
    fn bytes(&self, signer: Signer) -> Vec<u8> {
        match signer {
            Signer::Current => self.current.file_contents(),
            // Without a previous key, "previous" is just another key.
            Signer::Previous => self
                .previous
                .unwrap_or(KeyBytes([0xee; 64]))
                .file_contents(),
            Signer::Other(key) => key.file_contents(),
        }
    }

    fn accepts(&self, signer: Signer) -> bool {
        let bytes = self.bytes(signer);
        bytes == self.current.file_contents()
            || self.previous.is_some_and(|p| p.file_contents() == bytes)
    }

    fn accepted(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.current)
            .chain(self.previous)
            .map(|k| k.file_contents())
            .collect()
    }
}

impl Json {
    fn value(&self, keys: &Keys, depth: u8) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::from(*b),
            Json::Int(i) => Value::from(*i),
            Json::Float(f) => Value::from(*f),
            Json::Str(s) => Value::from(s.as_str()),
            Json::NearNow(delta) => Value::from(now_secs() + i64::from(*delta)),
            Json::CurrentKid => Value::from(expected_kid(&keys.bytes(Signer::Current))),
            Json::PreviousKid => Value::from(expected_kid(&keys.bytes(Signer::Previous))),
            Json::Alg(alg) => Value::from(match alg {
                Alg::Hs256 => "HS256",
                Alg::Hs384 => "HS384",
                Alg::Hs512 => "HS512",
                Alg::None => "none",
                Alg::Rs256 => "RS256",
                Alg::LowercaseHs256 => "hs256",
            }),
            _ if depth > 4 => Value::Null,
            Json::Array(items) => items.iter().map(|j| j.value(keys, depth + 1)).collect(),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, j)| (k.clone(), j.value(keys, depth + 1)))
                    .collect(),
            ),
        }
    }
}

fn set(object: &mut Map<String, Value>, field: &Field, value: Value) {
    object.insert(field.name().to_owned(), value);
}

fuzz_target!(|input: Input| {
    let keys = Keys {
        current: input.current,
        previous: input.previous,
    };
    // Issue times are whole seconds, so a token lives between ttl - 1 and
    // ttl seconds: at 1 s it may be expired by the time it is checked.
    let ttl = u64::from(input.ttl_secs.max(3));
    let signer_bytes = keys.bytes(input.signer);
    let signer_key = token_contract::SigningKey::from_file_contents(&signer_bytes).expect("key");

    // 1. What the creator signs, for any key, username and lifetime.
    let issued = issue(
        &signer_key,
        &input.username,
        std::time::Duration::from_secs(ttl),
    )
    .expect("HS256 signing cannot fail");
    if issued.len() > MAX_TOKEN_LEN {
        return; // the creator refuses to hand these out (a 400)
    }
    assert_eq!(
        verify(&signer_key, &issued).as_deref(),
        Ok(input.username.as_str())
    );
    check_issued(&issued, &input.username, &signer_bytes, ttl);

    // 2. The token to mutate: the issued one, or the same claims signed as
    // the reference Go creator signs them, without `kid`.
    let segments: Vec<&str> = issued.split('.').collect();
    let mut header = decode_segment(segments[0]).expect("our header is JSON");
    let mut claims = decode_segment(segments[1]).expect("our claims are JSON");
    if input.without_kid {
        header.remove("kid");
    }
    let original = (header.clone(), claims.clone());
    let mut token = if input.without_kid {
        let signing_input = format!("{}.{}", encode_segment(&header), segments[1]);
        let signature = hs256_sign(&signer_bytes, &signing_input);
        format!("{signing_input}.{signature}")
    } else {
        issued.clone()
    };

    // 3. Edits of the header and claims as JSON.
    if !input.mutations.is_empty() {
        for mutation in &input.mutations {
            match mutation {
                Mutation::SetHeader(field, json) => set(&mut header, field, json.value(&keys, 0)),
                Mutation::RemoveHeader(field) => _ = header.remove(field.name()),
                Mutation::SetClaim(field, json) => set(&mut claims, field, json.value(&keys, 0)),
                Mutation::RemoveClaim(field) => _ = claims.remove(field.name()),
            }
        }
        let signature = token.rsplit('.').next().unwrap_or_default().to_owned();
        token = format!(
            "{}.{}.{signature}",
            encode_segment(&header),
            encode_segment(&claims)
        );
    }
    // 4. Segments replaced as text.
    for text in &input.texts {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        match text {
            Text::HeaderJson(json) => parts[0] = b64url(json.as_bytes()),
            Text::ClaimsJson(json) if parts.len() > 1 => parts[1] = b64url(json.as_bytes()),
            Text::Segment(index, segment) => {
                let index = usize::from(*index) % parts.len();
                parts[index] = segment.clone();
            }
            Text::AddSegment(segment) => parts.push(segment.clone()),
            Text::ClaimsJson(_) => {}
        }
        token = parts.join(".");
    }
    // 5. Signed again, by an accepted key or not.
    if let Some(resigner) = input.resign {
        let signing_input = match token.rsplit_once('.') {
            Some((signing_input, _)) => signing_input.to_owned(),
            None => token.clone(),
        };
        let signature = hs256_sign(&keys.bytes(resigner), &signing_input);
        token = format!("{signing_input}.{signature}");
    }
    // 6. Bytes damaged.
    for damage in &input.bytes {
        let mut bytes = token.into_bytes();
        match damage {
            Bytes::Flip(index, xor) if !bytes.is_empty() => {
                let index = usize::from(*index) % bytes.len();
                bytes[index] ^= xor;
            }
            Bytes::Flip(..) => {}
            Bytes::Truncate(len) => bytes.truncate(usize::from(*len)),
            Bytes::Append(tail) => bytes.extend_from_slice(tail.as_bytes()),
            Bytes::DropSignature => {
                if let Some(dot) = bytes.iter().rposition(|&b| b == b'.') {
                    bytes.truncate(dot + 1);
                }
            }
        }
        token = String::from_utf8_lossy(&bytes).into_owned();
    }

    // 7. What the verifier makes of it.
    let current = keys.current.signing_key();
    let previous = keys.previous.map(|p| p.signing_key());
    let accepted_bytes = keys.accepted();
    let accepted: Vec<&[u8]> = accepted_bytes.iter().map(Vec::as_slice).collect();
    match verify_with_keys(&current, || Ok(previous), &token) {
        Ok(username) => {
            let decoded = check_accepted(&token, &username, &accepted);
            let signed_by = accepted[decoded.signed_by];
            // A `kid` of null is no `kid` (jwt-simple and jsonwebtoken both
            // read it so); any other must name the key that signed.
            if let Some(kid) = decoded.header.get("kid").filter(|kid| !kid.is_null()) {
                assert_eq!(
                    kid,
                    &Value::from(expected_kid(signed_by)),
                    "accepted a token whose kid names another key than the one that signed it"
                );
            }
            let resigned_by_accepted = input.resign.is_some_and(|s| keys.accepts(s));
            if !resigned_by_accepted {
                assert_eq!(
                    (&decoded.header, &decoded.claims),
                    (&original.0, &original.1),
                    "a mutated token nobody signed again verified with other contents: {token:?}"
                );
            }
        }
        Err(TokenError::Invalid(why)) => {
            assert!(!why.is_empty());
            check_refused_hs256(&token, &why, &accepted);
        }
        Err(other) => panic!("a server fault for a client's token: {other:?}"),
    }
});
