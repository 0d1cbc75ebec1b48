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
