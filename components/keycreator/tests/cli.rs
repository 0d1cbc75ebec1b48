//! keycreator as a process: environment in, file and exit code out.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn keycreator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keycreator"))
}

/// `echo benchmark-secret | sha512sum | head -c 128`, computed by coreutils.
const BENCHMARK_SECRET_KEY: &str = "42a5dd4b401dc38d1857b79e53432bf33b9f4d36301fd5c863280c0a550777172b7235376c2a35d2d5eb857407575559ec6874127f05fe8f098217cfc9225e63";

#[test]
fn writes_the_file_atomically_with_mode_0440() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    let out = keycreator()
        .env("KEY", "benchmark-secret")
        .env("KEY_FILE", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let written = fs::read_to_string(&path).unwrap();
    assert_eq!(written, BENCHMARK_SECRET_KEY);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o440);
    // Nothing else is left behind, and a second run replaces the file.
    let rerun = keycreator()
        .env("KEY", "other")
        .env("KEY_FILE", &path)
        .output()
        .unwrap();
    assert!(rerun.status.success(), "{rerun:?}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_ne!(fs::read_to_string(&path).unwrap(), written);
}

#[test]
fn unset_or_empty_key_exits_1_with_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    for key in [None, Some("")] {
        let mut cmd = keycreator();
        cmd.env_remove("KEY").env("KEY_FILE", &path);
        if let Some(key) = key {
            cmd.env("KEY", key);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("KEY is not set"), "{stderr}");
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn an_unwritable_directory_is_a_clear_error_not_a_panic() {
    let out = keycreator()
        .env("KEY", "secret")
        .env("KEY_FILE", "/nonexistent-dir/key.txt")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot write /nonexistent-dir/key.txt"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn never_prints_the_secret_or_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    let out = keycreator()
        .env("KEY", "top-secret-value")
        .env("KEY_FILE", &path)
        .output()
        .unwrap();
    let printed = [out.stdout, out.stderr].concat();
    let printed = String::from_utf8(printed).unwrap();
    assert!(!printed.contains("top-secret-value"));
    assert!(!printed.contains(&fs::read_to_string(&path).unwrap()));
}

/// `echo other-secret | sha512sum | head -c 128`.
fn sha512_hex_line(secret: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("printf '%s\\n' \"$S\" | sha512sum | head -c 128")
        .env("S", secret)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn key_previous_is_written_next_to_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    let out = keycreator()
        .env("KEY", "new-secret")
        .env("KEY_PREVIOUS", "benchmark-secret")
        .env("KEY_FILE", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(names_in(dir.path()), ["key.txt", "previous-key.txt"]);
    // The name the services look for (token_contract::key::PREVIOUS_KEY_FILE_NAME;
    // the runner's rotation tests check the services' side).
    let previous = dir.path().join("previous-key.txt");
    assert_eq!(fs::read_to_string(&previous).unwrap(), BENCHMARK_SECRET_KEY);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        sha512_hex_line("new-secret")
    );
    let mode = fs::metadata(&previous).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o440);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("benchmark-secret") && !stdout.contains(BENCHMARK_SECRET_KEY));
}

#[test]
fn a_stale_previous_key_is_removed_when_key_previous_is_unset_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    for unset in [None, Some("")] {
        let open = keycreator()
            .env("KEY", "new-secret")
            .env("KEY_PREVIOUS", "old-secret")
            .env("KEY_FILE", &path)
            .output()
            .unwrap();
        assert!(open.status.success(), "{open:?}");
        assert_eq!(names_in(dir.path()), ["key.txt", "previous-key.txt"]);
        let mut close = keycreator();
        close
            .env("KEY", "new-secret")
            .env_remove("KEY_PREVIOUS")
            .env("KEY_FILE", &path);
        if let Some(value) = unset {
            close.env("KEY_PREVIOUS", value);
        }
        let out = close.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(names_in(dir.path()), ["key.txt"], "{unset:?}");
        assert!(String::from_utf8(out.stdout).unwrap().contains("removed"));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            sha512_hex_line("new-secret")
        );
    }
}

#[test]
fn the_previous_key_is_put_in_place_before_the_current_one() {
    // A directory where key.txt should go: staging works, the final rename of
    // key.txt fails. Only the order previous-then-current leaves the previous
    // key in place at that point; a verifier then still accepts every token
    // the (not yet restarted) creators issue.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("occupied"), "").unwrap();
    let out = keycreator()
        .env("KEY", "new-secret")
        .env("KEY_PREVIOUS", "benchmark-secret")
        .env("KEY_FILE", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot write") && stderr.contains("key.txt"),
        "{stderr}"
    );
    let previous = dir.path().join("previous-key.txt");
    assert_eq!(fs::read_to_string(previous).unwrap(), BENCHMARK_SECRET_KEY);
    // No temporary files are left behind.
    assert_eq!(names_in(dir.path()), ["key.txt", "previous-key.txt"]);
}

#[test]
fn an_unwritable_directory_leaves_the_previous_key_untouched() {
    // Both files are staged before either is put in place: when the current
    // key cannot be staged, an existing previous-key.txt is not replaced and
    // a missing one is not created.
    let dir = tempfile::tempdir().unwrap();
    let out = keycreator()
        .env("KEY", "secret")
        .env("KEY_PREVIOUS", "old")
        .env("KEY_FILE", dir.path().join("missing-dir/key.txt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("missing-dir/previous-key.txt"), "{stderr}");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn key_file_must_name_a_file_other_than_the_previous_key() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        format!("{}/", dir.path().display()),
        format!("{}/previous-key.txt", dir.path().display()),
    ] {
        let out = keycreator()
            .env("KEY", "secret")
            .env("KEY_FILE", &bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("KEY_FILE must name a file"), "{stderr}");
    }
    assert!(names_in(dir.path()).is_empty());
}

// --- EdDSA and ES256 -------------------------------------------------------

/// Known key ids for `KEY=benchmark-secret` (RFC 7638 thumbprints; computed
/// with Python's `cryptography`, see token_contract::jwk's tests).
const BENCHMARK_EDDSA_KID: &str = "WAjEP1K8MyFItZbcjatVC6KHiVeieEajcL70fkZYkQQ";
const BENCHMARK_ES256_KID: &str = "gO3hpCbFby0fYbw77lQ0iHI4Rie1uIbodd-F-RiB02U";

fn json_file(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn kids(set: &serde_json::Value) -> Vec<String> {
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn asymmetric(alg: &str, role: &str, path: &std::path::Path) -> Command {
    let mut cmd = keycreator();
    cmd.env("KEY", "benchmark-secret")
        .env("TOKEN_ALG", alg)
        .env("KEYS_FOR", role)
        .env("KEY_FILE", path)
        .env_remove("KEY_PREVIOUS")
        .env_remove("KEY_NEXT");
    cmd
}

#[test]
fn the_creator_gets_the_private_key_and_the_set_the_verifier_only_the_set() {
    for (alg, kid) in [
        ("EdDSA", BENCHMARK_EDDSA_KID),
        ("ES256", BENCHMARK_ES256_KID),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        let out = asymmetric(alg, "creator", &path).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(names_in(dir.path()), ["jwks.json", "signing-key.json"]);
        let private = json_file(&dir.path().join("signing-key.json"));
        assert_eq!(
            (private["alg"].as_str(), private["kid"].as_str()),
            (Some(alg), Some(kid))
        );
        assert!(private["d"].is_string());
        let set = json_file(&dir.path().join("jwks.json"));
        assert_eq!(kids(&set), [kid]);
        assert!(set["keys"][0].get("d").is_none());
        for name in ["jwks.json", "signing-key.json"] {
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o440, "{name}");
        }
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains(kid), "{stdout}");
        let printed = format!("{stdout}{}", String::from_utf8(out.stderr).unwrap());
        assert!(!printed.contains("benchmark-secret"));
        assert!(!printed.contains(private["d"].as_str().unwrap()));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        let out = asymmetric(alg, "verifier", &path).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(names_in(dir.path()), ["jwks.json"]);
        assert_eq!(kids(&json_file(&dir.path().join("jwks.json"))), [kid]);
    }
}

#[test]
fn next_and_previous_keys_are_published_after_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    let kid_of = |secret: &str| {
        let one = tempfile::tempdir().unwrap();
        let out = asymmetric("EdDSA", "verifier", &one.path().join("key.txt"))
            .env("KEY", secret)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        kids(&json_file(&one.path().join("jwks.json")))[0].clone()
    };
    let out = asymmetric("EdDSA", "creator", &path)
        .env("KEY", "current")
        .env("KEY_NEXT", "next")
        .env("KEY_PREVIOUS", "previous")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let set = json_file(&dir.path().join("jwks.json"));
    assert_eq!(
        kids(&set),
        [kid_of("current"), kid_of("next"), kid_of("previous")]
    );
    // Only the current key signs.
    let private = json_file(&dir.path().join("signing-key.json"));
    assert_eq!(private["kid"].as_str().unwrap(), kid_of("current"));
}

#[test]
fn files_of_another_algorithm_or_role_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    // HS256 with a previous key, then EdDSA for a verifier: no secret stays.
    let out = keycreator()
        .env("KEY", "secret")
        .env("KEY_PREVIOUS", "old")
        .env("KEY_FILE", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = asymmetric("EdDSA", "creator", &path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(names_in(dir.path()), ["jwks.json", "signing-key.json"]);
    let out = asymmetric("EdDSA", "verifier", &path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(names_in(dir.path()), ["jwks.json"]);
    assert!(String::from_utf8(out.stdout).unwrap().contains("removed"));
    // And back to HS256.
    let out = keycreator()
        .env("KEY", "secret")
        .env("KEY_FILE", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(names_in(dir.path()), ["key.txt"]);
}

#[test]
fn bad_settings_exit_1_with_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    let cases: [(&[(&str, &str)], &str); 8] = [
        (
            &[("TOKEN_ALG", "eddsa")],
            "TOKEN_ALG must be HS256, EdDSA or ES256",
        ),
        (&[("TOKEN_ALG", "RS256")], "TOKEN_ALG must be"),
        (&[("TOKEN_ALG", "EdDSA")], "needs KEYS_FOR=creator"),
        (
            &[("TOKEN_ALG", "ES256"), ("KEYS_FOR", "both")],
            "KEYS_FOR must be creator or verifier",
        ),
        (
            &[("KEY_NEXT", "next")],
            "KEY_NEXT publishes a key before it signs",
        ),
        (
            &[
                ("TOKEN_ALG", "EdDSA"),
                ("KEYS_FOR", "creator"),
                ("KEY_NEXT", "secret"),
            ],
            "KEY_NEXT is the same secret as KEY",
        ),
        (
            &[
                ("TOKEN_ALG", "EdDSA"),
                ("KEYS_FOR", "creator"),
                ("KEY_PREVIOUS", "secret"),
            ],
            "KEY_PREVIOUS is the same secret as KEY",
        ),
        (
            &[
                ("TOKEN_ALG", "ES256"),
                ("KEYS_FOR", "creator"),
                ("KEY_NEXT", "x"),
                ("KEY_PREVIOUS", "x"),
            ],
            "KEY_NEXT is the same secret as KEY_PREVIOUS",
        ),
    ];
    for (env, needle) in cases {
        let mut cmd = keycreator();
        cmd.env("KEY", "secret").env("KEY_FILE", &path);
        for name in ["TOKEN_ALG", "KEYS_FOR", "KEY_NEXT", "KEY_PREVIOUS"] {
            cmd.env_remove(name);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{env:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("keycreator: ") && stderr.contains(needle),
            "{env:?}: {stderr}"
        );
    }
    assert!(names_in(dir.path()).is_empty());
    for reserved in ["jwks.json", "signing-key.json"] {
        let out = keycreator()
            .env("KEY", "secret")
            .env("KEY_FILE", dir.path().join(reserved))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{reserved}");
    }
}
