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
