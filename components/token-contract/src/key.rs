//! The signing key files written by `keycreator` and read by the services.
//!
//! A key file holds the lowercase hex SHA-512 of a secret (128 ASCII
//! characters, no newline). Like the reference Go and Python services, the
//! HMAC key is those 128 ASCII bytes themselves, not the 64 bytes they encode;
//! that is what lets tokens interoperate with the reference system.
//!
//! Key rotation: besides `key.txt` (the current key, which signs) the same
//! directory may hold [`PREVIOUS_KEY_FILE_NAME`], the key being retired,
//! which the verifier still accepts during the overlap window. Each key is
//! named by its [key id](SigningKey::kid), carried in the `kid` header of the
//! tokens it signs.

use std::fmt;
use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::path::{Path, PathBuf};

use jwt_simple::algorithms::HS256Key;

use crate::alg::Algorithm;
use crate::jwk::{
    JWKS_FILE_NAME, MAX_JWK_FILE_BYTES, PrivateKey, PublicKeySet, SIGNING_JWK_FILE_NAME,
};

/// Where the key lives unless `KEY_FILE` says otherwise.
pub const DEFAULT_KEY_FILE: &str = "/usr/share/key/key.txt";

/// File name of the previous (retiring) key, in the directory of `KEY_FILE`.
pub const PREVIOUS_KEY_FILE_NAME: &str = "previous-key.txt";

/// Length of a lowercase hex SHA-512 digest.
pub const KEY_HEX_LEN: usize = 128;

/// How many bytes of the SHA-256 digest make up a key id (16 hex characters).
const KID_BYTES: usize = 8;

/// The path of the previous key file that belongs with `key_file`: the file
/// [`PREVIOUS_KEY_FILE_NAME`] in the same directory.
pub fn previous_key_path(key_file: impl AsRef<Path>) -> PathBuf {
    key_file.as_ref().with_file_name(PREVIOUS_KEY_FILE_NAME)
}

/// An HS256 key loaded from a well-formed key file.
#[derive(Clone)]
pub struct SigningKey {
    hs256: HS256Key,
    kid: String,
}

impl SigningKey {
    /// Validates the content of a key file and makes the key from it.
    pub fn from_file_contents(contents: &[u8]) -> Result<Self, KeyError> {
        if contents.len() != KEY_HEX_LEN {
            return Err(KeyError::Malformed(format!(
                "expected {KEY_HEX_LEN} hex characters, found {} bytes",
                contents.len()
            )));
        }
        if let Some(bad) = contents
            .iter()
            .find(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(KeyError::Malformed(format!(
                "unexpected byte 0x{bad:02x}; expected lowercase hex"
            )));
        }
        // HMAC hashes a key longer than its block (64 bytes for SHA-256)
        // before use (RFC 2104, section 2), so signing with the SHA-256 of
        // the 128-byte key gives the same tags as signing with the key, as
        // the reference services do. Hashing once here serves both the key
        // id and the HMAC, instead of hashing the key again for every tag.
        let digest = hmac_sha256::Hash::hash(contents);
        let kid = key_id(&digest);
        let hs256 = HS256Key::from_bytes(&digest).with_key_id(&kid);
        Ok(Self { hs256, kid })
    }

    /// The key id: lowercase hex of the first 8 bytes of SHA-256 over the HMAC
    /// key bytes (the 128 hex characters of the key file, no newline).
    ///
    /// It names the key in the `kid` header of every token the key signs, so
    /// a verifier holding two keys knows which one to check. A one-way hash
    /// truncated to 64 bits reveals nothing usable about a 512-bit key, and
    /// 64 bits are plenty to tell two keys apart.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Reads and validates the key file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::load_with(path.as_ref(), read_prefix)
    }

    /// Like [`load`](Self::load), reading the file with `read`, which
    /// returns at most the first `limit` bytes of the file at `path` (see
    /// [`ReadKeyFile`]).
    pub fn load_with(path: &Path, read: ReadKeyFile) -> Result<Self, KeyError> {
        // Reading one byte more than a key tells a too-long file apart, and a
        // wrong file cannot make us allocate much.
        match read(path, KEY_HEX_LEN + 1) {
            Ok(contents) => Self::from_contents_of(path, &contents),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(KeyError::Missing(path.display().to_string()))
            }
            Err(e) => Err(KeyError::Unreadable(format!("{}: {e}", path.display()))),
        }
    }

    /// Like [`from_file_contents`](Self::from_file_contents), for the
    /// contents (or a prefix longer than any key) of the file at `path`,
    /// which errors name: with two key files, "malformed" alone is ambiguous.
    fn from_contents_of(path: &Path, contents: &[u8]) -> Result<Self, KeyError> {
        if contents.len() > KEY_HEX_LEN {
            return Err(KeyError::Malformed(format!(
                "{}: expected {KEY_HEX_LEN} hex characters, found more",
                path.display()
            )));
        }
        Self::from_file_contents(contents).map_err(|e| match e {
            KeyError::Malformed(why) => KeyError::Malformed(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// Like [`load`](Self::load), for a file that may legitimately be
    /// absent (the previous key): `Ok(None)` when it does not exist.
    pub fn load_optional(path: impl AsRef<Path>) -> Result<Option<Self>, KeyError> {
        Self::load_optional_with(path.as_ref(), read_prefix)
    }

    /// Like [`load_with`](Self::load_with), for a file that may
    /// legitimately be absent (the previous key): `Ok(None)` when it does
    /// not exist.
    pub fn load_optional_with(path: &Path, read: ReadKeyFile) -> Result<Option<Self>, KeyError> {
        absent_is_none(Self::load_with(path, read))
    }

    pub(crate) fn hs256(&self) -> &HS256Key {
        &self.hs256
    }
}

/// A key that may legitimately be absent: `Ok(None)` when it is missing.
fn absent_is_none(key: Result<SigningKey, KeyError>) -> Result<Option<SigningKey>, KeyError> {
    match key {
        Ok(key) => Ok(Some(key)),
        Err(KeyError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where a service gets its keys; each host decides how they are read and
/// cached. Which of them a service asks for depends on its `TOKEN_ALG`.
pub trait Keys {
    /// HS256: the current key (`key.txt`): it signs, and it must exist.
    fn current(&self) -> Result<SigningKey, KeyError>;

    /// HS256: the previous key while one is being retired; `Ok(None)` when
    /// there is none. Asked for only when a token may need it.
    fn previous(&self) -> Result<Option<SigningKey>, KeyError>;

    /// EdDSA and ES256: the private key that signs
    /// ([`SIGNING_JWK_FILE_NAME`]); only the creator has it.
    fn private_key(&self, alg: Algorithm) -> Result<PrivateKey, KeyError>;

    /// EdDSA and ES256: the public keys that verify tokens
    /// ([`JWKS_FILE_NAME`]).
    fn public_keys(&self) -> Result<PublicKeySet, KeyError>;
}

/// How a host reads a key file: at most the first `limit` bytes of the file
/// at `path`, with [`ErrorKind::NotFound`] when it does not exist.
pub type ReadKeyFile = fn(path: &Path, limit: usize) -> io::Result<Vec<u8>>;

/// [`ReadKeyFile`] through `std::fs`: one bounded read, no `stat` for a size
/// hint.
pub fn read_prefix(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let mut contents = Vec::with_capacity(limit);
    File::open(path)?
        .take(limit as u64)
        .read_to_end(&mut contents)?;
    Ok(contents)
}

/// Environment variable through which a host may hand the services the
/// contents of the key file (`KEY_FILE`), so that an instance serving one
/// request need not open it. Our runner does, with `--env-from-file`: it
/// reads the file once and re-reads it when it changes, where each fresh
/// instance would open, read and close it through WASI (about a fifth of
/// the creator's CPU per request; docs/benchmarks.md, round 5).
pub const KEY_CONTENTS_ENV: &str = "SIGNING_KEY";

/// Like [`KEY_CONTENTS_ENV`], for the [previous key file](previous_key_path).
pub const PREVIOUS_KEY_CONTENTS_ENV: &str = "PREVIOUS_SIGNING_KEY";

/// Like [`KEY_CONTENTS_ENV`], for the creator's private key
/// ([`SIGNING_JWK_FILE_NAME`]).
pub const SIGNING_JWK_CONTENTS_ENV: &str = "SIGNING_JWK";

/// Like [`KEY_CONTENTS_ENV`], for the public key set ([`JWKS_FILE_NAME`]).
pub const JWKS_CONTENTS_ENV: &str = "JWKS";

/// The key files as keycreator writes them, read again on every call: for
/// hosts that run a fresh instance per request and so have nothing to cache.
#[derive(Clone)]
pub struct KeyFiles {
    current: PathBuf,
    /// The files' contents, where the host passed them.
    current_contents: Option<Vec<u8>>,
    previous_contents: Option<Vec<u8>>,
    signing_jwk_contents: Option<Vec<u8>>,
    jwks_contents: Option<Vec<u8>>,
    read: ReadKeyFile,
}

impl KeyFiles {
    /// `key_file` and the [previous key file](previous_key_path) next to it,
    /// read with `std::fs`.
    pub fn new(key_file: impl Into<PathBuf>) -> Self {
        Self::with_reader(key_file, read_prefix)
    }

    /// Like [`new`](Self::new), reading the files with `read`.
    pub fn with_reader(key_file: impl Into<PathBuf>, read: ReadKeyFile) -> Self {
        Self {
            current: key_file.into(),
            current_contents: None,
            previous_contents: None,
            signing_jwk_contents: None,
            jwks_contents: None,
            read,
        }
    }

    /// Uses the files' contents the host passed in the environment
    /// ([`KEY_CONTENTS_ENV`], [`PREVIOUS_KEY_CONTENTS_ENV`]), looked up with
    /// `lookup`, instead of reading the files. A file whose variable is
    /// unset is read as usual, so a host that could not read it (or does not
    /// know of these variables) leaves the errors to the guest's own read.
    pub fn with_contents_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        self.current_contents = lookup(KEY_CONTENTS_ENV).map(String::into_bytes);
        self.previous_contents = lookup(PREVIOUS_KEY_CONTENTS_ENV).map(String::into_bytes);
        self.signing_jwk_contents = lookup(SIGNING_JWK_CONTENTS_ENV).map(String::into_bytes);
        self.jwks_contents = lookup(JWKS_CONTENTS_ENV).map(String::into_bytes);
        self
    }

    /// The file `name` next to the key file.
    fn sibling(&self, name: &str) -> PathBuf {
        self.current.with_file_name(name)
    }

    /// A JSON key file's text: from the `contents` the host passed, or read.
    fn load_text(&self, path: &Path, contents: Option<&[u8]>) -> Result<String, KeyError> {
        let bytes = match contents {
            Some(contents) => contents.to_vec(),
            None => match (self.read)(path, MAX_JWK_FILE_BYTES + 1) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(KeyError::Missing(path.display().to_string()));
                }
                Err(e) => return Err(KeyError::Unreadable(format!("{}: {e}", path.display()))),
            },
        };
        if bytes.len() > MAX_JWK_FILE_BYTES {
            return Err(KeyError::Malformed(format!(
                "{}: larger than {MAX_JWK_FILE_BYTES} bytes",
                path.display()
            )));
        }
        String::from_utf8(bytes)
            .map_err(|_| KeyError::Malformed(format!("{}: not UTF-8", path.display())))
    }

    /// Whether the file at `path` (or its contents from the host) exists.
    fn exists(&self, path: &Path, contents: Option<&[u8]>) -> bool {
        contents.is_some() || (self.read)(path, 1).is_ok()
    }

    /// A missing key file of one algorithm family next to a file of the
    /// other says more than "does not exist": keycreator and this service
    /// were given different `TOKEN_ALG`s.
    fn explain_missing(&self, error: KeyError, wanted_asymmetric: bool) -> KeyError {
        let KeyError::Missing(path) = &error else {
            return error;
        };
        let (other, other_contents, ran_with) = if wanted_asymmetric {
            (&self.current, self.current_contents.as_deref(), "HS256")
        } else {
            (
                &self.sibling(JWKS_FILE_NAME),
                self.jwks_contents.as_deref(),
                "EdDSA or ES256",
            )
        };
        if !self.exists(other, other_contents) {
            return error;
        }
        let file_name = |p: &Path| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        };
        KeyError::WrongAlgorithm(format!(
            "key file {path} does not exist, but {} does: keycreator ran with TOKEN_ALG={ran_with}, \
             which this service's TOKEN_ALG does not match",
            file_name(other)
        ))
    }

    /// The key in the file at `path`: from the `contents` the host passed, or
    /// else read with `self.read`.
    fn load(&self, path: &Path, contents: Option<&[u8]>) -> Result<SigningKey, KeyError> {
        match contents {
            Some(contents) => SigningKey::from_contents_of(path, contents),
            None => SigningKey::load_with(path, self.read),
        }
    }
}

impl fmt::Debug for KeyFiles {
    // Never print key material, not even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = |path: &Path, contents: &Option<Vec<u8>>| match contents {
            Some(_) => format!("{} (contents from the host)", path.display()),
            None => path.display().to_string(),
        };
        let previous = previous_key_path(&self.current);
        let signing_jwk = self.sibling(SIGNING_JWK_FILE_NAME);
        let jwks = self.sibling(JWKS_FILE_NAME);
        f.debug_struct("KeyFiles")
            .field("current", &source(&self.current, &self.current_contents))
            .field("previous", &source(&previous, &self.previous_contents))
            .field(
                "signing_jwk",
                &source(&signing_jwk, &self.signing_jwk_contents),
            )
            .field("jwks", &source(&jwks, &self.jwks_contents))
            .finish()
    }
}

impl Keys for KeyFiles {
    fn current(&self) -> Result<SigningKey, KeyError> {
        self.load(&self.current, self.current_contents.as_deref())
            .map_err(|e| self.explain_missing(e, false))
    }

    fn previous(&self) -> Result<Option<SigningKey>, KeyError> {
        // Its path is worked out only here: most requests never need it.
        let path = previous_key_path(&self.current);
        absent_is_none(self.load(&path, self.previous_contents.as_deref()))
    }

    fn private_key(&self, alg: Algorithm) -> Result<PrivateKey, KeyError> {
        let path = self.sibling(SIGNING_JWK_FILE_NAME);
        let text = self
            .load_text(&path, self.signing_jwk_contents.as_deref())
            .map_err(|e| self.explain_missing(e, true))?;
        PrivateKey::from_jwk(alg, &text)
    }

    fn public_keys(&self) -> Result<PublicKeySet, KeyError> {
        let path = self.sibling(JWKS_FILE_NAME);
        let text = self
            .load_text(&path, self.jwks_contents.as_deref())
            .map_err(|e| self.explain_missing(e, true))?;
        PublicKeySet::from_json(text)
    }
}

/// The key id from the SHA-256 `digest` of the key: its first bytes in hex.
fn key_id(digest: &[u8; 32]) -> String {
    // A table lookup rather than `write!("{:02x}")`: `core::fmt` calls
    // through function pointers, which a fresh Wasm instance (one per
    // request) resolves on first use, and every instance computes this.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    digest[..KID_BYTES]
        .iter()
        .flat_map(|byte| [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]])
        .map(char::from)
        .collect()
}

impl fmt::Debug for SigningKey {
    // Never print key material, not even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// Why no key could be loaded. All of these are server-side conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Missing(String),
    Unreadable(String),
    Malformed(String),
    /// The key files are for another `TOKEN_ALG` than the service's.
    WrongAlgorithm(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Missing(path) => write!(f, "key file {path} does not exist"),
            KeyError::Unreadable(why) => write!(f, "key file is unreadable: {why}"),
            KeyError::Malformed(why) => write!(f, "key file is malformed: {why}"),
            KeyError::WrongAlgorithm(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8; 128] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
                               0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// `echo benchmark-secret | sha512sum | head -c 128`.
    const BENCHMARK_KEY: &str = "42a5dd4b401dc38d1857b79e53432bf33b9f4d36301fd5c863280c0a550777172b7235376c2a35d2d5eb857407575559ec6874127f05fe8f098217cfc9225e63";
    const BENCHMARK_KID: &str = "85191b07e2d97759";

    #[test]
    fn accepts_128_lowercase_hex_characters() {
        assert!(SigningKey::from_file_contents(GOOD).is_ok());
    }

    #[test]
    fn rejects_wrong_length_including_a_trailing_newline() {
        let mut with_newline = GOOD.to_vec();
        with_newline.push(b'\n');
        for bad in [&b""[..], &GOOD[..127], &with_newline[..]] {
            assert!(matches!(
                SigningKey::from_file_contents(bad),
                Err(KeyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn rejects_uppercase_and_non_hex() {
        for (i, b) in [(0, b'A'), (5, b'g'), (127, b' ')] {
            let mut key = *GOOD;
            key[i] = b;
            assert!(matches!(
                SigningKey::from_file_contents(&key),
                Err(KeyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn load_reads_the_file_and_refuses_longer_ones() {
        let dir = std::env::temp_dir().join(format!("key-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.txt");
        std::fs::write(&path, "ab".repeat(KEY_HEX_LEN / 2)).unwrap();
        assert!(SigningKey::load(&path).is_ok());
        std::fs::write(&path, "a".repeat(1 << 20)).unwrap();
        let error = SigningKey::load(&path).unwrap_err();
        assert!(matches!(&error, KeyError::Malformed(why) if why.contains("found more")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_is_reported_as_missing() {
        let err = SigningKey::load("/nonexistent/key.txt").unwrap_err();
        assert_eq!(err, KeyError::Missing("/nonexistent/key.txt".into()));
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn kid_is_the_first_8_bytes_of_sha256_of_the_key_text_in_hex() {
        // `printf %s "$(echo benchmark-secret | sha512sum | head -c 128)" | sha256sum | head -c 16`
        let key = SigningKey::from_file_contents(BENCHMARK_KEY.as_bytes()).unwrap();
        assert_eq!(key.kid(), BENCHMARK_KID);
        let other = SigningKey::from_file_contents(GOOD).unwrap();
        assert_ne!(other.kid(), key.kid());
        assert_eq!(other.kid().len(), 16);
        assert!(
            !BENCHMARK_KEY.contains(key.kid()),
            "the kid is not part of the key"
        );
    }

    #[test]
    fn previous_key_lives_next_to_the_key_file() {
        assert_eq!(
            previous_key_path("/usr/share/key/key.txt"),
            Path::new("/usr/share/key/previous-key.txt")
        );
        assert_eq!(
            previous_key_path("k/other-name.txt"),
            Path::new("k/previous-key.txt")
        );
    }

    #[test]
    fn an_absent_optional_key_is_none_and_a_broken_one_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("key-optional-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(PREVIOUS_KEY_FILE_NAME);
        assert!(SigningKey::load_optional(&path).unwrap().is_none());
        std::fs::write(&path, "not a key").unwrap();
        let error = SigningKey::load_optional(&path).unwrap_err();
        assert!(
            matches!(&error, KeyError::Malformed(why) if why.contains("previous-key.txt")),
            "{error}"
        );
        std::fs::write(&path, BENCHMARK_KEY).unwrap();
        let key = SigningKey::load_optional(&path).unwrap().unwrap();
        assert_eq!(key.kid(), BENCHMARK_KID);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_output_hides_the_key() {
        let key = SigningKey::from_file_contents(GOOD).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(..)");
        let files = KeyFiles::new("k/key.txt").with_contents_from(|_| Some(BENCHMARK_KEY.into()));
        let debug = format!("{files:?}");
        assert!(!debug.contains(BENCHMARK_KEY), "{debug}");
        assert!(
            debug.contains("k/key.txt (contents from the host)"),
            "{debug}"
        );
    }

    fn no_file_may_be_read(path: &Path, _limit: usize) -> io::Result<Vec<u8>> {
        panic!(
            "{} was read although the host passed its contents",
            path.display()
        )
    }

    fn no_file_exists(_path: &Path, _limit: usize) -> io::Result<Vec<u8>> {
        Err(io::Error::from(ErrorKind::NotFound))
    }

    #[test]
    fn contents_from_the_host_are_used_instead_of_the_files() {
        let from_host = |name: &str| match name {
            KEY_CONTENTS_ENV => Some(BENCHMARK_KEY.to_owned()),
            PREVIOUS_KEY_CONTENTS_ENV => Some(String::from_utf8(GOOD.to_vec()).unwrap()),
            _ => None,
        };
        let keys =
            KeyFiles::with_reader("/k/key.txt", no_file_may_be_read).with_contents_from(from_host);
        assert_eq!(keys.current().unwrap().kid(), BENCHMARK_KID);
        let previous = keys.previous().unwrap().unwrap();
        assert_eq!(
            previous.kid(),
            SigningKey::from_file_contents(GOOD).unwrap().kid()
        );
    }

    #[test]
    fn contents_from_the_host_are_checked_and_errors_name_the_file() {
        let keys = KeyFiles::with_reader("/k/key.txt", no_file_may_be_read)
            .with_contents_from(|_| Some(format!("{BENCHMARK_KEY}\n")));
        let current = keys.current().unwrap_err();
        assert!(
            matches!(&current, KeyError::Malformed(why) if why.starts_with("/k/key.txt: ")),
            "{current}"
        );
        let previous = keys.previous().unwrap_err();
        assert!(
            matches!(&previous, KeyError::Malformed(why) if why.contains("previous-key.txt")),
            "{previous}"
        );
    }

    #[test]
    fn files_the_host_did_not_pass_are_read() {
        let keys = KeyFiles::with_reader("/k/key.txt", no_file_exists).with_contents_from(|_| None);
        assert_eq!(
            keys.current().unwrap_err(),
            KeyError::Missing("/k/key.txt".into())
        );
        assert!(keys.previous().unwrap().is_none());
    }

    #[test]
    fn asymmetric_key_files_come_from_the_host_or_next_to_the_key_file() {
        let key = PrivateKey::derive(Algorithm::EdDsa, GOOD).unwrap();
        let jwks = PublicKeySet::from_keys([&key]).json().to_owned();
        let private_jwk = key.to_private_jwk();
        let (private_for_host, jwks_for_host) = (private_jwk.clone(), jwks.clone());
        let from_host = move |name: &str| match name {
            SIGNING_JWK_CONTENTS_ENV => Some(private_for_host.clone()),
            JWKS_CONTENTS_ENV => Some(jwks_for_host.clone()),
            _ => None,
        };
        let keys =
            KeyFiles::with_reader("/k/key.txt", no_file_may_be_read).with_contents_from(from_host);
        assert_eq!(keys.private_key(Algorithm::EdDsa).unwrap().kid(), key.kid());
        assert_eq!(keys.public_keys().unwrap().json(), jwks);

        let dir = tempfile_dir("asymmetric-files");
        std::fs::write(dir.join(JWKS_FILE_NAME), &jwks).unwrap();
        std::fs::write(dir.join(SIGNING_JWK_FILE_NAME), &private_jwk).unwrap();
        let keys = KeyFiles::new(dir.join("key.txt"));
        assert_eq!(keys.private_key(Algorithm::EdDsa).unwrap().kid(), key.kid());
        assert_eq!(keys.public_keys().unwrap().json(), jwks);
        std::fs::write(dir.join(JWKS_FILE_NAME), "x".repeat(MAX_JWK_FILE_BYTES + 1)).unwrap();
        assert!(
            matches!(keys.public_keys(), Err(KeyError::Malformed(why)) if why.contains("larger than"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("key-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn key_files_of_the_other_algorithm_family_are_named_in_the_error() {
        let dir = tempfile_dir("wrong-family");
        let keys = KeyFiles::new(dir.join("key.txt"));
        // Nothing there: plain "does not exist".
        assert!(matches!(keys.current(), Err(KeyError::Missing(_))));
        assert!(matches!(keys.public_keys(), Err(KeyError::Missing(_))));
        // keycreator ran with TOKEN_ALG=EdDSA, the service has HS256.
        std::fs::write(dir.join(JWKS_FILE_NAME), "{\"keys\":[]}").unwrap();
        let error = keys.current().unwrap_err();
        assert!(
            matches!(&error, KeyError::WrongAlgorithm(why) if why.contains("jwks.json does") && why.contains("TOKEN_ALG=EdDSA or ES256")),
            "{error}"
        );
        // And the other way round.
        std::fs::remove_file(dir.join(JWKS_FILE_NAME)).unwrap();
        std::fs::write(dir.join("key.txt"), BENCHMARK_KEY).unwrap();
        let error = keys.public_keys().unwrap_err();
        assert!(
            matches!(&error, KeyError::WrongAlgorithm(why) if why.contains("key.txt does") && why.contains("TOKEN_ALG=HS256")),
            "{error}"
        );
        let error = keys.private_key(Algorithm::Es256).unwrap_err();
        assert!(matches!(error, KeyError::WrongAlgorithm(_)), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
