//! Tokens against an EdDSA or ES256 deployment (`verify_published`): a set of
//! one to three keys derived from arbitrary or the seed key files, the
//! deployment's issuer and audience or none, and tokens made to attack it.
//!
//! One input is a flags byte, then the token as raw bytes (seeded by
//! `fuzz/seeds.py` with PyJWT-made tokens of the seed keys, including the
//! HS256 confusion attacks) or a structured description (`arbitrary`):
//! a token issued by a key of the set, a key outside it or a key of the
//! other algorithm, then
//! - header edits: `alg` (the other algorithm, HS256, `none`, `Ed25519`,
//!   ...), `kid` (another key's, unknown, removed, `null`, a number), `jwk`,
//!   `jku`, `x5u`, `x5c` added (an attacker's JWK, URLs, `null`), `typ`,
//!   `crit`, any parameter, raw duplicates;
//! - claim edits: `exp`, `nbf`, `iat`, `iss`, `aud`, `username`, ... of any
//!   type, times around now, the deployment's issuer and audience;
//! - signed again: by a key of the set, outside it or of the other
//!   algorithm (ES256 in low- or high-S form), as HS256 with an HMAC keyed
//!   by the public key (raw, compressed, its JWK, the JWK Set, PEM, `x`),
//!   by the HS256 key file, or not at all;
//! - the signature's bytes flipped, cut, lengthened, replaced, made high-S;
//!   segments replaced or added, characters flipped.
//!
//! ```text
//! byte 0: bit 0     EdDSA (0) or ES256 (1)
//!         bit 1     raw (0): the rest is the token, checked against the seed
//!                   deployment (the seed current and previous keys);
//!                   structured (1): `Input`
//!         bits 2-3  raw only: the policy: none, issuer, audience, both
//! ```
//!
//! Properties:
//! - no panic; a refusal is always `Invalid` with a reason (the set is good);
//! - what the creator issues (`issue_with`) is accepted, by us and by
//!   jsonwebtoken, with the exact header and claims (`published::check_issued`);
//! - an accepted token has the deployment's `alg`, a `kid` of the set, no
//!   key in its header, a low-S signature for ES256, that key's signature
//!   (RustCrypto), an `exp` not passed, the policy's `iss` and `aud`, and
//!   jsonwebtoken accepts it too (`published::check_accepted`); a token no
//!   key of the set signed again decodes to its original header and claims;
//! - the differential the other way: a token jsonwebtoken accepts with the
//!   key its `kid` names, that our documented stricter rules allow
//!   (`published::stricter_rule`), we accept too.

#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use token_contract::token::{
    ClaimsPolicy, IssuingKey, MAX_TOKEN_LEN, issue_with, verify_published,
};
use token_contract::{Algorithm, PrivateKey, PublicKeySet, TokenError};
use token_service_fuzz::jwk::{SForm, Signing, high_s, object, other_of};
use token_service_fuzz::keys::{
    KeyBytes, SEED_CURRENT_KEY, SEED_PREVIOUS_KEY, derived, expected_kid,
};
use token_service_fuzz::now_secs;
use token_service_fuzz::published::{
    Parts, check_accepted, check_issued, decode_with_jsonwebtoken, jsonwebtoken_reads_times,
    key_named, read_set, stricter_rule,
};
use token_service_fuzz::token::{
    b64url, decode_segment, encode_segment, jsonwebtoken_reads_header,
};

/// The deployment's `iss` and `aud` when its policy has them (the seeds use
/// the same).
const ISSUER: &str = "https://tokens.example";
const AUDIENCE: &str = "api";

fn policy(bits: u8) -> ClaimsPolicy {
    ClaimsPolicy {
        issuer: (bits & 1 != 0).then(|| ISSUER.to_owned()),
        audience: (bits & 2 != 0).then(|| AUDIENCE.to_owned()),
    }
}

/// A deployment: its algorithm, keys (the private halves, for making
/// tokens), their set, and the policy.
struct Deployment {
    alg: Algorithm,
    key_files: Vec<Vec<u8>>,
    keys: Vec<PrivateKey>,
    set: PublicKeySet,
    policy: ClaimsPolicy,
}

impl Deployment {
    fn new(alg: Algorithm, key_files: Vec<Vec<u8>>, policy: ClaimsPolicy) -> Self {
        let keys: Vec<PrivateKey> = key_files.iter().map(|f| derived(alg, f)).collect();
        Self::of(alg, key_files, keys, policy)
    }

    /// The seed deployment (the seed current and previous keys), derived
    /// once per algorithm for the run.
    fn seed(alg: Algorithm, policy: ClaimsPolicy) -> Self {
        thread_local! {
            static SEED_KEYS: std::cell::RefCell<Vec<(Algorithm, Vec<PrivateKey>)>> =
                const { std::cell::RefCell::new(Vec::new()) };
        }
        let files = vec![SEED_CURRENT_KEY.to_vec(), SEED_PREVIOUS_KEY.to_vec()];
        let keys = SEED_KEYS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((_, keys)) = cache.iter().find(|(a, _)| *a == alg) {
                return keys.clone();
            }
            let keys: Vec<PrivateKey> = files.iter().map(|f| derived(alg, f)).collect();
            cache.push((alg, keys.clone()));
            keys
        });
        Self::of(alg, files, keys, policy)
    }

    fn of(
        alg: Algorithm,
        key_files: Vec<Vec<u8>>,
        keys: Vec<PrivateKey>,
        policy: ClaimsPolicy,
    ) -> Self {
        let set = PublicKeySet::from_keys(&keys);
        Deployment {
            alg,
            key_files,
            keys,
            set,
            policy,
        }
    }
}

// ---- structured inputs ----

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Signer {
    /// Key `n` of the set.
    InSet(u8),
    /// A key of the deployment's algorithm outside the set.
    Outsider(KeyBytes),
    /// Key `n`'s key file, derived for the other algorithm.
    OtherAlgorithm(u8),
}

#[derive(Arbitrary, Debug)]
enum AlgName {
    Deployment,
    Other,
    Hs256,
    None,
    NoneCapital,
    Ed25519,
    Es384,
    Hs512,
    Rs256,
    Lowercase,
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Now plus or minus a little.
    NearNow(i16),
    /// Now plus the value as a fraction of a second.
    FractionNearNow(i16, u8),
    Issuer,
    Audience,
    /// The kid of key `n` of the set, an outsider's, the other algorithm's.
    KidInSet(u8),
    KidOtherAlgorithm(u8),
    /// The HS256 key id of key `n`'s key file.
    Hs256Kid(u8),
    /// A public JWK, as an object or as a string: key `n`'s, an outsider's.
    PublicJwk(u8),
    PublicJwkString(u8),
    OutsiderJwk,
    Url(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum KeyHeader {
    Jwk,
    Jku,
    X5u,
    X5c,
}

#[derive(Arbitrary, Debug)]
enum HeaderEdit {
    Alg(AlgName),
    Kid(Json),
    RemoveKid,
    KeyHeader(KeyHeader, Json),
    Typ(Json),
    Crit(Json),
    Set(String, Json),
    Remove(String),
}

#[derive(Arbitrary, Debug)]
enum Claim {
    Exp,
    Nbf,
    Iat,
    Iss,
    Aud,
    Username,
    Sub,
    Jti,
    Other(String),
}

impl Claim {
    fn name(&self) -> &str {
        match self {
            Claim::Exp => "exp",
            Claim::Nbf => "nbf",
            Claim::Iat => "iat",
            Claim::Iss => "iss",
            Claim::Aud => "aud",
            Claim::Username => "username",
            Claim::Sub => "sub",
            Claim::Jti => "jti",
            Claim::Other(name) => name,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum ClaimEdit {
    Set(Claim, Json),
    Remove(Claim),
}

/// What an attacker may use as the HMAC key of an HS256 token against a
/// deployment whose public keys are published.
#[derive(Arbitrary, Debug)]
enum HmacKey {
    /// Key `n`'s raw public key (Ed25519 bytes, uncompressed SEC1 point).
    Raw(u8),
    Compressed(u8),
    /// Its public JWK as published, or the whole JWK Set.
    PublicJwk(u8),
    Jwks,
    /// Its SubjectPublicKeyInfo PEM, with or without the final newline.
    Pem(u8),
    PemWithoutNewline(u8),
    /// The base64url `x` member.
    X(u8),
    /// The HS256 key file keycreator derived the key pair from.
    KeyFile(u8),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Resign {
    Keep,
    Key(Signer, bool),
    Hmac(HmacKey),
    Empty,
}

#[derive(Arbitrary, Debug)]
enum SignatureEdit {
    Flip(u8, u8),
    Truncate(u8),
    Append(Vec<u8>),
    /// ES256: `s` replaced by `n - s`.
    HighS,
    Zeros(u8),
    Replace(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum TextEdit {
    FlipChar(u16, u8),
    /// The last character of the signature with its unused bits changed.
    NonCanonicalLast,
    AddSegment(String),
    DropSignature,
    Segment(u8, String),
    /// A member added to the header as raw JSON text (duplicates).
    RawHeaderMember(String, Json),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// One to three key files; none: the seed keys.
    keys: Vec<KeyBytes>,
    policy: u8,
    signer: Signer,
    username: String,
    ttl_secs: u16,
    header: Vec<HeaderEdit>,
    claims: Vec<ClaimEdit>,
    resign: Resign,
    signature: Vec<SignatureEdit>,
    text: Vec<TextEdit>,
}

struct Context<'a> {
    deployment: &'a Deployment,
    /// A key of the deployment's algorithm outside the set, made when used.
    outsider: std::cell::OnceCell<PrivateKey>,
}

impl Context<'_> {
    fn key(&self, n: u8) -> &PrivateKey {
        let keys = &self.deployment.keys;
        &keys[usize::from(n) % keys.len()]
    }

    fn key_file(&self, n: u8) -> &[u8] {
        let files = &self.deployment.key_files;
        &files[usize::from(n) % files.len()]
    }

    fn other_algorithm(&self, n: u8) -> PrivateKey {
        derived(other_of(self.deployment.alg), self.key_file(n))
    }

    fn signer(&self, signer: Signer) -> PrivateKey {
        match signer {
            Signer::InSet(n) => self.key(n).clone(),
            Signer::Outsider(bytes) => derived(self.deployment.alg, &bytes.file_contents()),
            Signer::OtherAlgorithm(n) => self.other_algorithm(n),
        }
    }

    fn in_set(&self, key: &PrivateKey) -> bool {
        key.algorithm() == self.deployment.alg
            && self.deployment.keys.iter().any(|k| k.kid() == key.kid())
    }

    fn value(&self, json: &Json, depth: u8) -> Value {
        let now = now_secs();
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::from(*b),
            Json::Int(i) => Value::from(*i),
            Json::Float(f) => Value::from(*f),
            Json::Str(s) => Value::from(s.as_str()),
            Json::NearNow(delta) => Value::from(now + i64::from(*delta)),
            Json::FractionNearNow(delta, fraction) => {
                Value::from(now as f64 + f64::from(*delta) + f64::from(*fraction) / 256.0)
            }
            Json::Issuer => Value::from(ISSUER),
            Json::Audience => Value::from(AUDIENCE),
            Json::KidInSet(n) => Value::from(self.key(*n).kid().unwrap_or_default()),
            Json::KidOtherAlgorithm(n) => {
                Value::from(self.other_algorithm(*n).kid().unwrap_or_default())
            }
            Json::Hs256Kid(n) => Value::from(expected_kid(self.key_file(*n))),
            Json::PublicJwk(n) => {
                Value::Object(object(&self.key(*n).to_public_jwk()).expect("a JWK"))
            }
            Json::PublicJwkString(n) => Value::from(self.key(*n).to_public_jwk()),
            Json::OutsiderJwk => {
                let outsider = self
                    .outsider
                    .get_or_init(|| derived(self.deployment.alg, &[b'f'; 128]));
                Value::Object(object(&outsider.to_public_jwk()).expect("a JWK"))
            }
            Json::Url(path) => Value::from(format!("https://attacker.example/{path}")),
            _ if depth > 3 => Value::Null,
            Json::Array(items) => items.iter().map(|j| self.value(j, depth + 1)).collect(),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, j)| (k.clone(), self.value(j, depth + 1)))
                    .collect(),
            ),
        }
    }

    fn alg_name(&self, name: &AlgName) -> String {
        let alg = self.deployment.alg;
        match name {
            AlgName::Deployment => alg.name().to_owned(),
            AlgName::Other => other_of(alg).name().to_owned(),
            AlgName::Hs256 => "HS256".into(),
            AlgName::None => "none".into(),
            AlgName::NoneCapital => "None".into(),
            AlgName::Ed25519 => "Ed25519".into(),
            AlgName::Es384 => "ES384".into(),
            AlgName::Hs512 => "HS512".into(),
            AlgName::Rs256 => "RS256".into(),
            AlgName::Lowercase => alg.name().to_lowercase(),
            AlgName::Any(name) => name.clone(),
        }
    }

    fn hmac_key(&self, key: &HmacKey) -> Vec<u8> {
        let public = |n: u8| Signing::of(self.key(n)).public();
        match key {
            HmacKey::Raw(n) => public(*n).raw(),
            HmacKey::Compressed(n) => public(*n).compressed(),
            HmacKey::PublicJwk(n) => self.key(*n).to_public_jwk().into_bytes(),
            HmacKey::Jwks => self.deployment.set.json().as_bytes().to_vec(),
            HmacKey::Pem(n) => public(*n).pem().into_bytes(),
            HmacKey::PemWithoutNewline(n) => public(*n).pem().trim_end().as_bytes().to_vec(),
            HmacKey::X(n) => object(&self.key(*n).to_public_jwk())
                .and_then(|jwk| jwk.get("x").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default()
                .into_bytes(),
            HmacKey::KeyFile(n) => self.key_file(*n).to_vec(),
            HmacKey::Bytes(bytes) => bytes.clone(),
        }
    }
}

fn set_kid(header: &mut Map<String, Value>, value: Value) {
    header.insert("kid".into(), value);
}

/// The token an input describes, and whether a key of the set signed it
/// after the edits (then its contents may be anything).
fn make_token(ctx: &Context<'_>, input: &Input, issued: &str) -> (String, bool) {
    let segments: Vec<&str> = issued.split('.').collect();
    let mut header = decode_segment(segments[0]).expect("our header is JSON");
    let mut claims = decode_segment(segments[1]).expect("our claims are JSON");
    let mut signature = URL_SAFE_NO_PAD
        .decode(segments[2])
        .expect("our signature is base64url");

    for edit in input.header.iter().take(8) {
        match edit {
            HeaderEdit::Alg(name) => {
                header.insert("alg".into(), Value::from(ctx.alg_name(name)));
            }
            HeaderEdit::Kid(json) => set_kid(&mut header, ctx.value(json, 0)),
            HeaderEdit::RemoveKid => _ = header.remove("kid"),
            HeaderEdit::KeyHeader(which, json) => {
                let name = match which {
                    KeyHeader::Jwk => "jwk",
                    KeyHeader::Jku => "jku",
                    KeyHeader::X5u => "x5u",
                    KeyHeader::X5c => "x5c",
                };
                header.insert(name.into(), ctx.value(json, 0));
            }
            HeaderEdit::Typ(json) => _ = header.insert("typ".into(), ctx.value(json, 0)),
            HeaderEdit::Crit(json) => _ = header.insert("crit".into(), ctx.value(json, 0)),
            HeaderEdit::Set(name, json) => _ = header.insert(name.clone(), ctx.value(json, 0)),
            HeaderEdit::Remove(name) => _ = header.remove(name),
        }
    }
    for edit in input.claims.iter().take(8) {
        match edit {
            ClaimEdit::Set(claim, json) => {
                claims.insert(claim.name().to_owned(), ctx.value(json, 0));
            }
            ClaimEdit::Remove(claim) => _ = claims.remove(claim.name()),
        }
    }
    let mut header_segment = if input.header.is_empty() {
        segments[0].to_owned()
    } else {
        encode_segment(&header)
    };
    for edit in &input.text {
        if let TextEdit::RawHeaderMember(name, json) = edit {
            let mut text = serde_json::to_string(&header).expect("JSON");
            text.pop();
            let comma = if text.len() > 1 { "," } else { "" };
            text = format!(
                "{text}{comma}{}:{}}}",
                Value::from(name.as_str()),
                ctx.value(json, 0)
            );
            header_segment = b64url(text.as_bytes());
        }
    }
    let claims_segment = if input.claims.is_empty() {
        segments[1].to_owned()
    } else {
        encode_segment(&claims)
    };
    let signing_input = format!("{header_segment}.{claims_segment}");

    let mut resigned_by_set_key = false;
    match &input.resign {
        Resign::Keep => {}
        Resign::Key(signer, high) => {
            let key = ctx.signer(*signer);
            resigned_by_set_key = ctx.in_set(&key);
            let form = if *high { SForm::High } else { SForm::Low };
            signature = Signing::of(&key).sign(signing_input.as_bytes(), form);
        }
        Resign::Hmac(key) => {
            signature =
                hmac_sha256::HMAC::mac(signing_input.as_bytes(), ctx.hmac_key(key)).to_vec();
        }
        Resign::Empty => signature.clear(),
    }
    for edit in input.signature.iter().take(4) {
        match edit {
            SignatureEdit::Flip(i, x) if !signature.is_empty() => {
                let i = usize::from(*i) % signature.len();
                signature[i] ^= x;
            }
            SignatureEdit::Flip(..) => {}
            SignatureEdit::Truncate(len) => signature.truncate(usize::from(*len)),
            SignatureEdit::Append(tail) => signature.extend_from_slice(tail),
            SignatureEdit::HighS => {
                if let Ok(parsed) = p256::ecdsa::Signature::from_slice(&signature) {
                    signature = high_s(&parsed).to_bytes().to_vec();
                }
            }
            SignatureEdit::Zeros(len) => signature = vec![0; usize::from(*len)],
            SignatureEdit::Replace(bytes) => signature = bytes.clone(),
        }
    }
    let mut token = format!("{signing_input}.{}", b64url(&signature));
    for edit in input.text.iter().take(4) {
        match edit {
            TextEdit::FlipChar(i, x) => {
                let mut bytes = token.into_bytes();
                if !bytes.is_empty() {
                    let i = usize::from(*i) % bytes.len();
                    bytes[i] ^= x;
                }
                token = String::from_utf8_lossy(&bytes).into_owned();
            }
            TextEdit::NonCanonicalLast => {
                // A 64-byte signature is 86 characters whose last holds 4
                // bits of it and 2 unused ones.
                if let Some(last) = token.pop() {
                    const ALPHABET: &str =
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                    let i = ALPHABET.find(last).unwrap_or(0);
                    token.push(ALPHABET.as_bytes()[(i ^ 1) % 64] as char);
                }
            }
            TextEdit::AddSegment(segment) => token = format!("{token}.{segment}"),
            TextEdit::DropSignature => {
                if let Some(dot) = token.rfind('.') {
                    token.truncate(dot + 1);
                }
            }
            TextEdit::Segment(i, segment) => {
                let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
                let i = usize::from(*i) % parts.len();
                parts[i] = segment.clone();
                token = parts.join(".");
            }
            TextEdit::RawHeaderMember(..) => {}
        }
    }
    (token, resigned_by_set_key)
}

// ---- the properties ----

/// A token's header and claims, as JSON objects.
type HeaderAndClaims = (Map<String, Value>, Map<String, Value>);

/// Checks our verdict on `token`; `original`, when given, is the header and
/// claims it must decode to if accepted (no key of the set signed it again).
fn check_verdict(deployment: &Deployment, token: &str, original: Option<&HeaderAndClaims>) {
    let alg = deployment.alg;
    let independent = read_set(alg, deployment.set.json());
    assert_eq!(
        independent.len(),
        deployment.keys.len(),
        "{}",
        deployment.set.json()
    );
    match verify_published(alg, &deployment.set, token, &deployment.policy, None) {
        Ok(username) => {
            let parts = check_accepted(token, &username, alg, &independent, &deployment.policy);
            if let Some((header, claims)) = original {
                assert_eq!(
                    (&parts.header, &parts.claims),
                    (header, claims),
                    "a token no key of the set signed again verified with other contents: {token:?}"
                );
            }
        }
        Err(TokenError::Invalid(why)) => {
            assert!(!why.is_empty());
            let Some(parts) = Parts::of(token) else {
                return;
            };
            if stricter_rule(alg, &independent, token, &parts, &deployment.policy).is_some()
                || parts.near_now()
                || !jsonwebtoken_reads_header(&parts.header)
                || !jsonwebtoken_reads_times(&parts.claims)
            {
                return;
            }
            let kid = parts.header["kid"]
                .as_str()
                .expect("stricter_rule checked it");
            let key = key_named(&independent, kid).expect("stricter_rule checked it");
            if let Ok(claims) = decode_with_jsonwebtoken(token, alg, key, &deployment.policy) {
                panic!(
                    "jsonwebtoken accepts a token we refuse ({why}), claims {claims:?}: {token:?}"
                );
            }
        }
        Err(other) => panic!("a server fault for a client's token: {other:?}"),
    }
}

fn structured(alg: Algorithm, data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let deployment = if input.keys.is_empty() {
        Deployment::seed(alg, policy(input.policy))
    } else {
        // Distinct key files: a set never holds a key twice.
        let mut key_files: Vec<Vec<u8>> = Vec::new();
        for file in input.keys.iter().take(3).map(KeyBytes::file_contents) {
            if !key_files.contains(&file) {
                key_files.push(file);
            }
        }
        Deployment::new(alg, key_files, policy(input.policy))
    };
    assert_eq!(
        deployment.set.validate(alg).ok().map(|kids| kids.len()),
        Some(deployment.keys.len()),
        "the set of derived keys: {}",
        deployment.set.json()
    );
    let ctx = Context {
        deployment: &deployment,
        outsider: std::cell::OnceCell::new(),
    };
    let ttl = u64::from(input.ttl_secs.max(3));

    // 1. What the creator signs with a key of the set is accepted, by us
    // and by jsonwebtoken, exactly as issued.
    let signer = ctx.signer(input.signer);
    let issued = issue_with(
        IssuingKey::Private(&signer),
        &input.username,
        Duration::from_secs(ttl),
        &deployment.policy,
        None,
    )
    .expect("signing cannot fail");
    if issued.len() > MAX_TOKEN_LEN {
        return; // the creator refuses to hand these out (a 400)
    }
    let kid = signer.kid().expect("our keys have kids");
    let public = Signing::of(&signer).public();
    check_issued(
        &issued,
        &input.username,
        signer.algorithm(),
        kid,
        &public,
        ttl,
        &deployment.policy,
    );
    let verdict = verify_published(alg, &deployment.set, &issued, &deployment.policy, None);
    if ctx.in_set(&signer) {
        assert_eq!(verdict.as_deref(), Ok(input.username.as_str()), "{issued}");
    } else {
        assert!(
            matches!(verdict, Err(TokenError::Invalid(_))),
            "{verdict:?}: {issued}"
        );
    }

    // 2. The token the input makes of it.
    let original = {
        let segments: Vec<&str> = issued.split('.').collect();
        (
            decode_segment(segments[0]).expect("JSON"),
            decode_segment(segments[1]).expect("JSON"),
        )
    };
    let (token, resigned_by_set_key) = make_token(&ctx, &input, &issued);
    let unchanged_contents = !resigned_by_set_key;
    check_verdict(&deployment, &token, unchanged_contents.then_some(&original));
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let alg = if flags & 1 == 0 {
        Algorithm::EdDsa
    } else {
        Algorithm::Es256
    };
    if flags & 2 != 0 {
        structured(alg, rest);
        return;
    }
    // Tokens reach the verifier inside a JSON string, so always as Unicode.
    let token = String::from_utf8_lossy(rest);
    let deployment = Deployment::seed(alg, policy(flags >> 2));
    check_verdict(&deployment, &token, None);
});
