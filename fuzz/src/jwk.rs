//! JSON Web Keys read without the code under test: the members as JSON
//! (`serde_json`), RFC 7638 thumbprints (canonical JSON, `sha2`'s SHA-256,
//! `base64`), and the keys themselves on RustCrypto's curves
//! (`ed25519-dalek`, `p256` 0.13), which jsonwebtoken also uses, where
//! token-contract goes through jwt-simple (`ed25519-compact`, `p256` 0.14,
//! `hmac-sha256`).
//!
//! Also the raw signing the fuzz targets need to make tokens of any shape:
//! Ed25519 and ECDSA P-256 over an arbitrary signing input.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
// ed25519-dalek's and p256's `Signer` and `Verifier` are the same traits
// (the `signature` crate).
use ed25519_dalek::{Signer as _, Verifier as _};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use token_contract::{Algorithm, PrivateKey};

/// Members that carry private key material in a JWK of any type: `d` (EC,
/// OKP, RSA), RSA's `p`, `q`, `dp`, `dq`, `qi`, `oth` (RFC 7518, 6.3.2), a
/// symmetric key's `k` (RFC 7518, 6.4.1) and an AKP key's `priv`. None of
/// them may ever be published.
pub const PRIVATE_MEMBERS: [&str; 9] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"];

/// The asymmetric algorithm that is not `alg`: the key a confused verifier
/// might take.
pub fn other_of(alg: Algorithm) -> Algorithm {
    if alg == Algorithm::EdDsa {
        Algorithm::Es256
    } else {
        Algorithm::EdDsa
    }
}

/// Whether a JWK object has a private member.
pub fn has_private_member(jwk: &Map<String, Value>) -> bool {
    PRIVATE_MEMBERS.iter().any(|name| jwk.contains_key(*name))
}

/// The members of a JWK Set document that hold private key material, as
/// `(key index, member)`; `None` when the document is not `{"keys": [...]}`
/// of objects.
pub fn private_members_of_set(json: &str) -> Option<Vec<(usize, String)>> {
    let document: Value = serde_json::from_str(json).ok()?;
    let keys = document.as_object()?.get("keys")?.as_array()?;
    let mut found = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let key = key.as_object()?;
        for name in PRIVATE_MEMBERS {
            if key.contains_key(name) {
                found.push((index, name.to_owned()));
            }
        }
    }
    Some(found)
}

/// The members RFC 7638 (section 3.2) hashes for a key of `alg`, in
/// lexicographic order.
fn required_members(alg: Algorithm) -> &'static [&'static str] {
    match alg {
        Algorithm::EdDsa => &["crv", "kty", "x"], // RFC 8037, section 2
        Algorithm::Es256 => &["crv", "kty", "x", "y"],
        Algorithm::Hs256 => &["k", "kty"],
    }
}

/// The RFC 7638 JWK thumbprint of a key of `alg`: SHA-256 over the JSON
/// object of its required members, sorted, without whitespace, with the
/// values as the JWK writes them, in base64url. `None` when a required
/// member is missing or not a string.
pub fn thumbprint(alg: Algorithm, jwk: &Map<String, Value>) -> Option<String> {
    let mut canonical = String::from("{");
    for (i, name) in required_members(alg).iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&serde_json::to_string(name).expect("a string serializes"));
        canonical.push(':');
        canonical.push_str(&serde_json::to_string(value).expect("a string serializes"));
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// The JSON text of a key as a JSON object, if it is one.
pub fn object(json: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(json).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// Strict base64url without padding (what RFC 7515 and 7517 require), of
/// exactly `len` bytes.
fn decode_exact(b64: &str, len: usize) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    (bytes.len() == len).then_some(bytes)
}

/// A public key of a deployment, read from its JWK by RustCrypto.
#[derive(Debug, Clone)]
pub enum Public {
    Ed25519 {
        key: ed25519_dalek::VerifyingKey,
        x: String,
    },
    P256 {
        key: p256::ecdsa::VerifyingKey,
        x: String,
        y: String,
    },
}

impl Public {
    /// The public key a JWK of `alg` describes: `kty` and `crv` of the
    /// algorithm, coordinates in canonical base64url of the right length,
    /// and a point RustCrypto accepts (on the curve; for Ed25519 one
    /// `ed25519-dalek` decompresses). Metadata (`alg`, `use`, `kid`) is not
    /// looked at.
    pub fn from_jwk(alg: Algorithm, jwk: &Map<String, Value>) -> Option<Self> {
        let member = |name: &str| jwk.get(name).and_then(Value::as_str);
        let canonical = |b64: &str, len: usize| {
            let bytes = decode_exact(b64, len)?;
            (URL_SAFE_NO_PAD.encode(&bytes) == b64).then_some(bytes)
        };
        match alg {
            Algorithm::EdDsa => {
                if member("kty")? != "OKP" || member("crv")? != "Ed25519" {
                    return None;
                }
                let x = member("x")?;
                let bytes: [u8; 32] = canonical(x, 32)?.try_into().ok()?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?;
                Some(Public::Ed25519 {
                    key,
                    x: x.to_owned(),
                })
            }
            Algorithm::Es256 => {
                if member("kty")? != "EC" || member("crv")? != "P-256" {
                    return None;
                }
                let (x, y) = (member("x")?, member("y")?);
                let mut point = vec![0x04];
                point.extend(canonical(x, 32)?);
                point.extend(canonical(y, 32)?);
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?;
                Some(Public::P256 {
                    key,
                    x: x.to_owned(),
                    y: y.to_owned(),
                })
            }
            Algorithm::Hs256 => None,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Public::Ed25519 { .. } => Algorithm::EdDsa,
            Public::P256 { .. } => Algorithm::Es256,
        }
    }

    /// Whether `signature` is this key's signature of `message`: Ed25519
    /// (RFC 8032) or ECDSA P-256 with SHA-256 over `r || s` (RFC 7518,
    /// 3.4), high or low `s` alike.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Public::Ed25519 { key, .. } => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            Public::P256 { key, .. } => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
        }
    }

    /// jsonwebtoken's key for it, from the JWK components.
    pub fn decoding_key(&self) -> jsonwebtoken::DecodingKey {
        match self {
            Public::Ed25519 { x, .. } => jsonwebtoken::DecodingKey::from_ed_components(x),
            Public::P256 { x, y, .. } => jsonwebtoken::DecodingKey::from_ec_components(x, y),
        }
        .expect("canonical base64url components")
    }

    /// The raw public key: Ed25519's 32 bytes, or the uncompressed SEC1 point.
    pub fn raw(&self) -> Vec<u8> {
        match self {
            Public::Ed25519 { key, .. } => key.to_bytes().to_vec(),
            Public::P256 { key, .. } => key.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    /// The compressed SEC1 point of a P-256 key (another form an attacker
    /// may try as an HMAC key); Ed25519 keys are compressed already.
    pub fn compressed(&self) -> Vec<u8> {
        match self {
            Public::Ed25519 { key, .. } => key.to_bytes().to_vec(),
            Public::P256 { key, .. } => key.to_encoded_point(true).as_bytes().to_vec(),
        }
    }

    /// The SubjectPublicKeyInfo PEM (RFC 7468), as `openssl pkey -pubout`
    /// writes it: DER prefixes written out here (RFC 8410, RFC 5480).
    pub fn pem(&self) -> String {
        const ED25519_SPKI: &[u8] = &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        const P256_SPKI: &[u8] = &[
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let prefix = match self {
            Public::Ed25519 { .. } => ED25519_SPKI,
            Public::P256 { .. } => P256_SPKI,
        };
        let der = [prefix, &self.raw()].concat();
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }
}

/// A private key of the contract's, as raw RustCrypto keys (from its
/// private JWK), to sign anything with.
pub enum Signing {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// How an ECDSA signature's `s` is written: `n - s` is as valid a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SForm {
    Low,
    High,
}

impl Signing {
    /// The raw key of `key`, read from its private JWK (`d`).
    pub fn of(key: &PrivateKey) -> Self {
        let jwk = object(&key.to_private_jwk()).expect("a private JWK is an object");
        let d = jwk
            .get("d")
            .and_then(Value::as_str)
            .and_then(|d| decode_exact(d, 32))
            .expect("a private JWK has a 32-byte d");
        let d: [u8; 32] = d.try_into().expect("32 bytes");
        match key.algorithm() {
            Algorithm::EdDsa => Signing::Ed25519(ed25519_dalek::SigningKey::from_bytes(&d)),
            _ => Signing::P256(
                p256::ecdsa::SigningKey::from_bytes(&d.into()).expect("a P-256 scalar"),
            ),
        }
    }

    pub fn public(&self) -> Public {
        match self {
            Signing::Ed25519(key) => {
                let key = key.verifying_key();
                Public::Ed25519 {
                    key,
                    x: URL_SAFE_NO_PAD.encode(key.to_bytes()),
                }
            }
            Signing::P256(key) => {
                let key = *key.verifying_key();
                let point = key.to_encoded_point(false);
                Public::P256 {
                    key,
                    x: URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed")),
                    y: URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed")),
                }
            }
        }
    }

    /// The signature of `message`: Ed25519, or ECDSA P-256 / SHA-256 as
    /// `r || s` with `s` in the form asked for.
    pub fn sign(&self, message: &[u8], form: SForm) -> Vec<u8> {
        match self {
            Signing::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
            Signing::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                let low = signature.normalize_s().unwrap_or(signature);
                match form {
                    SForm::Low => low.to_bytes().to_vec(),
                    SForm::High => high_s(&low).to_bytes().to_vec(),
                }
            }
        }
    }
}

/// The same ECDSA signature with `s` replaced by `n - s`.
pub fn high_s(signature: &p256::ecdsa::Signature) -> p256::ecdsa::Signature {
    let (r, s) = signature.split_scalars();
    p256::ecdsa::Signature::from_scalars(r, -s).expect("n - s is a valid s")
}
