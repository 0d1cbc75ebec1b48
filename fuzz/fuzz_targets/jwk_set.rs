//! The EdDSA and ES256 key files: arbitrary bytes as `jwks.json` (the public
//! key set) and `signing-key.json` (the creator's private JWK), passed by a
//! host in the environment (`JWKS`, `SIGNING_JWK`) and read from the files,
//! through `KeyFiles` and `Keys::{public_keys, private_key}`, and
//! `PublicKeySet::{from_json, validate, find}` and `PrivateKey::from_jwk`
//! directly, for both algorithms (and HS256, which has no such keys).
//!
//! One input is a flags byte, then either raw file contents or a structured
//! description (`arbitrary`) of near-valid keys: the JWKs of real key pairs
//! derived from arbitrary key files, then members set, removed, tweaked
//! (padding, a flipped last character, another key's coordinates, the other
//! curve) or added again as raw text (duplicates, escaped names), keys of
//! the other algorithm or private keys put in the set, and bytes flipped.
//!
//! ```text
//! byte 0: bit 0  EdDSA (0) or ES256 (1)
//!         bit 1  raw (0): the rest is jwks.json, a 0x00, then signing-key.json
//!                (no 0x00: no signing-key.json); structured (1): `Structured`
//!         bit 2  raw only: no jwks.json (the rest is signing-key.json)
//! ```
//!
//! Properties, for the deployment's algorithm and the others:
//! - no panic; the environment and the files give the same answer, and the
//!   same as the parsers called directly; a present file is never `Missing`;
//! - whenever `validate` succeeds: the document is `{"keys": [...]}` of
//!   objects, as many as kids returned; no key has a private member (read
//!   with serde_json); every kid is the key's RFC 7638 thumbprint (computed
//!   here: canonical JSON, sha2, base64); kids are unique; each key is a
//!   public key of the algorithm for RustCrypto, and its `alg`, if any, one
//!   the deployment accepts;
//! - then `find` is `Some` for exactly the validated kids (probed with the
//!   kids, other keys' kids and arbitrary strings), and the key each kid
//!   names verifies the tokens of the private key it is the public half of;
//! - whenever `from_jwk` (or `private_key`) succeeds: a key of the
//!   algorithm, whose kid is the thumbprint of the JWK read (computed here),
//!   the key the JWK's public members describe (RustCrypto), no private
//!   member in its public JWK; its tokens are accepted by `verify_published`
//!   with its set and judged by `published::check_accepted` (RustCrypto and
//!   jsonwebtoken) with the public key the input JWK names.

#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::path::Path;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use token_contract::jwk::{JWKS_FILE_NAME, MAX_JWK_FILE_BYTES, SIGNING_JWK_FILE_NAME};
use token_contract::key::{JWKS_CONTENTS_ENV, SIGNING_JWK_CONTENTS_ENV};
use token_contract::token::{ClaimsPolicy, IssuingKey, issue_with, verify_published};
use token_contract::{Algorithm, KeyError, KeyFiles, Keys, PrivateKey, PublicKeySet, TokenError};
use token_service_fuzz::jwk::{
    PRIVATE_MEMBERS, Public, Signing, has_private_member, object, other_of, thumbprint,
};
use token_service_fuzz::keys::{KeyBytes, SEED_CURRENT_KEY, SEED_PREVIOUS_KEY, derived};
use token_service_fuzz::published::{accepted_alg_names, check_accepted};

// ---- the key files, as a host would hand them ----

thread_local! {
    /// The files of the current input, by name: `ReadKeyFile` is a plain
    /// function, so it reads them from here.
    static FILES: RefCell<HashMap<&'static str, Vec<u8>>> = RefCell::new(HashMap::new());
}

fn read_file(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    FILES.with(|files| {
        let files = files.borrow();
        let (_, contents) = files
            .iter()
            .find(|(file, _)| **file == name)
            .ok_or_else(|| io::Error::from(ErrorKind::NotFound))?;
        Ok(contents[..contents.len().min(limit)].to_vec())
    })
}

/// The two ways a host gives the services the key files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// In the environment (`JWKS`, `SIGNING_JWK`), when the bytes are text.
    Environment,
    /// As files next to `key.txt`.
    Files,
}

fn key_files(delivery: Delivery, jwks: Option<&[u8]>, signing: Option<&[u8]>) -> KeyFiles {
    let files = KeyFiles::with_reader("/usr/share/key/key.txt", read_file);
    match delivery {
        Delivery::Files => {
            FILES.with(|files| {
                let mut files = files.borrow_mut();
                files.clear();
                if let Some(bytes) = jwks {
                    files.insert(JWKS_FILE_NAME, bytes.to_vec());
                }
                if let Some(bytes) = signing {
                    files.insert(SIGNING_JWK_FILE_NAME, bytes.to_vec());
                }
            });
            files.with_contents_from(|_| None)
        }
        Delivery::Environment => {
            FILES.with(|files| files.borrow_mut().clear());
            let text = |bytes: Option<&[u8]>| {
                bytes.and_then(|b| std::str::from_utf8(b).ok().map(str::to_owned))
            };
            let (jwks, signing) = (text(jwks), text(signing));
            files.with_contents_from(move |name| match name {
                JWKS_CONTENTS_ENV => jwks.clone(),
                SIGNING_JWK_CONTENTS_ENV => signing.clone(),
                _ => None,
            })
        }
    }
}

/// The text the services take from a key file's bytes, or why not.
fn usable_text(bytes: &[u8]) -> Option<&str> {
    (bytes.len() <= MAX_JWK_FILE_BYTES)
        .then(|| std::str::from_utf8(bytes).ok())
        .flatten()
}

/// Both keys, or both the same kind of error.
fn same_outcome<T, U>(a: &Result<T, KeyError>, b: &Result<U, KeyError>) -> bool {
    match (a, b) {
        (Ok(_), Ok(_)) => true,
        (Err(x), Err(y)) => std::mem::discriminant(x) == std::mem::discriminant(y),
        _ => false,
    }
}

// ---- structured inputs: near-valid JWKs ----

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name {
    Kty,
    Crv,
    X,
    Y,
    D,
    Alg,
    Use,
    Kid,
    KeyOps,
    K,
    N,
    P,
    Priv,
    Ext,
    X5c,
}

impl Name {
    fn as_str(self) -> &'static str {
        match self {
            Name::Kty => "kty",
            Name::Crv => "crv",
            Name::X => "x",
            Name::Y => "y",
            Name::D => "d",
            Name::Alg => "alg",
            Name::Use => "use",
            Name::Kid => "kid",
            Name::KeyOps => "key_ops",
            Name::K => "k",
            Name::N => "n",
            Name::P => "p",
            Name::Priv => "priv",
            Name::Ext => "ext",
            Name::X5c => "x5c",
        }
    }
}

/// Strings that mean something in a JWK.
const KNOWN: [&str; 20] = [
    "OKP",
    "EC",
    "RSA",
    "oct",
    "Ed25519",
    "P-256",
    "P-384",
    "secp256k1",
    "X25519",
    "Ed448",
    "EdDSA",
    "ES256",
    "ES384",
    "HS256",
    "sig",
    "enc",
    "verify",
    "sign",
    "",
    "none",
];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Tweak {
    /// base64 `=` padding.
    Pad,
    /// The last character changed (unused low bits, or the value).
    FlipLast(u8),
    DropLast,
    AppendChar(char),
    /// Standard base64's alphabet (`+/` for `-_`).
    StandardAlphabet,
    Uppercase,
    /// A leading `A` (a zero byte more, base64-wise, or a misaligned one).
    LeadingZero,
    Spaces,
}

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Known(u8),
    /// The kid (thumbprint) of key `n` of the deployment's algorithm, or of
    /// the other one.
    KidOf(u8, bool),
    /// A member of key `n`'s private JWK.
    MemberOf(u8, bool, Name),
    Tweaked(u8, bool, Name, Tweak),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

#[derive(Arbitrary, Debug)]
enum Base {
    Public(u8),
    Private(u8),
    OtherPublic(u8),
    OtherPrivate(u8),
    Empty,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Set(Name, Json),
    SetOther(String, Json),
    Remove(Name),
}

/// Member names as raw JSON text: duplicates and escapes a `Map` cannot
/// hold.
#[derive(Arbitrary, Debug)]
enum RawName {
    Plain(Name),
    /// `\u00XX` for every character: `"\u0064"` is `"d"`.
    Escaped(Name),
    Any(String),
}

#[derive(Arbitrary, Debug)]
struct Member {
    base: Base,
    edits: Vec<Edit>,
    raw_members: Vec<(RawName, Json)>,
}

#[derive(Arbitrary, Debug)]
enum Shape {
    Set,
    /// `"keys"` twice.
    DuplicateKeys,
    KeysNotArray(Json),
    TopLevel(Json),
}

#[derive(Arbitrary, Debug)]
enum Damage {
    Flip(u16, u8),
    Truncate(u16),
    Append(Vec<u8>),
    Insert(u16, u8),
}

#[derive(Arbitrary, Debug)]
struct Structured {
    keys: Vec<KeyBytes>,
    shape: Shape,
    members: Vec<Member>,
    extra: Vec<(String, Json)>,
    set_damage: Vec<Damage>,
    no_jwks: bool,
    signing: Option<Member>,
    signing_damage: Vec<Damage>,
    probes: Vec<Json>,
}

/// Key pairs of both algorithms derived from the same key files.
struct Pairs {
    ours: Vec<PrivateKey>,
    other: Vec<PrivateKey>,
}

impl Pairs {
    fn new(alg: Algorithm, files: &[Vec<u8>]) -> Self {
        Pairs {
            ours: files.iter().map(|f| derived(alg, f)).collect(),
            other: files.iter().map(|f| derived(other_of(alg), f)).collect(),
        }
    }

    fn key(&self, n: u8, other: bool) -> &PrivateKey {
        let keys = if other { &self.other } else { &self.ours };
        &keys[usize::from(n) % keys.len()]
    }

    fn jwk(&self, n: u8, other: bool, private: bool) -> Map<String, Value> {
        let key = self.key(n, other);
        let text = if private {
            key.to_private_jwk()
        } else {
            key.to_public_jwk()
        };
        object(&text).expect("our JWKs are objects")
    }
}

fn tweak(value: &str, tweak: Tweak) -> String {
    let mut s = value.to_owned();
    match tweak {
        Tweak::Pad => s.push_str(&"=".repeat(((4 - s.len() % 4) % 4).max(1))),
        Tweak::FlipLast(x) => {
            if let Some(last) = s.pop() {
                const ALPHABET: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let index = ALPHABET
                    .iter()
                    .position(|&c| c as char == last)
                    .unwrap_or(0);
                s.push(ALPHABET[(index ^ usize::from(x & 63)) % 64] as char);
            }
        }
        Tweak::DropLast => _ = s.pop(),
        Tweak::AppendChar(c) => s.push(c),
        Tweak::StandardAlphabet => s = s.replace('-', "+").replace('_', "/"),
        Tweak::Uppercase => s = s.to_uppercase(),
        Tweak::LeadingZero => s.insert(0, 'A'),
        Tweak::Spaces => s = format!(" {s} "),
    }
    s
}

impl Json {
    fn value(&self, pairs: &Pairs, depth: u8) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::from(*b),
            Json::Int(i) => Value::from(*i),
            Json::Float(f) => Value::from(*f),
            Json::Str(s) => Value::from(s.as_str()),
            Json::Known(i) => Value::from(KNOWN[usize::from(*i) % KNOWN.len()]),
            Json::KidOf(n, other) => Value::from(pairs.key(*n, *other).kid().unwrap_or_default()),
            Json::MemberOf(n, other, name) => pairs
                .jwk(*n, *other, true)
                .remove(name.as_str())
                .unwrap_or(Value::Null),
            Json::Tweaked(n, other, name, how) => {
                match pairs.jwk(*n, *other, true).get(name.as_str()) {
                    Some(Value::String(s)) => Value::from(tweak(s, *how)),
                    _ => Value::Null,
                }
            }
            _ if depth > 3 => Value::Null,
            Json::Array(items) => items.iter().map(|j| j.value(pairs, depth + 1)).collect(),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, j)| (k.clone(), j.value(pairs, depth + 1)))
                    .collect(),
            ),
        }
    }
}

impl Member {
    fn text(&self, pairs: &Pairs) -> String {
        let mut object = match &self.base {
            Base::Public(n) => pairs.jwk(*n, false, false),
            Base::Private(n) => pairs.jwk(*n, false, true),
            Base::OtherPublic(n) => pairs.jwk(*n, true, false),
            Base::OtherPrivate(n) => pairs.jwk(*n, true, true),
            Base::Empty => Map::new(),
            Base::Raw(text) => return text.clone(),
        };
        for edit in self.edits.iter().take(8) {
            match edit {
                Edit::Set(name, json) => {
                    object.insert(name.as_str().to_owned(), json.value(pairs, 0));
                }
                Edit::SetOther(name, json) => {
                    object.insert(name.clone(), json.value(pairs, 0));
                }
                Edit::Remove(name) => _ = object.remove(name.as_str()),
            }
        }
        let mut text = Value::Object(object).to_string();
        for (name, json) in self.raw_members.iter().take(4) {
            let name = match name {
                RawName::Plain(name) => format!("\"{}\"", name.as_str()),
                RawName::Escaped(name) => {
                    let escaped: String = name
                        .as_str()
                        .chars()
                        .map(|c| format!("\\u{:04x}", c as u32))
                        .collect();
                    format!("\"{escaped}\"")
                }
                RawName::Any(name) => Value::from(name.as_str()).to_string(),
            };
            text.pop(); // the closing brace
            let comma = if text.len() > 1 { "," } else { "" };
            text = format!("{text}{comma}{name}:{}}}", json.value(pairs, 0));
        }
        text
    }
}

fn damage(mut bytes: Vec<u8>, edits: &[Damage]) -> Vec<u8> {
    for edit in edits.iter().take(4) {
        match edit {
            Damage::Flip(i, x) if !bytes.is_empty() => {
                let i = usize::from(*i) % bytes.len();
                bytes[i] ^= x;
            }
            Damage::Flip(..) => {}
            Damage::Truncate(len) => bytes.truncate(usize::from(*len)),
            Damage::Append(tail) => bytes.extend_from_slice(tail),
            Damage::Insert(i, b) => {
                let i = usize::from(*i) % (bytes.len() + 1);
                bytes.insert(i, *b);
            }
        }
    }
    bytes
}

/// What one input hands the services.
struct Case {
    alg: Algorithm,
    jwks: Option<Vec<u8>>,
    signing: Option<Vec<u8>>,
    /// Key files whose key pairs (of both algorithms) the input may hold.
    key_files: Vec<Vec<u8>>,
    probes: Vec<String>,
}

fn structured(alg: Algorithm, data: &[u8]) -> Option<Case> {
    let input = Structured::arbitrary_take_rest(Unstructured::new(data)).ok()?;
    let mut key_files: Vec<Vec<u8>> = input
        .keys
        .iter()
        .take(4)
        .map(KeyBytes::file_contents)
        .collect();
    if key_files.is_empty() {
        key_files.push(SEED_CURRENT_KEY.to_vec());
    }
    let pairs = Pairs::new(alg, &key_files);
    let members: Vec<String> = input
        .members
        .iter()
        .take(10)
        .map(|m| m.text(&pairs))
        .collect();
    let list = format!("[{}]", members.join(","));
    let mut document = match &input.shape {
        Shape::Set => format!("{{\"keys\":{list}}}"),
        Shape::DuplicateKeys => format!("{{\"keys\":{list},\"keys\":{list}}}"),
        Shape::KeysNotArray(json) => {
            format!("{{\"keys\":{}}}", json.value(&pairs, 0))
        }
        Shape::TopLevel(json) => json.value(&pairs, 0).to_string(),
    };
    for (name, json) in input.extra.iter().take(3) {
        if document.ends_with('}') && document.len() > 2 {
            document.pop();
            document = format!(
                "{document},{}:{}}}",
                Value::from(name.as_str()),
                json.value(&pairs, 0)
            );
        }
    }
    let jwks = (!input.no_jwks).then(|| damage(document.into_bytes(), &input.set_damage));
    let signing = input
        .signing
        .as_ref()
        .map(|m| damage(m.text(&pairs).into_bytes(), &input.signing_damage));
    let probes = input
        .probes
        .iter()
        .take(4)
        .filter_map(|p| p.value(&pairs, 0).as_str().map(str::to_owned))
        .collect();
    Some(Case {
        alg,
        jwks,
        signing,
        key_files,
        probes,
    })
}

fn raw(alg: Algorithm, no_jwks: bool, data: &[u8]) -> Case {
    let (jwks, signing) = if no_jwks {
        (None, Some(data.to_vec()))
    } else {
        match data.iter().position(|&b| b == 0) {
            Some(zero) => (Some(data[..zero].to_vec()), Some(data[zero + 1..].to_vec())),
            None => (Some(data.to_vec()), None),
        }
    };
    Case {
        alg,
        jwks,
        signing,
        key_files: vec![SEED_CURRENT_KEY.to_vec(), SEED_PREVIOUS_KEY.to_vec()],
        probes: Vec::new(),
    }
}

// ---- the properties ----

const POLICY: ClaimsPolicy = ClaimsPolicy {
    issuer: None,
    audience: None,
};

fn issue(key: &PrivateKey) -> String {
    issue_with(
        IssuingKey::Private(key),
        "jwk-set-fuzz",
        Duration::from_secs(600),
        &POLICY,
        None,
    )
    .expect("signing with a loaded key cannot fail")
}

/// What a set that validated for `alg` with these `kids` must be.
fn check_validated(alg: Algorithm, set: &PublicKeySet, kids: &[String], case: &Case) {
    let json = set.json();
    let document =
        object(json).unwrap_or_else(|| panic!("validated a set that is no object: {json}"));
    let members = document
        .get("keys")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("validated a set without a keys array: {json}"));
    assert_eq!(members.len(), kids.len(), "{json}");
    assert!(!kids.is_empty(), "validated an empty set: {json}");
    let mut seen = std::collections::HashSet::new();
    let mut independent = Vec::new();
    for (member, kid) in members.iter().zip(kids) {
        let member = member
            .as_object()
            .unwrap_or_else(|| panic!("validated a key that is no object: {json}"));
        assert!(
            !has_private_member(member),
            "validated a {alg} set with a private member ({PRIVATE_MEMBERS:?}): {json}"
        );
        assert_eq!(
            member.get("kid"),
            Some(&Value::from(kid.as_str())),
            "validate returned another kid than the key's: {json}"
        );
        assert_eq!(
            thumbprint(alg, member).as_deref(),
            Some(kid.as_str()),
            "a validated kid is not the RFC 7638 thumbprint: {json}"
        );
        assert!(seen.insert(kid.clone()), "validated a kid twice: {json}");
        let public = Public::from_jwk(alg, member).unwrap_or_else(|| {
            panic!("validated a key RustCrypto does not take as a {alg} public key: {json}")
        });
        if let Some(named) = member.get("alg") {
            assert!(
                named
                    .as_str()
                    .is_some_and(|a| accepted_alg_names(alg).contains(&a)),
                "validated a key for alg {named} in a {alg} set: {json}"
            );
        }
        independent.push((kid.clone(), public));
    }

    // `find` is Some for exactly the validated kids.
    for kid in kids {
        match set.find(alg, kid) {
            Ok(Some(_)) => {}
            other => panic!("find({alg}, {kid:?}) in a validated set gave {other:?}: {json}"),
        }
    }
    let pairs = Pairs::new(alg, &case.key_files);
    let mut probes: Vec<String> = case.probes.clone();
    for key in pairs.ours.iter().chain(&pairs.other) {
        probes.push(key.kid().unwrap_or_default().to_owned());
    }
    probes.extend(kids.iter().map(|k| format!("{k} ")));
    probes.extend(kids.iter().map(|k| k.to_uppercase()));
    probes.push(String::new());
    for probe in probes.iter().filter(|p| !kids.contains(p)) {
        match set.find(alg, probe) {
            Ok(None) => {}
            other => panic!("find({alg}, {probe:?}) for no validated kid gave {other:?}: {json}"),
        }
    }

    // The key a kid names verifies its private half's tokens; a key outside
    // the set is an unknown kid.
    for key in &pairs.ours {
        let kid = key.kid().unwrap_or_default();
        let token = issue(key);
        match verify_published(alg, set, &token, &POLICY, None) {
            Ok(username) => {
                assert!(
                    kids.iter().any(|k| k == kid),
                    "{token} accepted, kid not in {json}"
                );
                check_accepted(&token, &username, alg, &independent, &POLICY);
            }
            Err(TokenError::Invalid(why)) => assert!(
                !kids.iter().any(|k| k == kid) && why.contains("unknown key id"),
                "a token of a key of the set refused ({why}): {token} {json}"
            ),
            Err(other) => panic!("{other:?} for a validated set: {json}"),
        }
    }
}

/// What a private key that loaded from `text` for `alg` must be.
fn check_private(alg: Algorithm, key: &PrivateKey, text: &str, set: Option<&PublicKeySet>) {
    assert_eq!(key.algorithm(), alg, "{text}");
    let jwk = object(text).unwrap_or_else(|| panic!("a private key from a non-object: {text}"));
    let kid = thumbprint(alg, &jwk)
        .unwrap_or_else(|| panic!("a private key from a JWK without its members: {text}"));
    assert_eq!(
        key.kid(),
        Some(kid.as_str()),
        "kid is not the thumbprint: {text}"
    );
    assert!(jwk.contains_key("d"), "a private key without d: {text}");
    let described = Public::from_jwk(alg, &jwk)
        .unwrap_or_else(|| panic!("a private key whose JWK has no valid public key: {text}"));
    let signing = Signing::of(key);
    assert_eq!(
        signing.public().raw(),
        described.raw(),
        "the key loaded is not the one the JWK describes: {text}"
    );
    let public_jwk = object(&key.to_public_jwk()).expect("a public JWK is an object");
    assert!(!has_private_member(&public_jwk), "{}", key.to_public_jwk());
    let again = PrivateKey::from_jwk(alg, &key.to_private_jwk()).expect("a round trip");
    assert_eq!(again.kid(), key.kid());

    let token = issue(key);
    let own = PublicKeySet::from_keys([key]);
    let independent = [(kid.clone(), described)];
    match verify_published(alg, &own, &token, &POLICY, None) {
        Ok(username) => _ = check_accepted(&token, &username, alg, &independent, &POLICY),
        Err(e) => panic!("a loaded key's token refused by its own set ({e:?}): {token}"),
    }
    // And by the set of the input, when it validated with this key in it.
    if let Some(set) = set
        && set.validate(alg).is_ok_and(|kids| kids.contains(&kid))
    {
        assert_eq!(
            verify_published(alg, set, &token, &POLICY, None).as_deref(),
            Ok("jwk-set-fuzz"),
            "the signing key's token refused by the set that holds its key"
        );
    }
}

fn check(case: &Case) {
    let jwks = case.jwks.as_deref();
    let signing = case.signing.as_deref();
    // Directly, as the parsers see the text.
    let direct_set = jwks.map(|bytes| match usable_text(bytes) {
        Some(text) => PublicKeySet::from_json(text),
        None => Err(KeyError::Malformed("not text".into())),
    });
    let mut loaded_set = None;
    for delivery in [Delivery::Environment, Delivery::Files] {
        let text_only = |b: Option<&[u8]>| b.is_some_and(|b| std::str::from_utf8(b).is_err());
        if delivery == Delivery::Environment && (text_only(jwks) || text_only(signing)) {
            continue; // the environment holds text only
        }
        let keys = key_files(delivery, jwks, signing);
        let set = keys.public_keys();
        match (&direct_set, &set) {
            (None, Err(KeyError::Missing(_))) => {}
            (None, other) => panic!("no jwks.json, yet {other:?}"),
            (Some(direct), loaded) => {
                assert!(
                    same_outcome(direct, loaded),
                    "{delivery:?}: {loaded:?} where the parser says {direct:?}"
                );
                if let (Ok(a), Ok(b)) = (direct, loaded) {
                    assert_eq!(a, b);
                }
            }
        }
        for alg in Algorithm::ALL {
            let from_host = keys.private_key(alg);
            let direct = match signing.map(usable_text) {
                None => Err(KeyError::Missing(String::new())),
                Some(None) => Err(KeyError::Malformed(String::new())),
                Some(Some(text)) => PrivateKey::from_jwk(alg, text),
            };
            match (&direct, &from_host) {
                (Err(KeyError::Missing(_)), Err(KeyError::Missing(_))) => {}
                (Err(KeyError::Malformed(_)), Err(KeyError::Malformed(_))) => {}
                (Err(KeyError::WrongAlgorithm(_)), Err(KeyError::WrongAlgorithm(_))) => {}
                (Ok(a), Ok(b)) => assert_eq!(a.kid(), b.kid()),
                _ => panic!("{delivery:?} {alg}: {from_host:?} where the parser says {direct:?}"),
            }
            if alg == Algorithm::Hs256 {
                assert!(from_host.is_err(), "an HS256 private key");
            }
        }
        loaded_set = set.ok();
    }

    let Some(set) = loaded_set.or_else(|| direct_set.and_then(Result::ok)) else {
        check_private_keys(case, None);
        return;
    };
    assert!(
        set.validate(Algorithm::Hs256).is_err(),
        "an HS256 key set validated"
    );
    for alg in [case.alg, other_of(case.alg)] {
        if let Ok(kids) = set.validate(alg) {
            check_validated(alg, &set, &kids, case);
        } else {
            // Refused sets: lookups are errors or answers, never panics.
            for probe in &case.probes {
                let _ = set.find(alg, probe);
            }
        }
    }
    check_private_keys(case, Some(&set));
}

fn check_private_keys(case: &Case, set: Option<&PublicKeySet>) {
    let Some(text) = case.signing.as_deref().and_then(usable_text) else {
        return;
    };
    assert!(PrivateKey::from_jwk(Algorithm::Hs256, text).is_err());
    for alg in [case.alg, other_of(case.alg)] {
        if let Ok(key) = PrivateKey::from_jwk(alg, text) {
            check_private(alg, &key, text, set);
        }
    }
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
    let case = if flags & 2 == 0 {
        raw(alg, flags & 4 != 0, rest)
    } else {
        match structured(alg, rest) {
            Some(case) => case,
            None => return,
        }
    };
    check(&case);
});
