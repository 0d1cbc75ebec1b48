//! Key rotation end to end: the real runner and components with a key
//! directory holding `key.txt` and `previous-key.txt`, changed under the
//! running services exactly as keycreator changes them (each file replaced
//! atomically, the previous key first). Every request runs in a fresh
//! instance, so each one sees the files as they are at that moment, whether
//! the guest reads them itself or the runner passes their contents
//! (`--env-from-file`, as the images run); the tests run both ways.

mod common;

use std::path::Path;

use common::{BENCHMARK_KEY, KEY_SOURCES, Runner, create, services_with, token_body};
use jwt_simple::prelude::*;
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder};

/// `printf %s "$BENCHMARK_KEY" | sha256sum | head -c 16`, computed by coreutils.
const BENCHMARK_KID: &str = "85191b07e2d97759";

/// `echo rotated-secret | sha512sum | head -c 128`.
const NEW_KEY: &str = "53a410973b8542c1235ee4af587821a7cc630e508c50c61efd2f9275e55730cd28dc9965e99d3fb43680b13399d51aaf70a0f39c9a2a7c563dc9733c35c1f217";

/// The file keycreator writes for `KEY_PREVIOUS` (its CLI tests pin that side).
const PREVIOUS: &str = "previous-key.txt";

#[test]
fn the_services_look_for_the_file_keycreator_writes() {
    assert_eq!(token_contract::key::PREVIOUS_KEY_FILE_NAME, PREVIOUS);
}

/// Replaces `name` in `dir` atomically, as keycreator does.
fn put(dir: &Path, name: &str, contents: &str) {
    let staged = dir.join(format!(".{name}.tmp"));
    std::fs::write(&staged, contents).unwrap();
    std::fs::rename(staged, dir.join(name)).unwrap();
}

fn kid_of(token: &str) -> Option<String> {
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&Base64UrlSafeNoPadding::decode_to_vec(header, None).unwrap())
            .unwrap();
    header["kid"].as_str().map(str::to_owned)
}

/// A token without `kid`, as the reference Go creator issues them.
fn without_kid(key: &str, username: &str) -> String {
    let claims = Claims::with_custom_claims(
        serde_json::json!({ "username": username }),
        Duration::from_secs(60),
    );
    let token = HS256Key::from_bytes(key.as_bytes())
        .authenticate(claims)
        .unwrap();
    assert_eq!(kid_of(&token), None);
    token
}

fn verify(verifier: &Runner, token: &str) -> (u16, String) {
    let reply = verifier.post("/verifier", token_body(token));
    let body = if reply.status == 200 {
        reply.body.clone()
    } else {
        reply.error().1
    };
    (reply.status, body)
}

#[test]
fn both_keys_verify_during_the_window_and_the_retired_one_not_after() {
    for source in KEY_SOURCES {
        eprintln!("keys from: {source:?}");
        let key = tempfile::tempdir().unwrap();
        put(key.path(), "key.txt", BENCHMARK_KEY);
        let (creator, verifier) = services_with(&key, &[], source);
        let old = create(&creator, "old");
        assert_eq!(kid_of(&old).as_deref(), Some(BENCHMARK_KID));
        let old_go = without_kid(BENCHMARK_KEY, "old-go");

        // Open the window: previous first, then the new current key.
        put(key.path(), PREVIOUS, BENCHMARK_KEY);
        put(key.path(), "key.txt", NEW_KEY);
        assert_eq!(verifier.get("/readyz").status, 200);
        let new = create(&creator, "new");
        let new_kid = kid_of(&new).expect("tokens carry a kid");
        assert_ne!(new_kid, BENCHMARK_KID);
        assert_eq!(new_kid.len(), 16);
        for (token, username) in [
            (&old, "old"),
            (&new, "new"),
            (&old_go, "old-go"),
            (&without_kid(NEW_KEY, "new-go"), "new-go"),
        ] {
            assert_eq!(verify(&verifier, token), (200, username.to_owned()));
        }

        // Close the window: the retired key's tokens are refused, the new ones are not.
        std::fs::remove_file(key.path().join(PREVIOUS)).unwrap();
        assert_eq!(verifier.get("/readyz").status, 200);
        let (status, detail) = verify(&verifier, &old);
        assert_eq!(status, 401);
        assert!(detail.contains("unknown key id"), "{detail}");
        let (status, detail) = verify(&verifier, &old_go);
        assert_eq!(status, 401);
        assert!(detail.contains("signature"), "{detail}");
        assert_eq!(verify(&verifier, &new), (200, "new".to_owned()));
    }
}

#[test]
fn a_malformed_previous_key_makes_the_verifier_unready_and_says_why() {
    for source in KEY_SOURCES {
        eprintln!("keys from: {source:?}");
        let key = tempfile::tempdir().unwrap();
        put(key.path(), "key.txt", NEW_KEY);
        put(key.path(), PREVIOUS, "not a key");
        let (creator, verifier) = services_with(&key, &[], source);

        let reply = verifier.get("/readyz");
        assert_eq!(reply.status, 503);
        let (error, detail) = reply.error();
        assert_eq!(error, "not_ready");
        assert!(
            detail.contains("previous key") && detail.contains(PREVIOUS),
            "{detail}"
        );
        // The creator never reads the previous key.
        assert_eq!(creator.get("/readyz").status, 200);
        // Tokens of the current key still verify; one that needs the previous
        // key is a server-side 503, not a 401 for a token that may be valid.
        let new = create(&creator, "new");
        assert_eq!(verify(&verifier, &new), (200, "new".to_owned()));
        let old = without_kid(BENCHMARK_KEY, "old");
        let reply = verifier.post("/verifier", token_body(&old));
        assert_eq!(reply.status, 503, "{reply:?}");
        assert_eq!(reply.error().0, "key_unavailable");
    }
}

/// A Kubernetes Secret volume: `key.txt` is a symbolic link through `..data`
/// to a timestamped directory, and an update swaps `..data` atomically. The
/// components (reading the key through `wasi:filesystem`) and the runner
/// (passing it) must follow those links, and see the new key at the next
/// request.
#[test]
fn keys_in_a_kubernetes_secret_volume_are_followed_through_their_links() {
    use std::os::unix::fs::symlink;
    for source in KEY_SOURCES {
        eprintln!("keys from: {source:?}");
        let volume = tempfile::tempdir().unwrap();
        let mount = |version: &str, key: &str| {
            let dir = volume.path().join(version);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("key.txt"), key).unwrap();
            let staged = volume.path().join("..data_tmp");
            symlink(version, &staged).unwrap();
            std::fs::rename(staged, volume.path().join("..data")).unwrap();
        };
        mount("..2026_11_23_01", BENCHMARK_KEY);
        symlink("..data/key.txt", volume.path().join("key.txt")).unwrap();
        let (creator, verifier) = services_with(&volume, &[], source);
        let first = create(&creator, "first");
        assert_eq!(kid_of(&first).as_deref(), Some(BENCHMARK_KID));
        assert_eq!(verify(&verifier, &first), (200, "first".to_owned()));

        mount("..2026_11_23_02", NEW_KEY);
        let second = create(&creator, "second");
        assert_ne!(kid_of(&second).as_deref(), Some(BENCHMARK_KID));
        assert_eq!(verify(&verifier, &second), (200, "second".to_owned()));
        // The old key is gone with its directory's link: its tokens are refused.
        assert_eq!(verify(&verifier, &first).0, 401);
    }
}

/// A key path outside every directory the runner maps is reported as a
/// missing key (503), not as a failure of the component.
#[test]
fn a_key_file_outside_the_mapped_directories_is_missing() {
    let key = common::key_dir();
    let dir = format!("{}::/usr/share/key", key.path().display());
    let creator = Runner::start(
        &common::cwasm("creator"),
        &["--dir", &dir, "--env", "KEY_FILE=/elsewhere/key.txt"],
    );
    let reply = creator.post("/create", r#"{"username":"a","password":"b"}"#);
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.error().0, "key_unavailable");
    assert!(reply.error().1.contains("/elsewhere/key.txt"), "{reply:?}");
}

/// With `--env-from-file` the guest needs no directory at all: the runner
/// reads the key file, sees it replaced at the next request, and once it is
/// gone the guest looks for the file itself and reports it missing.
#[test]
fn keys_the_runner_passes_need_no_mapped_directory() {
    let key = tempfile::tempdir().unwrap();
    put(key.path(), "key.txt", BENCHMARK_KEY);
    let from_file = format!("SIGNING_KEY={}", key.path().join("key.txt").display());
    let creator = Runner::start(&common::cwasm("creator"), &["--env-from-file", &from_file]);
    let first = create(&creator, "first");
    assert_eq!(kid_of(&first).as_deref(), Some(BENCHMARK_KID));

    put(key.path(), "key.txt", NEW_KEY);
    let second = create(&creator, "second");
    let claims = HS256Key::from_bytes(NEW_KEY.as_bytes())
        .verify_token::<serde_json::Value>(&second, None)
        .expect("signed with the new key");
    assert_eq!(claims.custom["username"], "second");

    std::fs::remove_file(key.path().join("key.txt")).unwrap();
    let reply = creator.post("/create", r#"{"username":"a","password":"b"}"#);
    assert_eq!(reply.status, 503, "{reply:?}");
    let (error, detail) = reply.error();
    assert_eq!(error, "key_unavailable");
    assert!(detail.contains("/usr/share/key/key.txt"), "{detail}");
}

#[test]
fn a_guest_variable_set_twice_is_refused_at_start_up() {
    let error = Runner::try_start(
        &common::cwasm("creator"),
        &[
            "--env",
            "SIGNING_KEY=x",
            "--env-from-file",
            "SIGNING_KEY=/k/key.txt",
        ],
    )
    .err()
    .expect("the runner must not start");
    assert!(
        error.contains(r#"the guest environment variable "SIGNING_KEY" is set twice"#),
        "{error}"
    );
}
