//! Key file parsing: arbitrary file contents, read from a real file as the
//! services read them, and passed by a host in the environment.
//!
//! Properties: no panic; a key is made exactly when the contents are 128
//! lowercase hex characters (checked here by definition, not by the code
//! under test), and then its id is the first 8 bytes of SHA-256 over them in
//! hex; otherwise the error is `Malformed` and names the file; reading the
//! file and passing its contents agree; the key signs tokens that verify.

#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use token_contract::key::KEY_HEX_LEN;
use token_contract::{KeyError, KeyFiles, Keys, SigningKey};
use token_service_fuzz::keys::expected_kid;

/// One directory for the whole run: a file per input would cost more than
/// the parsing.
fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

fuzz_target!(|contents: &[u8]| {
    let is_key = contents.len() == KEY_HEX_LEN
        && contents
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));

    let parsed = SigningKey::from_file_contents(contents);
    match &parsed {
        Ok(key) => {
            assert!(is_key, "a key from {contents:?}");
            assert_eq!(key.kid(), expected_kid(contents));
            let token = token_contract::issue(key, "u", std::time::Duration::from_secs(60))
                .expect("HS256 signing cannot fail");
            assert_eq!(token_contract::verify(key, &token).as_deref(), Ok("u"));
        }
        Err(KeyError::Malformed(why)) => assert!(!is_key && !why.is_empty(), "{why}"),
        Err(other) => panic!("parsing bytes gave {other:?}"),
    }

    // The same bytes as a key file on disk, read as the services read it.
    let path = dir().path().join("key.txt");
    let mut file = std::fs::File::create(&path).expect("create the key file");
    file.write_all(contents).expect("write the key file");
    drop(file);
    let loaded = SigningKey::load(&path);
    match (&parsed, &loaded) {
        (Ok(a), Ok(b)) => assert_eq!(a.kid(), b.kid()),
        (Err(_), Err(KeyError::Malformed(why))) => {
            assert!(
                why.contains("key.txt"),
                "the error does not name the file: {why}"
            );
        }
        _ => panic!("parsing and loading disagree: {parsed:?} vs {loaded:?}"),
    }

    // And as a host passes it in SIGNING_KEY (only text can be passed).
    if let Ok(text) = std::str::from_utf8(contents) {
        let keys = KeyFiles::new(dir().path().join("absent.txt"))
            .with_contents_from(|name| (name == "SIGNING_KEY").then(|| text.to_owned()));
        match (&parsed, keys.current()) {
            (Ok(a), Ok(b)) => assert_eq!(a.kid(), b.kid()),
            (Err(_), Err(KeyError::Malformed(_))) => {}
            (_, passed) => panic!("parsing and passing disagree: {parsed:?} vs {passed:?}"),
        }
    }
});
