//! Starts the real `runner` binary on a loopback ephemeral port with the real
//! components, and talks HTTP to it.
//!
//! The servers can also be another build of the runner, with its own
//! precompiled components and key file, so the same expectations check what
//! the images ship (tests/e2e/test_arm64.py runs the arm64 build this way):
//!
//! - `TEST_RUNNER`: the runner binary to serve with (default: this crate's);
//! - `TEST_CWASM_DIR`: its `creator.cwasm` and `verifier.cwasm` (default:
//!   compiled here with `runner compile`);
//! - `TEST_KEY_FILE`: a key file written by keycreator for `benchmark-secret`
//!   (default: [`BENCHMARK_KEY`] written here).

#![allow(dead_code)] // Each test binary uses a different part of this.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

/// The runner that serves: `TEST_RUNNER`, or this crate's.
fn serving_runner() -> PathBuf {
    std::env::var_os("TEST_RUNNER").map_or_else(|| PathBuf::from(RUNNER), PathBuf::from)
}

/// `echo benchmark-secret | sha512sum | head -c 128`.
pub const BENCHMARK_KEY: &str = "42a5dd4b401dc38d1857b79e53432bf33b9f4d36301fd5c863280c0a550777172b7235376c2a35d2d5eb857407575559ec6874127f05fe8f098217cfc9225e63";

/// A component built for wasm32-wasip2 by the test script.
pub fn wasm(name: &str) -> PathBuf {
    let dir = std::env::var_os("WASM_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/wasm32-wasip2/release")
                .to_path_buf()
        },
        PathBuf::from,
    );
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the components first with \
         `cargo build --release --target wasm32-wasip2 -p creator -p verifier -p misbehaving-guest` \
         (scripts/test.sh does this)",
        path.display()
    );
    path
}

/// The component compiled once per test binary with `runner compile`, so
/// each test starts a runner in milliseconds instead of compiling again.
pub fn cwasm(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("TEST_CWASM_DIR") {
        let path = Path::new(&dir).join(format!("{name}.cwasm"));
        assert!(path.is_file(), "TEST_CWASM_DIR has no {}", path.display());
        return path;
    }
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let out = dir.path().join(format!("{name}.cwasm"));
    let _guard = LOCK.lock().unwrap();
    if !out.exists() {
        let status = Command::new(RUNNER)
            .arg("compile")
            .arg(wasm(name))
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "runner compile {name} failed");
    }
    out
}

/// A key directory holding the benchmark key, as keycreator would write it.
pub fn key_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    match std::env::var_os("TEST_KEY_FILE") {
        Some(file) => {
            std::fs::copy(&file, &key).unwrap();
        }
        None => std::fs::write(&key, BENCHMARK_KEY).unwrap(),
    }
    dir
}

/// A running `runner` process; killed on drop.
pub struct Runner {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Runner {
    /// Starts `runner [args] component` and waits until it listens.
    pub fn start(component: &Path, args: &[&str]) -> Runner {
        Self::try_start(component, args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(component: &Path, args: &[&str]) -> Result<Runner, String> {
        let mut child = Command::new(serving_runner())
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .arg(component)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "listening"
                {
                    let _ = tx.send(event["addr"].as_str().unwrap().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(Runner { child, addr, log }),
            Err(_) => {
                let _ = child.kill();
                let mut stderr = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                Err(format!("runner did not start listening: {stderr}"))
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> Reply {
        request("GET", &self.url(path), None)
    }

    pub fn post(&self, path: &str, body: impl AsRef<[u8]>) -> Reply {
        request("POST", &self.url(path), Some(body.as_ref()))
    }

    /// The JSON lines the runner has written to stdout so far.
    pub fn log(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `{"error", "detail"}` body every error carries.
    pub fn error(&self) -> (String, String) {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let json: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        (
            json["error"].as_str().unwrap().to_owned(),
            json["detail"].as_str().unwrap().to_owned(),
        )
    }
}

pub fn request(method: &str, url: &str, body: Option<&[u8]>) -> Reply {
    try_request(method, url, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

pub fn try_request(method: &str, url: &str, body: Option<&[u8]>) -> Result<Reply, ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .unwrap();
    let mut response = agent.run(request)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(10 << 20)
        .read_to_string()?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The JSON body for `POST /verifier`.
pub fn token_body(token: &str) -> String {
    serde_json::json!({ "token": token }).to_string()
}

/// How the services get the contents of their key files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The runner passes `key.txt` with `--env-from-file`, as the images
    /// run; the verifier reads `previous-key.txt` itself.
    Runner,
    /// The guest reads the files through the mapped directory itself, as
    /// under Spin or `wasmtime serve`.
    Files,
}

pub const KEY_SOURCES: [KeySource; 2] = [KeySource::Runner, KeySource::Files];

/// The creator (with `creator_args`) and the verifier, sharing the key
/// directory `key`, run as the images run them.
pub fn services(key: &tempfile::TempDir, creator_args: &[&str]) -> (Runner, Runner) {
    services_with(key, creator_args, KeySource::Runner)
}

/// Like [`services`], with the keys coming from `source`.
pub fn services_with(
    key: &tempfile::TempDir,
    creator_args: &[&str],
    source: KeySource,
) -> (Runner, Runner) {
    let dir = format!("{}::/usr/share/key", key.path().display());
    let current = format!("SIGNING_KEY={}", key.path().join("key.txt").display());
    let mut args = vec!["--dir", dir.as_str()];
    if source == KeySource::Runner {
        args.extend(["--env-from-file", &current]);
    }
    let verifier = Runner::start(&cwasm("verifier"), &args);
    args.extend_from_slice(creator_args);
    let creator = Runner::start(&cwasm("creator"), &args);
    (creator, verifier)
}

/// `POST /create` for `username`; the token, after checking the 200 and its content type.
pub fn create(creator: &Runner, username: &str) -> String {
    let body = serde_json::json!({ "username": username, "password": "pass" }).to_string();
    let reply = creator.post("/create", body);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    reply.body
}
