//! keycreator: turns the `KEY` secret into the key files, then exits.
//!
//! It runs once before the services start (an init container, or a compose
//! service the others depend on). What it writes depends on `TOKEN_ALG`,
//! which the services must be given too:
//!
//! - `HS256` (the default): `KEY_FILE` holds the lowercase hex SHA-512 of
//!   `KEY` followed by a newline byte, which is exactly what the reference
//!   `echo "$KEY" | sha512sum | head -c 128` prints, so keys and tokens stay
//!   compatible with the reference system. With `KEY_PREVIOUS` set (the
//!   secret being retired), it also writes `previous-key.txt` in the same
//!   directory, same format; verifiers accept that key too until the window
//!   closes. The previous file is put in place before `key.txt`, so a
//!   verifier reading between the two never lacks the key of a token a
//!   creator already issued.
//! - `EdDSA` or `ES256`: a key pair derived from the same hash
//!   (`token_contract::PrivateKey::derive`, versioned and documented there),
//!   written as `jwks.json`, the public keys (current, then `KEY_NEXT`'s,
//!   then `KEY_PREVIOUS`'s), and, only with `KEYS_FOR=creator`,
//!   `signing-key.json`, the private key that signs. `KEYS_FOR=verifier`
//!   writes public keys only: a verifier holds nothing that could sign.
//!   `jwks.json` is put in place first, so a key is published before it
//!   signs.
//!
//! Files of the other family, or of the other role, left in the directory by
//! an earlier run are removed: a directory holds exactly what its service
//! needs now (where the key volume persists, as in compose, that is also how
//! a rotation window closes, and how a secret leaves a verifier's volume).
//!
//! Exit codes: 0 written, 1 a setting is missing or wrong (or bad usage), 2 a
//! file could not be written or removed. Errors are one line on stderr; the
//! secrets and private keys are never printed (key ids are). Every file is
//! staged before any is put in place, so a directory that cannot take them
//! is left untouched.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sha2::{Digest, Sha512};
use token_contract::jwk::{JWKS_FILE_NAME, SIGNING_JWK_FILE_NAME};
use token_contract::key::{DEFAULT_KEY_FILE, PREVIOUS_KEY_FILE_NAME};
use token_contract::{Algorithm, PrivateKey, PublicKeySet};

/// Owner and group may read; nobody may write. The services run as the
/// same user as keycreator (or share its group through `fsGroup`).
const KEY_FILE_MODE: u32 = 0o440;

const USAGE: &str = "usage: keycreator (reads KEY, and optional KEY_PREVIOUS, KEY_NEXT, TOKEN_ALG, KEYS_FOR; writes the key files next to KEY_FILE, default /usr/share/key/key.txt)";

fn main() -> ExitCode {
    match std::env::args_os().nth(1).as_deref().map(OsStr::as_bytes) {
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
    let plan = match Settings::from_env().and_then(|settings| settings.plan()) {
        Ok(plan) => plan,
        Err(why) => {
            eprintln!("keycreator: {why}");
            return ExitCode::from(1);
        }
    };
    match plan.carry_out() {
        Ok(done) => {
            println!("keycreator: {}", done.join(", "));
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("keycreator: {why}");
            ExitCode::from(2)
        }
    }
}

/// Which service the key directory is for (`KEYS_FOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Signs: gets the private key (EdDSA, ES256).
    Creator,
    /// Verifies: gets public keys only (EdDSA, ES256).
    Verifier,
}

/// What the environment asks for.
struct Settings {
    alg: Algorithm,
    role: Option<Role>,
    secret: OsString,
    previous: Option<OsString>,
    next: Option<OsString>,
    key_file: PathBuf,
}

/// An environment variable's value, with empty meaning unset.
fn var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|value| !value.is_empty())
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let secret = var("KEY").ok_or("KEY is not set or empty; set KEY to the signing secret")?;
        let alg = Algorithm::from_lookup(|name| {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
        .map_err(|e| e.to_string())?;
        let role = match var("KEYS_FOR").as_deref().map(OsStr::as_bytes) {
            None => None,
            Some(b"creator") => Some(Role::Creator),
            Some(b"verifier") => Some(Role::Verifier),
            Some(other) => {
                return Err(format!(
                    "KEYS_FOR must be creator or verifier, got {:?}",
                    String::from_utf8_lossy(other)
                ));
            }
        };
        let key_file =
            var("KEY_FILE").map_or_else(|| PathBuf::from(DEFAULT_KEY_FILE), PathBuf::from);
        // `with_file_name` would quietly replace a directory name: insist on
        // a file, and on one that is not another key file's name.
        let reserved = [
            PREVIOUS_KEY_FILE_NAME,
            JWKS_FILE_NAME,
            SIGNING_JWK_FILE_NAME,
        ];
        if key_file.as_os_str().as_bytes().ends_with(b"/")
            || key_file
                .file_name()
                .is_none_or(|name| reserved.iter().any(|r| name == OsStr::new(r)))
        {
            return Err(format!(
                "KEY_FILE must name a file other than {}, got {}",
                reserved.join(", "),
                key_file.display()
            ));
        }
        let settings = Self {
            alg,
            role,
            secret,
            previous: var("KEY_PREVIOUS"),
            next: var("KEY_NEXT"),
            key_file,
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), String> {
        if self.alg.is_asymmetric() && self.role.is_none() {
            return Err(format!(
                "TOKEN_ALG={} needs KEYS_FOR=creator (private and public keys, for the creator) \
                 or KEYS_FOR=verifier (public keys only)",
                self.alg
            ));
        }
        if !self.alg.is_asymmetric() && self.next.is_some() {
            return Err(
                "KEY_NEXT publishes a key before it signs, which only EdDSA and ES256 do; \
                 HS256 rotates with KEY_PREVIOUS alone"
                    .into(),
            );
        }
        for (name, other) in [("KEY_PREVIOUS", &self.previous), ("KEY_NEXT", &self.next)] {
            if other.as_ref() == Some(&self.secret) {
                return Err(format!("{name} is the same secret as KEY"));
            }
        }
        if self.next.is_some() && self.next == self.previous {
            return Err("KEY_NEXT is the same secret as KEY_PREVIOUS".into());
        }
        Ok(())
    }

    fn sibling(&self, name: &str) -> PathBuf {
        self.key_file.with_file_name(name)
    }

    /// The files to write, in the order they are put in place, and the
    /// files to remove.
    fn plan(&self) -> Result<Plan, String> {
        let mut plan = Plan::default();
        let hs256_files = [self.sibling(PREVIOUS_KEY_FILE_NAME), self.key_file.clone()];
        let asymmetric_files = [
            self.sibling(JWKS_FILE_NAME),
            self.sibling(SIGNING_JWK_FILE_NAME),
        ];
        if !self.alg.is_asymmetric() {
            // Write order: the previous key first, then the current one.
            match &self.previous {
                Some(previous) => plan.write(&hs256_files[0], key_file_contents(previous)),
                None => plan.remove(&hs256_files[0]),
            }
            plan.write(&hs256_files[1], key_file_contents(&self.secret));
            asymmetric_files.iter().for_each(|path| plan.remove(path));
            return Ok(plan);
        }
        let derive = |secret: &OsString| {
            PrivateKey::derive(self.alg, key_file_contents(secret).as_bytes())
                .map_err(|e| format!("cannot derive the {} key: {e}", self.alg))
        };
        let current = derive(&self.secret)?;
        let mut published = vec![&current];
        let next = self.next.as_ref().map(derive).transpose()?;
        let previous = self.previous.as_ref().map(derive).transpose()?;
        published.extend(next.as_ref());
        published.extend(previous.as_ref());
        let set = PublicKeySet::from_keys(published.iter().copied());
        // Check what is written as the services will read it.
        let kids = set
            .validate(self.alg)
            .map_err(|e| format!("the derived key set is unusable: {e}"))?;
        plan.write(&asymmetric_files[0], set.json().to_owned());
        plan.summary = format!("{} key ids {}", self.alg, kids.join(" "));
        match self.role {
            Some(Role::Creator) => plan.write(&asymmetric_files[1], current.to_private_jwk()),
            _ => plan.remove(&asymmetric_files[1]),
        }
        hs256_files.iter().for_each(|path| plan.remove(path));
        Ok(plan)
    }
}

/// The key file's content: hex SHA-512 of the secret plus `\n`, no newline.
fn key_file_contents(secret: &OsString) -> String {
    let mut hasher = Sha512::new();
    hasher.update(secret.as_bytes());
    hasher.update(b"\n");
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(128), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// What keycreator does to the key directory.
#[derive(Default)]
struct Plan {
    writes: Vec<(PathBuf, String)>,
    removals: Vec<PathBuf>,
    /// The public key ids, for the log line (EdDSA, ES256).
    summary: String,
}

impl Plan {
    fn write(&mut self, path: &Path, contents: String) {
        self.writes.push((path.to_owned(), contents));
    }

    fn remove(&mut self, path: &Path) {
        self.removals.push(path.to_owned());
    }

    /// Stages every file, puts them in place in order, then removes the
    /// files no longer wanted. Returns what was done, for one log line.
    fn carry_out(self) -> Result<Vec<String>, String> {
        let cannot_write = |path: &Path, e: &dyn std::fmt::Display| {
            format!("cannot write {}: {e}", path.display())
        };
        // Stage every file first: a directory that cannot take them stays untouched.
        let mut staged = Vec::new();
        for (path, contents) in &self.writes {
            let file = stage_key_file(path, contents).map_err(|e| cannot_write(path, &e))?;
            staged.push((path, file));
        }
        let mut done = Vec::new();
        for (path, file) in staged {
            file.persist(path)
                .map_err(|e| cannot_write(path, &e.error))?;
            done.push(format!("wrote {}", path.display()));
        }
        for path in &self.removals {
            match fs::remove_file(path) {
                Ok(()) => done.push(format!("removed {}", path.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
            }
        }
        if !self.summary.is_empty() {
            done.push(self.summary);
        }
        Ok(done)
    }
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
