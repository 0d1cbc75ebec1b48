//! `--env-from-file NAME=PATH`: guest environment variables holding a file's
//! contents, kept in step with the file.
//!
//! Every request gets a fresh instance, so a guest that needs a file's
//! contents (the token services' signing key) must read it on every request:
//! through WASI that is three host calls plus an `openat`, a `pread` and a
//! `close` in the kernel, about a fifth of the creator's CPU per request
//! (docs/benchmarks.md, round 5). The runner reads the file once instead,
//! checks with one `stat` per request whether it changed (a rewrite by
//! rename, a Kubernetes Secret update, an edit in place), and hands the
//! contents to each instance in its environment, which a guest reads once
//! per instance anyway.
//!
//! The `stat` itself was then ~4 % of the creator's CPU per request; where
//! the kernel can tell that nothing changed (inotify, see [`FileWatch`]) the
//! runner asks it instead, and `stat`s only after a change.
//!
//! While the runner cannot use the file (absent, unreadable, larger than
//! [`MAX_FILE_BYTES`], not UTF-8), the variable is unset. A guest that falls
//! back to reading the file itself, as the token services do, then sees and
//! reports the problem exactly as it would without this option.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::file_watch::FileWatch;

/// Larger files are not passed: environment variables are for small values
/// such as keys, and every instance gets its own copy.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// One `--env-from-file` variable.
pub struct FileEnvVar {
    name: String,
    path: PathBuf,
    cache: Mutex<Cached>,
}

/// What the file held when it was last read.
#[derive(Default)]
struct Cached {
    /// Whether it must be `stat`ed again.
    watch: FileWatch,
    /// Identifies the version of the file that was read.
    stamp: Option<Stamp>,
    /// Its contents, or `None` if they cannot be passed.
    value: Option<Arc<str>>,
}

/// What changes whenever a file is replaced or rewritten: a new file (by
/// rename or a new Secret directory) has another inode, an edit in place
/// another size or modification or change time. (Two edits in place within
/// one tick of the kernel's file clock that keep the size could go unseen
/// until the next change; keycreator and Kubernetes replace files instead.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(metadata: &Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

impl std::fmt::Debug for FileEnvVar {
    // The name and the path only: the contents are often a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileEnvVar")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileEnvVar {
    pub fn new(name: String, path: PathBuf) -> Self {
        Self {
            name,
            path,
            cache: Mutex::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    #[cfg(test)]
    fn path(&self) -> &Path {
        &self.path
    }

    /// The file's current contents, or `None` while they cannot be passed.
    /// Costs a `stat` when the file may have changed; the file is read again
    /// only when it did.
    pub fn value(&self) -> Option<Arc<str>> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if !cache.watch.needs_check(&self.path) {
            return cache.value.clone();
        }
        // Follows symbolic links, as Kubernetes mounts Secrets through them.
        let stamp = std::fs::metadata(&self.path).ok().map(|m| Stamp::of(&m));
        if cache.stamp != stamp {
            // If the file changes again between the `stat` and the read, the
            // next request's `stat` differs from this stamp and reads again.
            cache.value = stamp.and_then(|_| read_text(&self.path));
            cache.stamp = stamp;
        }
        cache.value.clone()
    }
}

/// The file's contents if it is readable UTF-8 of at most [`MAX_FILE_BYTES`].
fn read_text(path: &Path) -> Option<Arc<str>> {
    let mut bytes = Vec::new();
    File::open(path)
        .ok()?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return None;
    }
    String::from_utf8(bytes).ok().map(Arc::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(dir: &tempfile::TempDir) -> FileEnvVar {
        FileEnvVar::new("SIGNING_KEY".into(), dir.path().join("key.txt"))
    }

    #[test]
    fn absent_file_is_unset_and_seen_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let var = var(&dir);
        assert_eq!(var.value(), None);
        std::fs::write(var.path(), "first").unwrap();
        assert_eq!(var.value().as_deref(), Some("first"));
        std::fs::remove_file(var.path()).unwrap();
        assert_eq!(var.value(), None);
    }

    #[test]
    fn a_file_replaced_by_rename_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let var = var(&dir);
        std::fs::write(var.path(), "old").unwrap();
        assert_eq!(var.value().as_deref(), Some("old"));
        // keycreator's way: write a new file, rename it over the old one.
        let next = dir.path().join("key.txt.new");
        std::fs::write(&next, "new").unwrap();
        std::fs::rename(&next, var.path()).unwrap();
        assert_eq!(var.value().as_deref(), Some("new"));
    }

    #[test]
    fn a_file_edited_in_place_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let var = var(&dir);
        std::fs::write(var.path(), "aaaa").unwrap();
        assert_eq!(var.value().as_deref(), Some("aaaa"));
        // Same inode: the size and the modification time tell.
        std::fs::write(var.path(), "bbbbbb").unwrap();
        assert_eq!(var.value().as_deref(), Some("bbbbbb"));
    }

    #[test]
    fn a_symlink_swap_is_followed() {
        // How Kubernetes updates a mounted Secret: key.txt -> ..data/key.txt,
        // and ..data is re-pointed at a new directory.
        let dir = tempfile::tempdir().unwrap();
        for (version, contents) in [("v1", "one"), ("v2", "two")] {
            std::fs::create_dir(dir.path().join(version)).unwrap();
            std::fs::write(dir.path().join(version).join("key.txt"), contents).unwrap();
        }
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink("v1", &data).unwrap();
        std::os::unix::fs::symlink("..data/key.txt", dir.path().join("key.txt")).unwrap();
        let var = var(&dir);
        assert_eq!(var.value().as_deref(), Some("one"));
        let swap = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink("v2", &swap).unwrap();
        std::fs::rename(&swap, &data).unwrap();
        assert_eq!(var.value().as_deref(), Some("two"));
    }

    #[test]
    fn debug_output_hides_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let var = var(&dir);
        std::fs::write(var.path(), "secret").unwrap();
        assert!(var.value().is_some());
        assert!(!format!("{var:?}").contains("secret"));
    }

    #[test]
    fn files_that_cannot_be_passed_are_unset() {
        let dir = tempfile::tempdir().unwrap();
        let var = var(&dir);
        std::fs::write(var.path(), vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert_eq!(var.value(), None);
        std::fs::write(var.path(), [0xff, 0xfe]).unwrap();
        assert_eq!(var.value(), None);
        std::fs::write(var.path(), vec![b'a'; MAX_FILE_BYTES as usize]).unwrap();
        assert_eq!(var.value().map(|v| v.len()), Some(MAX_FILE_BYTES as usize));
        std::fs::create_dir(dir.path().join("dir")).unwrap();
        let directory = FileEnvVar::new("D".into(), dir.path().join("dir"));
        assert_eq!(directory.value(), None);
    }
}
