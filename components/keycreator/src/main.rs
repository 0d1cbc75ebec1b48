//! keycreator: turns the `KEY` secret into the signing key file, then exits.
//!
//! It runs once before the services start (an init container, or a compose
//! service the others depend on). It writes the lowercase hex SHA-512 of
//! `KEY` followed by a newline byte, which is exactly what the reference
//! `echo "$KEY" | sha512sum | head -c 128` prints, so keys and tokens stay
//! compatible with the reference system.
//!
//! Key rotation: with `KEY_PREVIOUS` set (the secret being retired), it also
//! writes `previous-key.txt` in the directory of `KEY_FILE`, same format;
//! verifiers accept that key too until the window closes. The previous file is
//! written before `key.txt`, each atomically, so a verifier reading between
//! the two never lacks the key of a token a creator already issued. With
//! `KEY_PREVIOUS` unset or empty, a `previous-key.txt` left by an earlier run
//! is removed: that is how the window closes where the key volume persists.
//!
//! Exit codes: 0 written, 1 `KEY` unset or empty (or bad usage), 2 a file
//! could not be written or removed. Errors are one line on stderr; the keys
//! and the secrets are never printed. Both files are staged before either is
//! put in place, so a directory that cannot take them is left untouched.

use std::ffi::OsString;
use std::fs::{self, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sha2::{Digest, Sha512};

const DEFAULT_KEY_FILE: &str = "/usr/share/key/key.txt";

/// Must match `token_contract::key::PREVIOUS_KEY_FILE_NAME` (the CLI tests
/// and the runner's rotation tests pin both to this name); not a dependency,
/// to keep JWT code out of this static binary.
const PREVIOUS_KEY_FILE_NAME: &str = "previous-key.txt";

/// Owner and group may read; nobody may write. The services run as the
/// same user as keycreator (or share its group through `fsGroup`).
const KEY_FILE_MODE: u32 = 0o440;

const USAGE: &str = "usage: keycreator (reads KEY and optional KEY_PREVIOUS, writes the key file at KEY_FILE, default /usr/share/key/key.txt, and previous-key.txt next to it)";

fn main() -> ExitCode {
    match std::env::args_os().nth(1).as_deref().map(|a| a.as_bytes()) {
        None => {}
        Some(b"-h" | b"--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(b"-V" | b"--version") => {
            println!("keycreator {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(_) => {
            eprintln!("keycreator: takes no arguments; {USAGE}");
            return ExitCode::from(1);
        }
    }

    let Some(secret) = std::env::var_os("KEY").filter(|k| !k.is_empty()) else {
        eprintln!("keycreator: KEY is not set or empty; set KEY to the signing secret");
        return ExitCode::from(1);
    };
    let previous_secret = std::env::var_os("KEY_PREVIOUS").filter(|k| !k.is_empty());
    let path = std::env::var_os("KEY_FILE")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_KEY_FILE), PathBuf::from);
    // `with_file_name` would quietly replace a directory name: insist on a file.
    if path.as_os_str().as_bytes().ends_with(b"/")
        || path
            .file_name()
            .is_none_or(|name| name == PREVIOUS_KEY_FILE_NAME)
    {
        eprintln!(
            "keycreator: KEY_FILE must name a file other than {PREVIOUS_KEY_FILE_NAME}, got {}",
            path.display()
        );
        return ExitCode::from(1);
    }
    let previous_path = path.with_file_name(PREVIOUS_KEY_FILE_NAME);

    // Write order: the previous key first, then the current one.
    let mut files = Vec::new();
    if let Some(previous_secret) = &previous_secret {
        files.push((&previous_path, previous_secret));
    }
    files.push((&path, &secret));

    // Stage every file first: a directory that cannot take them stays untouched.
    let mut staged = Vec::new();
    for (path, secret) in files {
        match stage_key_file(path, &key_file_contents(secret)) {
            Ok(file) => staged.push((path, file)),
            Err(e) => {
                eprintln!("keycreator: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let mut done = Vec::new();
    for (path, file) in staged {
        if let Err(e) = file.persist(path) {
            eprintln!("keycreator: cannot write {}: {}", path.display(), e.error);
            return ExitCode::from(2);
        }
        done.push(format!("wrote {}", path.display()));
    }
    if previous_secret.is_none() {
        match fs::remove_file(&previous_path) {
            Ok(()) => done.push(format!("removed {}", previous_path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!(
                    "keycreator: cannot remove {} (KEY_PREVIOUS is unset): {e}",
                    previous_path.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    println!("keycreator: {}", done.join(", "));
    ExitCode::SUCCESS
}

/// The key file's content: hex SHA-512 of the secret plus `\n`, no newline.
fn key_file_contents(secret: &OsString) -> String {
    let mut hasher = Sha512::new();
    hasher.update(secret.as_bytes());
    hasher.update(b"\n");
    format!("{:x}", hasher.finalize())
}

/// Writes `contents` to `path` atomically: readers see the old file or the
/// complete new one, never a partial key.
#[cfg(test)]
fn write_key_file(path: &Path, contents: &str) -> io::Result<()> {
    stage_key_file(path, contents)?
        .persist(path)
        .map_err(|e| e.error)?;
    Ok(())
}

/// Writes `contents` into a temporary file next to `path`, complete, synced
/// and with its final mode; persisting it to `path` is then one atomic rename.
fn stage_key_file(path: &Path, contents: &str) -> io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".key-")
        .tempfile_in(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("in directory {}: {e}", dir.display())))?;
    file.write_all(contents.as_bytes())?;
    file.as_file().sync_all()?;
    fs::set_permissions(file.path(), Permissions::from_mode(KEY_FILE_MODE))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `echo benchmark-secret | sha512sum | head -c 128`, computed by coreutils.
    const BENCHMARK_SECRET_KEY: &str = "42a5dd4b401dc38d1857b79e53432bf33b9f4d36301fd5c863280c0a550777172b7235376c2a35d2d5eb857407575559ec6874127f05fe8f098217cfc9225e63";

    #[test]
    fn hashes_the_secret_followed_by_a_newline() {
        let contents = key_file_contents(&OsString::from("benchmark-secret"));
        assert_eq!(contents, BENCHMARK_SECRET_KEY);
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        write_key_file(&path, "abc").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "abc");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            KEY_FILE_MODE
        );
    }
}
