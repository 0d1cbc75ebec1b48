//! Keys for fuzz inputs: arbitrary ones, and the fixed ones the seed corpus
//! was signed with.

use arbitrary::Arbitrary;
use token_contract::{Algorithm, KeyError, Keys, PrivateKey, PublicKeySet, SigningKey};

/// A well-formed key file's contents made from 64 arbitrary bytes: 128
/// lowercase hex characters, as keycreator writes them.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBytes(pub [u8; 64]);

impl KeyBytes {
    /// The key file's contents, which are also the HMAC key.
    pub fn file_contents(&self) -> Vec<u8> {
        hex(&self.0).into_bytes()
    }

    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_file_contents(&self.file_contents())
            .expect("128 lowercase hex characters are a key")
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key id our services put in `kid`, computed here from its definition
/// (first 8 bytes of SHA-256 over the key file's contents, in hex), not by
/// the code under test.
pub fn expected_kid(file_contents: &[u8]) -> String {
    hex(&hmac_sha256::Hash::hash(file_contents)[..8])
}

/// The current key of the seed corpus: SHA-512 of "fuzz-current" in hex, as
/// keycreator would write it for `KEY=fuzz-current` (see `fuzz/seeds.py`).
pub const SEED_CURRENT_KEY: &[u8; 128] =
    b"39147a8482cb09bb5a73e3254cc36a4024431b66a9daa638d3bfc860c60ea4e3\
eaaae20ce1749126803df269a66bc90ac6b9288cc706b8245ee5f463bfe67eb6";

/// The previous key of the seed corpus (`KEY=fuzz-previous`).
pub const SEED_PREVIOUS_KEY: &[u8; 128] =
    b"b449b36fcc1c0a03e2efac612eb1004c801a1be76da2d9e53902d76f5eb08503\
7bd9e09aa295089be10696b9cf9762505ba9dbe0feebde1c659ac5d82ef1027a";

/// The key pair of `alg` keycreator derives from a key file's contents.
pub fn derived(alg: Algorithm, file_contents: &[u8]) -> PrivateKey {
    PrivateKey::derive(alg, file_contents).expect("a well-formed key file derives a key pair")
}

/// Keys as a host hands them to the contract, fixed for one input: the
/// HS256 key files, and for EdDSA and ES256 the private key (creator) and
/// the public key set.
pub struct FixedKeys {
    pub current: Result<SigningKey, KeyError>,
    pub previous: Result<Option<SigningKey>, KeyError>,
    pub private: Result<PrivateKey, KeyError>,
    pub public: Result<PublicKeySet, KeyError>,
}

impl FixedKeys {
    /// An HS256 deployment's keys: no EdDSA or ES256 files, as a host
    /// reports them.
    pub fn valid(current: SigningKey, previous: Option<SigningKey>) -> Self {
        Self::hs256(Ok(current), Ok(previous))
    }

    pub fn hs256(
        current: Result<SigningKey, KeyError>,
        previous: Result<Option<SigningKey>, KeyError>,
    ) -> Self {
        Self {
            current,
            previous,
            private: Err(KeyError::Missing("/usr/share/key/signing-key.json".into())),
            public: Err(KeyError::Missing("/usr/share/key/jwks.json".into())),
        }
    }

    /// Whether every HS256 key the services may need is usable: then no
    /// request to an HS256 deployment may be answered with a 5xx.
    pub fn all_usable(&self) -> bool {
        self.current.is_ok() && self.previous.is_ok()
    }
}

impl Keys for FixedKeys {
    fn current(&self) -> Result<SigningKey, KeyError> {
        self.current.clone()
    }
    fn previous(&self) -> Result<Option<SigningKey>, KeyError> {
        self.previous.clone()
    }
    // The key as the host has it, whatever `alg` is asked for: a host
    // holding a key of another algorithm reports `WrongAlgorithm` itself
    // (`KeyFiles` does), which an input states as the error.
    fn private_key(&self, _alg: Algorithm) -> Result<PrivateKey, KeyError> {
        self.private.clone()
    }
    fn public_keys(&self) -> Result<PublicKeySet, KeyError> {
        self.public.clone()
    }
}
