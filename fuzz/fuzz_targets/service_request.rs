//! The creator's and the verifier's request handling, natively: arbitrary
//! method, path, keys, algorithm and raw body bytes in, the contract's
//! response out.
//!
//! Properties: no panic; a 5xx only when a key the host holds is broken;
//! every error is the documented JSON shape and code; a 200 from the creator
//! is a token for the username asked for that the key signed (checked by a
//! separate HMAC or, for EdDSA and ES256, on RustCrypto, and by
//! `jsonwebtoken`) and our verifier accepts; a 200 from the verifier only for
//! a token an accepted key signed, naming the username it answers. For
//! EdDSA and ES256 the JWK Set route answers the set exactly when it is a
//! valid public set, as `application/jwk-set+json` with `Cache-Control:
//! public, max-age=N`, never with a private member (nor, in any response,
//! a private key's `d`); under HS256 it is a 404.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use token_contract::api::{JWKS_CONTENT_TYPE, JWKS_PATH};
use token_contract::token::ClaimsPolicy;
use token_contract::{
    Algorithm, Config, Endpoint, KeyError, PrivateKey, PublicKeySet, Request, SigningKey, handle,
};
use token_service_fuzz::jwk::{Signing, object, private_members_of_set, thumbprint};
use token_service_fuzz::keys::{FixedKeys, KeyBytes, SEED_CURRENT_KEY, SEED_PREVIOUS_KEY, derived};
use token_service_fuzz::published;
use token_service_fuzz::response::{check_shape, text};
use token_service_fuzz::token::{check_accepted, check_issued};

/// One fuzz input: two bytes that choose the request line and the keys, a
/// third that chooses the algorithm if the first says so, then, if they say
/// so, 64 bytes of an arbitrary current key, then the request body as it
/// is. Seeds (`fuzz/seeds/service_request`, written by `fuzz/seeds.py`) are
/// bodies with those bytes in front.
///
/// ```text
/// byte 0: bit 0     creator (1) or verifier (0)
///         bits 1-2  method: POST, GET, PUT, post
///         bits 3-4  path: the service's route, /healthz, /readyz, the other service's route
///         bits 5-6  current key: the seed key, arbitrary (64 bytes follow), missing, malformed
///         bit 7     a configuration byte follows byte 1 (else: HS256, as before)
/// byte 1: bits 0-1  previous key: none, the seed previous key, arbitrary (the current one
///                   reversed), malformed
///         bits 2-7  token lifetime: 1 + n * 1371 seconds (up to the maximum, 86400);
///                   with a configuration byte, also the JWK Set's max-age (lifetime - 1)
/// byte 2: bits 0-1  TOKEN_ALG: HS256, EdDSA, ES256, EdDSA
///         bits 2-3  EdDSA/ES256: TOKEN_ISSUER and TOKEN_AUDIENCE: none, issuer, audience, both
///         bit 4     the path is /.well-known/jwks.json instead
///         bits 5-7  EdDSA/ES256 key files, see `Asymmetric`
/// ```
///
/// EdDSA and ES256 keys are derived (`PrivateKey::derive`) from the current
/// key file's contents (the seed key when it is missing or malformed), the
/// previous one's, and a fixed "next" key file.
struct Input<'a> {
    endpoint: Endpoint,
    method: &'static str,
    path: &'static str,
    keys: FixedKeys,
    /// The key files' contents, for the independent checks.
    current_bytes: Vec<u8>,
    previous_bytes: Vec<u8>,
    ttl_secs: u64,
    algorithm: Algorithm,
    policy: ClaimsPolicy,
    jwks_max_age: u64,
    asymmetric: Option<Asymmetric>,
    body: &'a [u8],
}

/// The EdDSA or ES256 key files of an input (bits 5-7 of byte 2). The
/// verifier holds no private key (keycreator writes none for it) except
/// in state 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asymmetric {
    /// The current key signs; the set holds it and the previous key.
    Current,
    /// The same, with a next key published first (a rotation under way).
    WithNext,
    /// Both services' directories hold the private key.
    PrivateEverywhere,
    /// The signing key is not in the set.
    SignerNotPublished,
    /// The set holds the current key's private JWK.
    PrivateInSet,
    /// The set holds a key of the other algorithm.
    OtherAlgorithmSet,
    /// No jwks.json.
    NoSet,
    /// signing-key.json holds a key of the other algorithm.
    OtherAlgorithmPrivate,
}

impl Asymmetric {
    const ALL: [Asymmetric; 8] = [
        Asymmetric::Current,
        Asymmetric::WithNext,
        Asymmetric::PrivateEverywhere,
        Asymmetric::SignerNotPublished,
        Asymmetric::PrivateInSet,
        Asymmetric::OtherAlgorithmSet,
        Asymmetric::NoSet,
        Asymmetric::OtherAlgorithmPrivate,
    ];

    /// Whether `endpoint` holds every key file it needs, as it needs it:
    /// then no request may be answered with a 5xx.
    fn in_order(self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::Creator => matches!(
                self,
                Asymmetric::Current | Asymmetric::WithNext | Asymmetric::PrivateEverywhere
            ),
            Endpoint::Verifier => matches!(
                self,
                Asymmetric::Current
                    | Asymmetric::WithNext
                    | Asymmetric::SignerNotPublished
                    | Asymmetric::OtherAlgorithmPrivate
            ),
        }
    }

    /// Whether the set is one the services may publish and verify with.
    fn set_is_valid(self) -> bool {
        !matches!(
            self,
            Asymmetric::PrivateInSet | Asymmetric::OtherAlgorithmSet | Asymmetric::NoSet
        )
    }
}

/// The "next" key file of a rotation.
const NEXT_KEY: &[u8; 128] = &[b'5'; 128];

/// The key files of `state` for `endpoint`: the private key and the set.
fn asymmetric_keys(
    alg: Algorithm,
    state: Asymmetric,
    endpoint: Endpoint,
    current_file: &[u8],
    previous_file: Option<&[u8]>,
) -> (Result<PrivateKey, KeyError>, Result<PublicKeySet, KeyError>) {
    let current = derived(alg, current_file);
    // A key file equal to another is that key (a set never holds a key twice).
    let previous = previous_file
        .filter(|file| *file != current_file)
        .map(|file| derived(alg, file));
    let next = || derived(alg, NEXT_KEY);
    let other = if alg == Algorithm::EdDsa {
        Algorithm::Es256
    } else {
        Algorithm::EdDsa
    };
    let mut published: Vec<PrivateKey> = vec![current.clone()];
    published.extend(previous.clone());
    let set = match state {
        Asymmetric::WithNext => {
            let mut keys = vec![next()];
            keys.retain(|next| published.iter().all(|k| k.kid() != next.kid()));
            keys.append(&mut published);
            Ok(PublicKeySet::from_keys(&keys))
        }
        Asymmetric::SignerNotPublished => {
            let other_key = previous.clone().unwrap_or_else(next);
            let unpublished = if other_key.kid() == current.kid() {
                derived(alg, &[b'6'; 128])
            } else {
                other_key
            };
            Ok(PublicKeySet::from_keys([&unpublished]))
        }
        Asymmetric::PrivateInSet => {
            PublicKeySet::from_json(format!("{{\"keys\":[{}]}}", current.to_private_jwk()))
        }
        Asymmetric::OtherAlgorithmSet => {
            Ok(PublicKeySet::from_keys([&derived(other, current_file)]))
        }
        Asymmetric::NoSet => Err(KeyError::Missing("/usr/share/key/jwks.json".into())),
        _ => Ok(PublicKeySet::from_keys(&published)),
    };
    let missing = || Err(KeyError::Missing("/usr/share/key/signing-key.json".into()));
    let private = match (state, endpoint) {
        (Asymmetric::OtherAlgorithmPrivate, Endpoint::Creator) => Err(KeyError::WrongAlgorithm(
            format!("signing-key.json holds an {other} key, but TOKEN_ALG is {alg}"),
        )),
        (Asymmetric::PrivateEverywhere, _) | (_, Endpoint::Creator) => Ok(current),
        (_, Endpoint::Verifier) => missing(),
    };
    (private, set)
}

fn parse(data: &[u8]) -> Option<Input<'_>> {
    let (&[line, keys], mut body) = data.split_first_chunk::<2>()?;
    let mut configuration = None;
    if line & 0x80 != 0 {
        let (&byte, rest) = body.split_first()?;
        configuration = Some(byte);
        body = rest;
    }
    let endpoint = if line & 1 == 1 {
        Endpoint::Creator
    } else {
        Endpoint::Verifier
    };
    let other = if endpoint == Endpoint::Creator {
        Endpoint::Verifier
    } else {
        Endpoint::Creator
    };
    let method = ["POST", "GET", "PUT", "post"][usize::from(line >> 1 & 3)];
    let mut path =
        [endpoint.path(), "/healthz", "/readyz", other.path()][usize::from(line >> 3 & 3)];
    let malformed = || Err(KeyError::Malformed("key.txt: not hex".into()));
    let (current, current_bytes) = match line >> 5 & 3 {
        0 => (
            SigningKey::from_file_contents(SEED_CURRENT_KEY),
            SEED_CURRENT_KEY.to_vec(),
        ),
        1 => {
            let (bytes, rest) = body.split_first_chunk::<64>()?;
            body = rest;
            let key = KeyBytes(*bytes);
            (Ok(key.signing_key()), key.file_contents())
        }
        2 => (
            Err(KeyError::Missing("/usr/share/key/key.txt".into())),
            Vec::new(),
        ),
        _ => (malformed(), Vec::new()),
    };
    let (previous, previous_bytes) = match keys & 3 {
        0 => (Ok(None), Vec::new()),
        1 => (
            SigningKey::from_file_contents(SEED_PREVIOUS_KEY).map(Some),
            SEED_PREVIOUS_KEY.to_vec(),
        ),
        2 => {
            let mut bytes = current_bytes.clone();
            bytes.reverse();
            match SigningKey::from_file_contents(&bytes) {
                Ok(key) => (Ok(Some(key)), bytes),
                Err(_) => (Ok(None), Vec::new()), // no current key to reverse
            }
        }
        _ => (malformed().map(Some), Vec::new()),
    };
    let ttl_secs = (1 + u64::from(keys >> 2) * 1371).min(86_400);
    let mut keys = FixedKeys::hs256(current, previous);
    let (mut algorithm, mut policy, mut asymmetric) =
        (Algorithm::Hs256, ClaimsPolicy::default(), None);
    if let Some(byte) = configuration {
        algorithm = [
            Algorithm::Hs256,
            Algorithm::EdDsa,
            Algorithm::Es256,
            Algorithm::EdDsa,
        ][usize::from(byte & 3)];
        if byte & 0x10 != 0 {
            path = JWKS_PATH;
        }
        if algorithm.is_asymmetric() {
            // The HS256 key files' state does not matter to these: a
            // missing or malformed current key derives as the seed key.
            let current_file = if current_bytes.is_empty() {
                &SEED_CURRENT_KEY[..]
            } else {
                &current_bytes
            };
            let previous_file = (!previous_bytes.is_empty()).then_some(&previous_bytes[..]);
            let state = Asymmetric::ALL[usize::from(byte >> 5)];
            (keys.private, keys.public) =
                asymmetric_keys(algorithm, state, endpoint, current_file, previous_file);
            policy = ClaimsPolicy {
                issuer: (byte & 4 != 0).then(|| "https://tokens.example".to_owned()),
                audience: (byte & 8 != 0).then(|| "api".to_owned()),
            };
            asymmetric = Some(state);
        }
    }
    Some(Input {
        endpoint,
        method,
        path,
        keys,
        current_bytes,
        previous_bytes,
        ttl_secs,
        algorithm,
        policy,
        jwks_max_age: if configuration.is_some() {
            ttl_secs - 1
        } else {
            300
        },
        asymmetric,
        body,
    })
}

/// The private keys' `d` members the host holds, which no response may
/// ever show: the creator's private key's, and any a broken set holds
/// (`Asymmetric::PrivateInSet`, also on the verifier).
fn secrets(keys: &FixedKeys) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Ok(key) = &keys.private {
        secrets.extend(
            object(&key.to_private_jwk())
                .and_then(|jwk| jwk.get("d").and_then(Value::as_str).map(str::to_owned)),
        );
    }
    if let Ok(set) = &keys.public
        && let Some(Value::Array(members)) = object(set.json()).and_then(|mut o| o.remove("keys"))
    {
        secrets.extend(
            members
                .iter()
                .filter_map(|member| member.get("d").and_then(Value::as_str))
                .map(str::to_owned),
        );
    }
    secrets
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = parse(data) else { return };
    let Input {
        endpoint,
        method,
        path,
        keys,
        current_bytes,
        previous_bytes,
        ttl_secs,
        algorithm,
        policy,
        jwks_max_age,
        asymmetric,
        body,
    } = input;
    let config = Config {
        token_ttl: std::time::Duration::from_secs(ttl_secs),
        algorithm,
        claims: policy.clone(),
        jwks_max_age: std::time::Duration::from_secs(jwks_max_age),
        ..Config::default()
    };
    let request = Request { method, path, body };
    let response = handle(endpoint, &config, request, &keys);

    let in_order = match asymmetric {
        Some(state) => state.in_order(endpoint),
        None => keys.all_usable(),
    };
    // No response shows a private key, whatever went wrong.
    let answered = String::from_utf8_lossy(&response.body);
    for secret in secrets(&keys) {
        assert!(
            !answered.contains(&secret),
            "a response shows a private key: {response:?}"
        );
    }
    if path == JWKS_PATH {
        check_key_set_route(endpoint, &config, method, asymmetric, &keys, &response);
    }

    if check_shape(endpoint, &response, !in_order).is_some() || response.status != 200 {
        return;
    }
    let answer = text(&response);
    match path {
        "/healthz" => assert_eq!(answer, "ok"),
        "/readyz" => {
            assert_eq!(answer, "ready");
            match asymmetric {
                Some(state) => assert!(state.in_order(endpoint), "{state:?} {endpoint:?} ready"),
                None => assert!(
                    keys.all_usable() || endpoint == Endpoint::Creator && keys.current.is_ok()
                ),
            }
        }
        JWKS_PATH => {}
        _ if endpoint == Endpoint::Creator => {
            // The username asked for, read with types of our own (not the
            // contract's). Not as a `Value`: JSON allows lone surrogates in
            // strings, which serde_json refuses in a `Value` but skips in
            // fields a struct ignores, as the services do.
            #[derive(serde::Deserialize)]
            struct Create {
                username: String,
                #[allow(dead_code)]
                password: String,
            }
            let create: Create = serde_json::from_slice(body).expect("a 200 for a create body");
            let username = create.username.as_str();
            match &keys.private {
                Ok(key) if algorithm.is_asymmetric() => {
                    // The key's id and public key, computed here from its JWK.
                    let jwk = object(&key.to_public_jwk()).expect("a JWK");
                    let kid = thumbprint(algorithm, &jwk).expect("a JWK of the algorithm");
                    let public = Signing::of(key).public();
                    published::check_issued(
                        answer, username, algorithm, &kid, &public, ttl_secs, &policy,
                    );
                }
                _ => {
                    assert_eq!(algorithm, Algorithm::Hs256, "a token without a private key");
                    check_issued(answer, username, &current_bytes, config.token_ttl.as_secs());
                }
            }
            // And the verifier accepts what the creator signed, when it
            // publishes the signing key. Issue times are whole seconds, so a
            // token lives between ttl - 1 and ttl seconds: at 1 or 2 s it
            // may have expired already.
            if ttl_secs < 3 || asymmetric.is_some_and(|state| !state.in_order(endpoint)) {
                return;
            }
            let verify_body = serde_json::json!({ "token": answer }).to_string();
            let request = Request {
                method: "POST",
                path: "/verifier",
                body: verify_body.as_bytes(),
            };
            let verified = handle(Endpoint::Verifier, &config, request, &keys);
            assert_eq!((verified.status, text(&verified)), (200, username));
        }
        _ => {
            #[derive(serde::Deserialize)]
            struct Verify {
                token: String,
            }
            let verify: Verify = serde_json::from_slice(body).expect("a 200 for a verify body");
            let token = verify.token.as_str();
            if algorithm.is_asymmetric() {
                let set = keys.public.as_ref().expect("a 200 with a key set");
                let independent = published::read_set(algorithm, set.json());
                published::check_accepted(token, answer, algorithm, &independent, &policy);
            } else {
                let mut accepted: Vec<&[u8]> = vec![&current_bytes];
                if !previous_bytes.is_empty() {
                    accepted.push(&previous_bytes);
                }
                check_accepted(token, answer, &accepted);
            }
        }
    }
});

/// `GET /.well-known/jwks.json`: under HS256 a 404 whatever the method;
/// otherwise, for a GET, the set exactly when it is a valid public set of
/// the algorithm, as `application/jwk-set+json` with `Cache-Control:
/// public, max-age=N`, no key with a private member (read with serde_json),
/// every kid the key's RFC 7638 thumbprint (computed here).
fn check_key_set_route(
    endpoint: Endpoint,
    config: &Config,
    method: &str,
    asymmetric: Option<Asymmetric>,
    keys: &FixedKeys,
    response: &token_contract::Response,
) {
    let Some(state) = asymmetric else {
        assert_eq!(
            response.status, 404,
            "{endpoint:?}: a JWK Set under HS256: {response:?}"
        );
        return;
    };
    if method != "GET" {
        assert_eq!(response.status, 405, "{response:?}");
        return;
    }
    assert_eq!(
        response.status == 200,
        state.set_is_valid(),
        "{state:?}: {response:?}"
    );
    if response.status != 200 {
        return;
    }
    assert_eq!(response.content_type, JWKS_CONTENT_TYPE, "{response:?}");
    let cache_control: Vec<&str> = response
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Cache-Control"))
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(
        cache_control,
        [format!("public, max-age={}", config.jwks_max_age.as_secs())],
        "{response:?}"
    );
    let body = std::str::from_utf8(&response.body).expect("a JWK Set is UTF-8");
    assert_eq!(
        private_members_of_set(body),
        Some(Vec::new()),
        "the JWK Set route published a private member (or no set): {body}"
    );
    let set = keys.public.as_ref().expect("a 200 with a key set");
    assert_eq!(
        body,
        set.json(),
        "the JWK Set route answered another document"
    );
    let members = object(body).expect("an object")["keys"]
        .as_array()
        .expect("keys")
        .len();
    assert_eq!(
        published::read_set(config.algorithm, body).len(),
        members,
        "a published key whose kid is not its thumbprint, or not a key of {}: {body}",
        config.algorithm
    );
}
