//! The keys of the asymmetric algorithms (EdDSA, ES256), as JSON Web Keys.
//!
//! Operators keep one secret, `KEY`. keycreator hashes it into the key file
//! contents as for HS256 and derives a key pair from those bytes
//! ([`PrivateKey::derive`]), so every creator replica signs with the same key
//! without a second secret to distribute. It writes two files next to
//! `KEY_FILE`:
//!
//! - [`SIGNING_JWK_FILE_NAME`]: the current private key as a private JWK,
//!   only for the creator, which signs;
//! - [`JWKS_FILE_NAME`]: a JWK Set (RFC 7517, section 5) of the public keys
//!   that verify tokens now (current, and during a rotation the next and the
//!   previous one), for the verifier and for anyone the creator and the
//!   verifier publish it to at `/.well-known/jwks.json`.
//!
//! Every key's `kid` is its RFC 7638 JWK thumbprint, which any client can
//! recompute from the public key.
//!
//! Parsing is jwt-simple's strict JWK import: a public key with a private
//! member (`d`), an unknown curve, a duplicate member or an `alg` of another
//! algorithm is refused, so a set that parses here holds only public keys.

use std::fmt;
use std::sync::Arc;

use jwt_simple::prelude::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair, ES256PublicKey, Ed25519KeyPair,
    Ed25519PublicKey, EdDSAKeyPairLike, EdDSAPublicKeyLike,
};
use p256::elliptic_curve::array::Array;
use p256::elliptic_curve::consts::U48;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::{Field, PrimeField};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::alg::Algorithm;
use crate::key::{KEY_HEX_LEN, KeyError, SigningKey};

/// File name of the creator's private key, in the directory of `KEY_FILE`.
pub const SIGNING_JWK_FILE_NAME: &str = "signing-key.json";

/// File name of the public key set, in the directory of `KEY_FILE`.
pub const JWKS_FILE_NAME: &str = "jwks.json";

/// Largest key file of either kind read: a set of a few keys is under 1 KiB.
pub const MAX_JWK_FILE_BYTES: usize = 16 * 1024;

/// At most this many keys in a set (current, next, previous, and room).
pub const MAX_KEYS_IN_SET: usize = 8;

/// HKDF salt of the key derivation. Its version names the derivation: a
/// different derivation would give every deployment new keys, so it would
/// get a new version, and this one would stay for the keys in use.
pub const DERIVATION_SALT: &[u8] = b"wasm-jwt key derivation v1";
/// HKDF info for the Ed25519 seed (RFC 8032, 5.1.5: any 32 bytes).
pub const ED25519_SEED_INFO: &[u8] = b"wasm-jwt v1 EdDSA Ed25519 seed";
/// HKDF info for the P-256 private scalar.
pub const P256_SCALAR_INFO: &[u8] = b"wasm-jwt v1 ES256 P-256 scalar";

/// A private key that signs tokens, with its thumbprint as key id.
///
/// Cheap to clone, for hosts that cache it (jwt-simple's P-256 key pair is
/// not `Clone`, hence the `Arc`s).
#[derive(Clone)]
pub enum PrivateKey {
    Ed25519(Arc<Ed25519KeyPair>),
    P256(Arc<ES256KeyPair>),
}

impl PrivateKey {
    /// Derives the key pair of `alg` from the contents of an HS256 key file
    /// (the 128 lowercase hex characters keycreator writes for `KEY`):
    ///
    /// ```text
    /// prk  = HKDF-Extract(salt = DERIVATION_SALT, ikm = key file contents)
    /// EdDSA: seed = HKDF-Expand(prk, ED25519_SEED_INFO, 32)          -> Ed25519 key pair
    /// ES256: d    = OS2IP(HKDF-Expand(prk, P256_SCALAR_INFO, 48)) mod n
    /// ```
    ///
    /// For P-256, 48 bytes (128 bits more than the order `n`) reduced modulo
    /// `n` give a scalar whose statistical distance from uniform is below
    /// 2^-128 (FIPS 186-5, A.2.1 asks for 64 extra bits; RFC 9380's
    /// `hash_to_field` reduces 48 bytes the same way). A zero scalar, which
    /// has probability about 2^-256, is refused rather than patched.
    pub fn derive(alg: Algorithm, key_file_contents: &[u8]) -> Result<Self, KeyError> {
        // The same checks as an HS256 key file: what keycreator writes.
        SigningKey::from_file_contents(key_file_contents)?;
        debug_assert_eq!(key_file_contents.len(), KEY_HEX_LEN);
        let prk = hmac_sha256::HKDF::extract(DERIVATION_SALT, key_file_contents);
        let key = match alg {
            Algorithm::EdDsa => {
                let mut seed = [0u8; 32];
                hmac_sha256::HKDF::expand(&mut seed, prk, ED25519_SEED_INFO);
                let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
                let key = Ed25519KeyPair::from_bytes(&pair[..]).map_err(derivation_failed)?;
                let kid = key.jwk_thumbprint();
                PrivateKey::Ed25519(Arc::new(key.with_key_id(&kid)))
            }
            Algorithm::Es256 => {
                let mut okm = Array::<u8, U48>::default();
                hmac_sha256::HKDF::expand(&mut okm, prk, P256_SCALAR_INFO);
                let scalar = <p256::Scalar as Reduce<Array<u8, U48>>>::reduce(&okm);
                if bool::from(scalar.is_zero()) {
                    return Err(KeyError::Malformed(
                        "this secret derives the P-256 scalar 0; choose another KEY".into(),
                    ));
                }
                let key = ES256KeyPair::from_bytes(&scalar.to_repr()).map_err(derivation_failed)?;
                let kid = key.jwk_thumbprint();
                PrivateKey::P256(Arc::new(key.with_key_id(&kid)))
            }
            Algorithm::Hs256 => {
                return Err(KeyError::Malformed(
                    "HS256 signs with the key file itself; there is no key pair to derive".into(),
                ));
            }
        };
        Ok(key)
    }

    /// Reads the private JWK keycreator wrote ([`SIGNING_JWK_FILE_NAME`]),
    /// which must be a key of `alg` whose `kid` is its thumbprint.
    pub fn from_jwk(alg: Algorithm, json: &str) -> Result<Self, KeyError> {
        let malformed = |why: &str| KeyError::Malformed(format!("{SIGNING_JWK_FILE_NAME}: {why}"));
        if json.len() > MAX_JWK_FILE_BYTES {
            return Err(malformed("larger than any private key"));
        }
        let key = match alg {
            Algorithm::EdDsa => {
                Ed25519KeyPair::from_jwk(json).map(|key| PrivateKey::Ed25519(Arc::new(key)))
            }
            Algorithm::Es256 => {
                ES256KeyPair::from_jwk(json).map(|key| PrivateKey::P256(Arc::new(key)))
            }
            Algorithm::Hs256 => return Err(malformed("HS256 has no private JWK")),
        };
        let key = key.map_err(|_| match key_algorithm(json) {
            Some(other) if other != alg.name() => KeyError::WrongAlgorithm(format!(
                "{SIGNING_JWK_FILE_NAME} holds an {other} key, but TOKEN_ALG is {alg}: \
                 keycreator and the services must be given the same TOKEN_ALG"
            )),
            _ => malformed(&format!("not a private {alg} JWK")),
        })?;
        if key.kid() != Some(key.thumbprint().as_str()) {
            return Err(malformed(
                "its kid is not the key's JWK thumbprint (RFC 7638)",
            ));
        }
        Ok(key)
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PrivateKey::Ed25519(_) => Algorithm::EdDsa,
            PrivateKey::P256(_) => Algorithm::Es256,
        }
    }

    /// The key id tokens carry: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> Option<&str> {
        match self {
            PrivateKey::Ed25519(key) => key.key_id().as_deref(),
            PrivateKey::P256(key) => key.key_id().as_deref(),
        }
    }

    /// The private JWK, `d` included: what keycreator writes for the creator.
    pub fn to_private_jwk(&self) -> String {
        match self {
            PrivateKey::Ed25519(key) => key.to_jwk(),
            PrivateKey::P256(key) => key.to_jwk(),
        }
    }

    /// The public JWK (`kty`, `crv`, `x`[, `y`], `alg`, `use`, `kid`).
    pub fn to_public_jwk(&self) -> String {
        match self {
            PrivateKey::Ed25519(key) => key.public_key().to_jwk(),
            PrivateKey::P256(key) => key.public_key().to_jwk(),
        }
    }

    fn thumbprint(&self) -> String {
        match self {
            PrivateKey::Ed25519(key) => key.jwk_thumbprint(),
            PrivateKey::P256(key) => key.jwk_thumbprint(),
        }
    }
}

impl fmt::Debug for PrivateKey {
    // Never print key material, not even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, kid {:?})", self.algorithm(), self.kid())
    }
}

fn derivation_failed(error: jwt_simple::Error) -> KeyError {
    KeyError::Malformed(format!("key derivation failed: {error}"))
}

/// The `alg` a JWK names, if it names one (for telling a key of another
/// algorithm from a broken one).
fn key_algorithm(json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Alg {
        alg: Option<String>,
    }
    serde_json::from_str::<Alg>(json).ok()?.alg
}

/// A public key from the set, ready to verify.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Ed25519(Ed25519PublicKey),
    P256(ES256PublicKey),
}

/// The public keys of the deployment as one JWK Set document.
///
/// Kept as the document itself: the verifier looks up one key per token
/// ([`find`](Self::find)) and parses only that one, and the JWK Set route
/// answers the document after [`validate`](Self::validate) has checked
/// every key in it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKeySet {
    json: String,
}

#[derive(Deserialize)]
struct SetDocument<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct KeyId {
    kid: Option<String>,
    alg: Option<String>,
}

impl PublicKeySet {
    /// Builds the set keycreator writes: these keys' public halves, in order.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a PrivateKey>) -> Self {
        let members: Vec<String> = keys.into_iter().map(PrivateKey::to_public_jwk).collect();
        Self {
            json: format!("{{\"keys\":[{}]}}", members.join(",")),
        }
    }

    /// Takes a JWK Set document (the contents of [`JWKS_FILE_NAME`]); its
    /// keys are checked by [`validate`](Self::validate) and as they are used.
    pub fn from_json(json: impl Into<String>) -> Result<Self, KeyError> {
        let json = json.into();
        if json.len() > MAX_JWK_FILE_BYTES {
            return Err(KeyError::Malformed(format!(
                "{JWKS_FILE_NAME}: larger than {MAX_JWK_FILE_BYTES} bytes"
            )));
        }
        let set = Self { json };
        set.members()?;
        Ok(set)
    }

    /// The document, as published.
    pub fn json(&self) -> &str {
        &self.json
    }

    fn members(&self) -> Result<Vec<&RawValue>, KeyError> {
        let document: SetDocument<'_> = serde_json::from_str(&self.json).map_err(|e| {
            KeyError::Malformed(format!(
                "{JWKS_FILE_NAME}: not a JWK Set ({{\"keys\": [...]}}): {e}"
            ))
        })?;
        if document.keys.len() > MAX_KEYS_IN_SET {
            return Err(KeyError::Malformed(format!(
                "{JWKS_FILE_NAME}: more than {MAX_KEYS_IN_SET} keys"
            )));
        }
        Ok(document.keys)
    }

    /// Checks every key: a public key of `alg` (no private member), whose
    /// `kid` is its thumbprint, each `kid` once, at least one key. Returns
    /// the key ids in order.
    pub fn validate(&self, alg: Algorithm) -> Result<Vec<String>, KeyError> {
        let members = self.members()?;
        if members.is_empty() {
            return Err(KeyError::Malformed(format!(
                "{JWKS_FILE_NAME}: holds no key"
            )));
        }
        let mut kids: Vec<String> = Vec::with_capacity(members.len());
        for (index, member) in members.iter().enumerate() {
            let (key, kid) = parse_public(alg, member.get())
                .map_err(|e| prefix_error(e, &format!("key {index}")))?;
            let thumbprint = match &key {
                PublicKey::Ed25519(key) => key.jwk_thumbprint(),
                PublicKey::P256(key) => key.jwk_thumbprint(),
            };
            if kid.as_deref() != Some(thumbprint.as_str()) {
                return Err(KeyError::Malformed(format!(
                    "{JWKS_FILE_NAME}: key {index}: its kid is not its JWK thumbprint (RFC 7638)"
                )));
            }
            if kids.contains(&thumbprint) {
                return Err(KeyError::Malformed(format!(
                    "{JWKS_FILE_NAME}: key {index}: kid {thumbprint} appears twice"
                )));
            }
            kids.push(thumbprint);
        }
        Ok(kids)
    }

    /// The key of `alg` whose `kid` is `kid`, or `None` when the set has no
    /// key of that id. Only that key is parsed.
    pub fn find(&self, alg: Algorithm, kid: &str) -> Result<Option<PublicKey>, KeyError> {
        for member in self.members()? {
            let id: KeyId = serde_json::from_str(member.get()).map_err(|e| {
                KeyError::Malformed(format!("{JWKS_FILE_NAME}: a key is not a JSON object: {e}"))
            })?;
            if id.kid.as_deref() == Some(kid) {
                if id.alg.as_deref().is_some_and(|named| named != alg.name()) {
                    return Err(wrong_algorithm(alg, id.alg.as_deref()));
                }
                return parse_public(alg, member.get()).map(|(key, _)| Some(key));
            }
        }
        Ok(None)
    }
}

impl fmt::Debug for PublicKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKeySet")
            .field("json", &self.json)
            .finish()
    }
}

/// One public JWK as a key of `alg`, with its `kid`.
fn parse_public(alg: Algorithm, json: &str) -> Result<(PublicKey, Option<String>), KeyError> {
    let parsed = match alg {
        Algorithm::EdDsa => Ed25519PublicKey::from_jwk(json).map(|key| {
            let kid = key.key_id().clone();
            (PublicKey::Ed25519(key), kid)
        }),
        Algorithm::Es256 => ES256PublicKey::from_jwk(json).map(|key| {
            let kid = key.key_id().clone();
            (PublicKey::P256(key), kid)
        }),
        Algorithm::Hs256 => {
            return Err(KeyError::Malformed(format!(
                "{JWKS_FILE_NAME}: HS256 keys are never published"
            )));
        }
    };
    parsed.map_err(|_| match key_algorithm(json) {
        Some(other) if other != alg.name() => wrong_algorithm(alg, Some(&other)),
        _ => KeyError::Malformed(format!(
            "{JWKS_FILE_NAME}: not a public {alg} JWK (a private member, another curve, or a malformed value)"
        )),
    })
}

fn wrong_algorithm(alg: Algorithm, found: Option<&str>) -> KeyError {
    KeyError::WrongAlgorithm(format!(
        "{JWKS_FILE_NAME} holds {} keys, but TOKEN_ALG is {alg}: keycreator and the services \
         must be given the same TOKEN_ALG",
        found.unwrap_or("other")
    ))
}

fn prefix_error(error: KeyError, what: &str) -> KeyError {
    match error {
        KeyError::Malformed(why) => KeyError::Malformed(match why.strip_prefix(JWKS_FILE_NAME) {
            Some(rest) => format!("{JWKS_FILE_NAME}: {what}{rest}"),
            None => format!("{what}: {why}"),
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `echo benchmark-secret | sha512sum | head -c 128`: the key file of
    /// `KEY=benchmark-secret`.
    const BENCHMARK_KEY: &[u8] = b"42a5dd4b401dc38d1857b79e53432bf33b9f4d36301fd5c863280c0a550777172b7235376c2a35d2d5eb857407575559ec6874127f05fe8f098217cfc9225e63";

    /// Known answers for `KEY=benchmark-secret`, computed by an independent
    /// implementation (Python's `cryptography`: HKDF, Ed25519, P-256;
    /// tests/keycreator/test_key_derivation.py checks keycreator against it).
    const EDDSA_D: &str = "lhQkVk61JpU_xVlx4XbTqYzYbbXAFyVDrHia9NNou0o";
    const EDDSA_X: &str = "jvTChmxWsEcC9bjQel9zNQ2bEt-v3wWxNmglnhDAh_w";
    const EDDSA_KID: &str = "WAjEP1K8MyFItZbcjatVC6KHiVeieEajcL70fkZYkQQ";
    const ES256_D: &str = "Qt-UZm5YriyRPvuBa5YbC6MboZY5o2TExEBSSe0b7T0";
    const ES256_X: &str = "X6OQxmdSbpxK2KQ4fVhEbPNzPvPFyfgOQUkPssDiRwg";
    const ES256_Y: &str = "240r_2auUwUcDA0s_IJ84k89uPfsBHB9kGyf8dHctZI";
    const ES256_KID: &str = "gO3hpCbFby0fYbw77lQ0iHI4Rie1uIbodd-F-RiB02U";

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    fn key_file(fill: u8) -> Vec<u8> {
        vec![fill; KEY_HEX_LEN]
    }

    #[test]
    fn eddsa_derivation_matches_the_known_answer() {
        let key = PrivateKey::derive(Algorithm::EdDsa, BENCHMARK_KEY).unwrap();
        assert_eq!(key.kid(), Some(EDDSA_KID));
        assert_eq!(
            json(&key.to_private_jwk()),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": EDDSA_X, "d": EDDSA_D,
                               "alg": "EdDSA", "use": "sig", "kid": EDDSA_KID})
        );
        assert_eq!(
            json(&key.to_public_jwk()),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": EDDSA_X,
                               "alg": "EdDSA", "use": "sig", "kid": EDDSA_KID})
        );
    }

    #[test]
    fn es256_derivation_matches_the_known_answer() {
        let key = PrivateKey::derive(Algorithm::Es256, BENCHMARK_KEY).unwrap();
        assert_eq!(key.kid(), Some(ES256_KID));
        assert_eq!(
            json(&key.to_private_jwk()),
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": ES256_X, "y": ES256_Y,
                               "d": ES256_D, "alg": "ES256", "use": "sig", "kid": ES256_KID})
        );
        assert!(!key.to_public_jwk().contains("\"d\""));
    }

    #[test]
    fn derivation_is_deterministic_and_separates_secrets_and_algorithms() {
        for alg in [Algorithm::EdDsa, Algorithm::Es256] {
            let a = PrivateKey::derive(alg, &key_file(b'a')).unwrap();
            let again = PrivateKey::derive(alg, &key_file(b'a')).unwrap();
            let b = PrivateKey::derive(alg, &key_file(b'b')).unwrap();
            assert_eq!(a.to_private_jwk(), again.to_private_jwk());
            assert_ne!(a.kid(), b.kid());
        }
        assert!(PrivateKey::derive(Algorithm::Hs256, BENCHMARK_KEY).is_err());
        // Only what keycreator writes: 128 lowercase hex characters.
        for bad in [&b"abc"[..], &BENCHMARK_KEY[..127], b"benchmark-secret"] {
            assert!(matches!(
                PrivateKey::derive(Algorithm::EdDsa, bad),
                Err(KeyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn a_private_jwk_loads_only_for_its_algorithm_with_its_thumbprint_as_kid() {
        let key = PrivateKey::derive(Algorithm::EdDsa, BENCHMARK_KEY).unwrap();
        let loaded = PrivateKey::from_jwk(Algorithm::EdDsa, &key.to_private_jwk()).unwrap();
        assert_eq!(loaded.kid(), Some(EDDSA_KID));
        let error = PrivateKey::from_jwk(Algorithm::Es256, &key.to_private_jwk()).unwrap_err();
        assert!(
            matches!(&error, KeyError::WrongAlgorithm(why) if why.contains("holds an EdDSA key, but TOKEN_ALG is ES256")),
            "{error}"
        );
        // A public JWK is no private key; a relabelled kid is refused.
        assert!(PrivateKey::from_jwk(Algorithm::EdDsa, &key.to_public_jwk()).is_err());
        let relabelled = key.to_private_jwk().replace(EDDSA_KID, "some-other-kid");
        let error = PrivateKey::from_jwk(Algorithm::EdDsa, &relabelled).unwrap_err();
        assert!(error.to_string().contains("thumbprint"), "{error}");
        for garbage in ["", "{}", "null", "[]", "{\"kty\":\"OKP\"}"] {
            assert!(PrivateKey::from_jwk(Algorithm::EdDsa, garbage).is_err());
        }
        assert!(!format!("{loaded:?}").contains(EDDSA_D));
    }

    fn set_of(alg: Algorithm, fills: &[u8]) -> (PublicKeySet, Vec<PrivateKey>) {
        let keys: Vec<PrivateKey> = fills
            .iter()
            .map(|fill| PrivateKey::derive(alg, &key_file(*fill)).unwrap())
            .collect();
        (PublicKeySet::from_keys(&keys), keys)
    }

    #[test]
    fn a_set_validates_and_finds_its_keys_by_kid() {
        for alg in [Algorithm::EdDsa, Algorithm::Es256] {
            let (set, keys) = set_of(alg, b"abc");
            let kids: Vec<String> = keys.iter().map(|k| k.kid().unwrap().to_owned()).collect();
            assert_eq!(set.validate(alg).unwrap(), kids);
            assert_eq!(json(set.json())["keys"].as_array().unwrap().len(), 3);
            assert!(set.find(alg, &kids[2]).unwrap().is_some());
            assert!(set.find(alg, "not-a-kid").unwrap().is_none());
            let other = if alg == Algorithm::EdDsa {
                Algorithm::Es256
            } else {
                Algorithm::EdDsa
            };
            assert!(matches!(
                set.validate(other),
                Err(KeyError::WrongAlgorithm(_))
            ));
            assert!(matches!(
                set.find(other, &kids[0]),
                Err(KeyError::WrongAlgorithm(_))
            ));
        }
    }

    #[test]
    fn a_set_with_a_private_member_or_a_forged_kid_is_refused() {
        let key = PrivateKey::derive(Algorithm::EdDsa, BENCHMARK_KEY).unwrap();
        let with_private =
            PublicKeySet::from_json(format!("{{\"keys\":[{}]}}", key.to_private_jwk())).unwrap();
        let error = with_private.validate(Algorithm::EdDsa).unwrap_err();
        assert!(
            error.to_string().contains("not a public EdDSA JWK"),
            "{error}"
        );
        assert!(with_private.find(Algorithm::EdDsa, EDDSA_KID).is_err());

        let forged = key.to_public_jwk().replace(EDDSA_KID, "forged");
        let set = PublicKeySet::from_json(format!("{{\"keys\":[{forged}]}}")).unwrap();
        assert!(
            set.validate(Algorithm::EdDsa)
                .unwrap_err()
                .to_string()
                .contains("thumbprint")
        );

        let public = key.to_public_jwk();
        let twice = PublicKeySet::from_json(format!("{{\"keys\":[{public},{public}]}}")).unwrap();
        assert!(
            twice
                .validate(Algorithm::EdDsa)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn malformed_sets_are_errors_not_panics() {
        for bad in [
            "",
            "[]",
            "{}",
            "{\"keys\":{}}",
            "{\"keys\":[1]}",
            "{\"keys\":[],\"keys\":[]}",
            "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\",\"kid\":\"k\"}]}",
        ] {
            let checked = PublicKeySet::from_json(bad)
                .and_then(|set| set.validate(Algorithm::EdDsa).map(|_| set));
            assert!(checked.is_err(), "{bad}");
        }
        let empty = PublicKeySet::from_json("{\"keys\":[]}").unwrap();
        assert!(
            empty
                .validate(Algorithm::EdDsa)
                .unwrap_err()
                .to_string()
                .contains("no key")
        );
        let huge = format!(
            "{{\"keys\":[],\"pad\":\"{}\"}}",
            "a".repeat(MAX_JWK_FILE_BYTES)
        );
        assert!(PublicKeySet::from_json(huge).is_err());
        let many = format!("{{\"keys\":[{}]}}", ["{}"; MAX_KEYS_IN_SET + 1].join(","));
        assert!(PublicKeySet::from_json(many).is_err());
    }
}
