//! The signing key file written by `keycreator` and read by the services.
//!
//! The file holds the lowercase hex SHA-512 of the secret (128 ASCII
//! characters, no newline). Like the reference Go and Python services, the
//! HMAC key is those 128 ASCII bytes themselves, not the 64 bytes they encode;
//! that is what lets tokens interoperate with the reference system.

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use jwt_simple::algorithms::HS256Key;

/// Where the key lives unless `KEY_FILE` says otherwise.
pub const DEFAULT_KEY_FILE: &str = "/usr/share/key/key.txt";

/// Length of a lowercase hex SHA-512 digest.
pub const KEY_HEX_LEN: usize = 128;

/// An HS256 key loaded from a well-formed key file.
#[derive(Clone)]
pub struct SigningKey(HS256Key);

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
        Ok(Self(HS256Key::from_bytes(contents)))
    }

    /// Reads and validates the key file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        // One bounded read instead of `fs::read`: no `stat` for a size hint
        // (under Wasm every filesystem call is a host call, and this runs on
        // every request), and a wrong file cannot make us allocate much.
        let mut contents = Vec::with_capacity(KEY_HEX_LEN + 1);
        let read = File::open(path)
            .and_then(|file| file.take(KEY_HEX_LEN as u64 + 1).read_to_end(&mut contents));
        match read {
            Ok(_) if contents.len() > KEY_HEX_LEN => Err(KeyError::Malformed(format!(
                "expected {KEY_HEX_LEN} hex characters, found more"
            ))),
            Ok(_) => Self::from_file_contents(&contents),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(KeyError::Missing(path.display().to_string()))
            }
            Err(e) => Err(KeyError::Unreadable(format!("{}: {e}", path.display()))),
        }
    }

    pub(crate) fn hs256(&self) -> &HS256Key {
        &self.0
    }
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
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Missing(path) => write!(f, "key file {path} does not exist"),
            KeyError::Unreadable(why) => write!(f, "key file is unreadable: {why}"),
            KeyError::Malformed(why) => write!(f, "key file is malformed: {why}"),
        }
    }
}

impl std::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8; 128] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
                               0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

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
    fn debug_output_hides_the_key() {
        let key = SigningKey::from_file_contents(GOOD).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(..)");
    }
}
