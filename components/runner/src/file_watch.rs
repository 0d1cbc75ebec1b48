//! Knowing that a file has not changed without asking the file system.
//!
//! `--env-from-file` must hand every request the file's current contents, and
//! a `stat` per request (following the path's symbolic links) was ~4 % of the
//! creator's CPU per request (docs/benchmarks.md, round 7). On Linux an
//! inotify watch on the directories involved tells instead: the kernel queues
//! an event inside the very system call that renames, writes, removes or
//! re-permissions a file there, so one non-blocking `read` of the inotify
//! descriptor (nothing queued: `EAGAIN`) proves that nothing changed since the
//! last check, with the same ordering a `stat` gives. Only then is the `stat`
//! skipped.
//!
//! Which directories: the path's own, where renames of the file and Kubernetes'
//! swap of a Secret volume's `..data` link happen, and the directory of the
//! file the path finally resolves to, where it is written. A change inotify
//! cannot see (a network file system changed from another machine, a link
//! hop through a third directory) is still seen within [`RECHECK_INTERVAL`],
//! and where no watch can be set up (no directory yet, not Linux, out of
//! watches) every call asks for a check, as before.

use std::path::Path;
use std::time::{Duration, Instant};

/// The longest a change inotify did not report can go unseen.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Watches one path for changes; see the module documentation.
pub struct FileWatch {
    interval: Duration,
    /// When the file was last checked, if a watch covered it since.
    armed_at: Option<Instant>,
    #[cfg(target_os = "linux")]
    inotify: linux::Inotify,
}

impl Default for FileWatch {
    fn default() -> Self {
        Self::with_interval(RECHECK_INTERVAL)
    }
}

impl FileWatch {
    fn with_interval(interval: Duration) -> Self {
        Self {
            interval,
            armed_at: None,
            #[cfg(target_os = "linux")]
            inotify: linux::Inotify::default(),
        }
    }

    /// Whether the file at `path` must be checked (`stat`ed) now: it may have
    /// changed since the last call that returned `true`.
    ///
    /// When it returns `true` the watches are already renewed, so a change
    /// made while the caller checks is reported by the next call.
    pub fn needs_check(&mut self, path: &Path) -> bool {
        if let Some(armed_at) = self.armed_at
            && armed_at.elapsed() < self.interval
            && self.unchanged()
        {
            return false;
        }
        self.armed_at = self.arm(path).then(Instant::now);
        true
    }

    #[cfg(target_os = "linux")]
    fn unchanged(&mut self) -> bool {
        self.inotify.nothing_happened()
    }

    #[cfg(target_os = "linux")]
    fn arm(&mut self, path: &Path) -> bool {
        self.inotify.watch(path)
    }

    #[cfg(not(target_os = "linux"))]
    fn unchanged(&mut self) -> bool {
        false
    }

    #[cfg(not(target_os = "linux"))]
    fn arm(&mut self, _path: &Path) -> bool {
        false
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::mem::MaybeUninit;
    use std::os::fd::OwnedFd;
    use std::path::{Path, PathBuf};

    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::io::Errno;

    /// Every way a directory entry, or the file it names, can change.
    const CHANGES: WatchFlags = WatchFlags::CREATE
        .union(WatchFlags::DELETE)
        .union(WatchFlags::MOVED_FROM)
        .union(WatchFlags::MOVED_TO)
        .union(WatchFlags::MODIFY)
        .union(WatchFlags::CLOSE_WRITE)
        .union(WatchFlags::ATTRIB)
        .union(WatchFlags::DELETE_SELF)
        .union(WatchFlags::MOVE_SELF)
        .union(WatchFlags::ONLYDIR);

    /// An inotify descriptor and the directories it watches.
    #[derive(Default)]
    pub struct Inotify {
        fd: Option<OwnedFd>,
        watches: Vec<i32>,
    }

    impl Inotify {
        /// True when no event is queued: nothing changed in the watched
        /// directories. Reads (and so discards) whatever is queued.
        pub fn nothing_happened(&mut self) -> bool {
            let Some(fd) = &self.fd else { return false };
            let mut buffer = [MaybeUninit::uninit(); 1024];
            let mut events = inotify::Reader::new(fd, &mut buffer);
            let mut nothing = true;
            let broken = loop {
                match events.next() {
                    // The kernel confirming a watch `watch` removed: no change.
                    Ok(event)
                        if event.events().contains(ReadFlags::IGNORED)
                            && !self.watches.contains(&event.wd()) => {}
                    Ok(_) => nothing = false,
                    Err(Errno::AGAIN) => break false,
                    Err(Errno::INTR) => {}
                    Err(_) => break true,
                }
            };
            if broken {
                // Unexpected: stop trusting the watch; the next check renews it.
                self.fd = None;
                return false;
            }
            nothing
        }

        /// Watches the directories that hold `path` and the file it resolves
        /// to, and no others. False if that is not possible.
        pub fn watch(&mut self, path: &Path) -> bool {
            if self.fd.is_none() {
                self.fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok();
                self.watches.clear();
            }
            let Some(fd) = &self.fd else { return false };
            let mut directories = vec![parent(path)];
            if let Ok(resolved) = path.canonicalize() {
                directories.push(parent(&resolved));
            }
            let mut watches = Vec::with_capacity(directories.len());
            for directory in &directories {
                match inotify::add_watch(fd, directory.as_path(), CHANGES) {
                    Ok(watch) => watches.push(watch),
                    Err(_) => return false,
                }
            }
            // A directory watched before but no longer involved (the last
            // Secret version, say) would only cause needless checks. The
            // kernel has already dropped the watch if the directory is gone.
            for old in self.watches.iter().filter(|old| !watches.contains(old)) {
                let _ = inotify::remove_watch(fd, *old);
            }
            self.watches = watches;
            true
        }
    }

    /// The directory an entry at `path` lives in (`.` for a bare name).
    fn parent(path: &Path) -> PathBuf {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A watch that never expires on its own, so only changes count.
    fn watch() -> FileWatch {
        FileWatch::with_interval(Duration::from_secs(3600))
    }

    /// A `key.txt` holding `contents` in a new directory (kept alive by the
    /// returned handle).
    fn key_file(contents: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        std::fs::write(&path, contents).unwrap();
        (dir, path)
    }

    #[test]
    fn an_unchanged_file_needs_no_second_check() {
        let (_dir, path) = key_file("key");
        let mut watch = watch();
        assert!(watch.needs_check(&path), "the first call always checks");
        for _ in 0..3 {
            assert!(!watch.needs_check(&path));
        }
        // Reading the file, or changing another directory, is no change.
        std::fs::read(&path).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("key.txt"), "other").unwrap();
        assert!(!watch.needs_check(&path));
    }

    #[test]
    fn every_kind_of_change_asks_for_a_check_at_once() {
        let (dir, path) = key_file("one");
        let mut watch = watch();
        assert!(watch.needs_check(&path));
        let next = dir.path().join("key.txt.new");
        let changes: [&dyn Fn(); 4] = [
            &|| std::fs::write(&path, "two").unwrap(),
            &|| {
                std::fs::write(&next, "three").unwrap();
                std::fs::rename(&next, &path).unwrap();
            },
            &|| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            },
            &|| std::fs::remove_file(&path).unwrap(),
        ];
        for change in changes {
            change();
            assert!(watch.needs_check(&path));
            assert!(!watch.needs_check(&path));
        }
        std::fs::write(&path, "back").unwrap();
        assert!(watch.needs_check(&path));
    }

    #[test]
    fn writes_to_the_file_a_link_resolves_to_are_seen() {
        // key.txt -> ..data/key.txt, ..data -> v1: a Kubernetes Secret volume.
        let dir = tempfile::tempdir().unwrap();
        for version in ["v1", "v2"] {
            std::fs::create_dir(dir.path().join(version)).unwrap();
            std::fs::write(dir.path().join(version).join("key.txt"), version).unwrap();
        }
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink("v1", &data).unwrap();
        let path = dir.path().join("key.txt");
        std::os::unix::fs::symlink("..data/key.txt", &path).unwrap();
        let mut watch = watch();
        assert!(watch.needs_check(&path));
        assert!(!watch.needs_check(&path));
        // Written where it really is, in another directory.
        std::fs::write(dir.path().join("v1").join("key.txt"), "v1 again").unwrap();
        assert!(watch.needs_check(&path));
        // The Secret updated: `..data` re-pointed by a rename.
        let swap = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink("v2", &swap).unwrap();
        std::fs::rename(&swap, &data).unwrap();
        assert!(watch.needs_check(&path));
        assert!(!watch.needs_check(&path));
        // The old version is no longer watched; the new one is.
        std::fs::write(dir.path().join("v1").join("key.txt"), "stale").unwrap();
        assert!(!watch.needs_check(&path));
        std::fs::write(dir.path().join("v2").join("key.txt"), "v2 again").unwrap();
        assert!(watch.needs_check(&path));
    }

    #[test]
    fn without_a_directory_to_watch_every_call_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("key.txt");
        let mut watch = watch();
        for _ in 0..3 {
            assert!(watch.needs_check(&path));
        }
        // Once the directory exists, the watch takes over.
        std::fs::create_dir(dir.path().join("missing")).unwrap();
        assert!(watch.needs_check(&path));
        assert!(!watch.needs_check(&path));
    }

    #[test]
    fn a_check_is_asked_for_again_after_the_interval() {
        let (_dir, path) = key_file("key");
        let mut watch = FileWatch::with_interval(Duration::from_millis(20));
        assert!(watch.needs_check(&path));
        std::thread::sleep(Duration::from_millis(30));
        assert!(watch.needs_check(&path));
    }
}
