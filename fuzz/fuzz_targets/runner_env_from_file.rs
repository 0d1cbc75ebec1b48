//! The runner's `--env-from-file NAME=PATH`: arbitrary file contents, put in
//! place as keycreator and Kubernetes do (a new file renamed over the old
//! one), read the way the runner reads them for every request's guest
//! environment, then handled by the contract as the guest would (here
//! `SIGNING_KEY`, the key file's contents, which is what the images pass).
//!
//! One variable serves the whole run, as one serves a runner's lifetime, so
//! that every input also checks that a replaced file is seen at the next
//! read (what a key rotation relies on).
//!
//! Properties: no panic; the variable is passed exactly when the file is
//! UTF-8 of at most 64 KiB, and then holds the file's bytes unchanged, never
//! an earlier file's; with it the creator signs only with a well-formed key
//! and otherwise answers 503 `key_unavailable` (a fault of the operator's
//! file, never a 500 and never a token signed with something else).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runner::file_env::{FileEnvVar, MAX_FILE_BYTES};
use token_contract::{Config, Endpoint, KeyFiles, Request, SigningKey, handle};
use token_service_fuzz::response::{check_shape, text};
use token_service_fuzz::token::check_issued;

struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    staging: PathBuf,
    var: FileEnvVar,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("key.txt");
        let staging = dir.path().join(".key.txt.new");
        let var = FileEnvVar::new("SIGNING_KEY".into(), path.clone());
        Setup {
            _dir: dir,
            path,
            staging,
            var,
        }
    })
}

fuzz_target!(|contents: &[u8]| {
    let Setup {
        path, staging, var, ..
    } = setup();
    std::fs::write(staging, contents).expect("write the new file");
    std::fs::rename(staging, path).expect("put it in place");

    let value = var.value();
    let passable = contents.len() as u64 <= MAX_FILE_BYTES && std::str::from_utf8(contents).is_ok();
    match &value {
        Some(value) => {
            assert!(passable, "passed a file that is not small UTF-8");
            assert_eq!(
                value.as_bytes(),
                contents,
                "the value is not the current file's contents"
            );
        }
        None => assert!(!passable, "did not pass a small UTF-8 file"),
    }

    // The guest: the key from its environment if the runner passed it, else
    // from the file itself (the components fall back to reading it).
    let keys = KeyFiles::new(path).with_contents_from(|name| {
        (name == var.name())
            .then(|| value.as_deref().map(str::to_owned))
            .flatten()
    });
    let config = Config {
        key_file: path.display().to_string(),
        ..Config::default()
    };
    let body = br#"{"username":"u","password":"p"}"#;
    let request = Request {
        method: "POST",
        path: "/create",
        body,
    };
    let response = handle(Endpoint::Creator, &config, request, &keys);
    let code = check_shape(Endpoint::Creator, &response, true);
    match SigningKey::from_file_contents(contents) {
        Ok(_) => {
            assert_eq!(response.status, 200, "{response:?}");
            check_issued(text(&response), "u", contents, config.token_ttl.as_secs());
        }
        Err(_) => assert_eq!(
            (response.status, code.as_deref()),
            (503, Some("key_unavailable")),
            "{response:?}"
        ),
    }
});
