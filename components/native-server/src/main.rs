//! native-server: the creator or verifier contract served natively with
//! hyper, without Wasm. It is the ceiling the Wasm hosts are compared with in
//! `scripts/bench.sh`, so it does the same work per request (routing, JSON,
//! HS256) through the same [`token_contract::handle`], and nothing more: no
//! access log, no per-request isolation.
//!
//! ```text
//! native-server --endpoint creator|verifier --addr IP:PORT --key-file PATH
//! ```
//!
//! Keys are cached: each request that needs a key `stat`s its file (one
//! syscall, about a microsecond) and re-reads and re-validates it only when
//! its inode, size or modification time changed. Rotating the key (keycreator
//! replaces the files atomically) therefore takes effect on the next request,
//! and a key file that disappears or turns malformed makes `/readyz` and the
//! key routes answer 503, exactly as the Wasm services do. The previous key
//! (`previous-key.txt` next to the key file) is looked at only when a token
//! may need it, as in the components.
//!
//! EdDSA and ES256 (`TOKEN_ALG`): the private key (`signing-key.json`) and
//! the public key set (`jwks.json`) next to the key file are cached the same
//! way; the private key parsed, the set as its document, in which the
//! contract looks up and parses the one key a token names, as the
//! components do.
//!
//! `TOKEN_TTL_SECONDS`, `TOKEN_ALG`, `TOKEN_ISSUER`, `TOKEN_AUDIENCE` and
//! `JWKS_MAX_AGE_SECONDS` are read from the environment, as the components
//! do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use token_contract::api::MAX_BODY_BYTES;
use token_contract::jwk::{JWKS_FILE_NAME, SIGNING_JWK_FILE_NAME};
use token_contract::key::{DEFAULT_KEY_FILE, previous_key_path};
use token_contract::{
    Algorithm, Config, Endpoint, KeyError, KeyFiles, Keys, PrivateKey, PublicKeySet, Request,
    Response, SigningKey, handle,
};

/// The runner's allocator, so the comparison measures Wasm, not malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "native-server",
    version,
    about = "Serve the token contract natively (benchmark ceiling)"
)]
struct Cli {
    /// Which service to be.
    #[arg(long, value_enum)]
    endpoint: Service,

    /// Address to listen on (port 0 picks a free port; see the "listening" line).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,

    /// The key file written by keycreator.
    #[arg(long, env = "KEY_FILE", default_value = DEFAULT_KEY_FILE)]
    key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Service {
    Creator,
    Verifier,
}

impl From<Service> for Endpoint {
    fn from(service: Service) -> Self {
        match service {
            Service::Creator => Endpoint::Creator,
            Service::Verifier => Endpoint::Verifier,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("native-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut config = Config::from_env().map_err(|e| anyhow::anyhow!(e))?;
    config.key_file = cli.key_file.display().to_string();
    let app = Arc::new(App {
        endpoint: cli.endpoint.into(),
        keys: CachedKeys::new(cli.key_file, config.algorithm),
        config,
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(cli.addr)
            .await
            .with_context(|| format!("cannot listen on {}", cli.addr))?;
        let addr = listener.local_addr()?;
        println!(
            r#"{{"level":"INFO","message":"listening","addr":"{addr}","endpoint":"{}"}}"#,
            app.endpoint.path()
        );
        tokio::select! {
            result = accept_loop(listener, app) => result,
            signal = shutdown_signal()? => {
                println!(r#"{{"level":"INFO","message":"exiting","signal":"{signal}"}}"#);
                Ok(())
            }
        }
    })
}

async fn accept_loop(listener: tokio::net::TcpListener, app: Arc<App>) -> Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                eprintln!("native-server: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.respond(request).await) }
            });
            // Keep-alive is hyper's default for HTTP/1.1.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn shutdown_signal() -> Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

struct App {
    endpoint: Endpoint,
    config: Config,
    keys: CachedKeys,
}

impl App {
    async fn respond(&self, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // Read at most one byte past the contract's limit, so it answers 413
        // itself with its usual body.
        let limit = MAX_BODY_BYTES + 1;
        let body = if declared.is_some_and(|n| n > limit as u64) {
            Err(too_large())
        } else {
            match Limited::new(body, limit).collect().await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
                Err(error) => Err(Response::error(
                    400,
                    "bad_request",
                    format!("could not read the request body: {error}"),
                )),
            }
        };
        let response = match body {
            Ok(body) => handle(
                self.endpoint,
                &self.config,
                Request {
                    method: parts.method.as_str(),
                    path: parts.uri.path(),
                    body: &body,
                },
                &self.keys,
            ),
            Err(response) => response,
        };
        into_hyper(response)
    }
}

fn too_large() -> Response {
    Response::error(
        413,
        "payload_too_large",
        format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
    )
}

fn into_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder()
        .status(response.status)
        .header(CONTENT_TYPE, response.content_type);
    for (name, value) in &response.headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|_| {
            // Only reachable if the contract produced an invalid status or
            // header; answer rather than panic.
            let mut fallback = hyper::Response::new(Full::new(Bytes::from_static(
                br#"{"error":"internal","detail":"invalid response"}"#,
            )));
            *fallback.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
}

/// What identifies one version of the key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec(),
        }
    }
}

/// The key files, each re-read only when it changes.
struct CachedKeys {
    current: KeyCache<SigningKey>,
    previous: KeyCache<SigningKey>,
    signing_jwk: KeyCache<PrivateKey>,
    jwks: KeyCache<PublicKeySet>,
}

impl CachedKeys {
    /// The key files of `key_file`'s directory; the private key is read as
    /// a key of `alg`, the service's algorithm. The JSON files are read as
    /// the contract reads them (`KeyFiles` finds each by its name next to
    /// the path it is given).
    fn new(key_file: PathBuf, alg: Algorithm) -> Self {
        Self {
            previous: KeyCache::new(previous_key_path(&key_file), |path: &Path| {
                SigningKey::load_optional(path)
            }),
            signing_jwk: KeyCache::new(
                key_file.with_file_name(SIGNING_JWK_FILE_NAME),
                move |path| optional(KeyFiles::new(path).private_key(alg)),
            ),
            jwks: KeyCache::new(key_file.with_file_name(JWKS_FILE_NAME), |path| {
                optional(KeyFiles::new(path).public_keys())
            }),
            current: KeyCache::new(key_file, |path: &Path| SigningKey::load_optional(path)),
        }
    }
}

/// `Ok(None)` for a file that does not exist.
fn optional<T>(loaded: Result<T, KeyError>) -> Result<Option<T>, KeyError> {
    match loaded {
        Ok(value) => Ok(Some(value)),
        Err(KeyError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Keys for CachedKeys {
    fn current(&self) -> Result<SigningKey, KeyError> {
        self.current.required()
    }

    fn previous(&self) -> Result<Option<SigningKey>, KeyError> {
        self.previous.get()
    }

    fn private_key(&self, _alg: Algorithm) -> Result<PrivateKey, KeyError> {
        // Read as a key of the service's algorithm (CachedKeys::new), which
        // is the one the contract asks for.
        self.signing_jwk.required()
    }

    fn public_keys(&self) -> Result<PublicKeySet, KeyError> {
        self.jwks.required()
    }
}

/// How a [`KeyCache`] reads its file: `Ok(None)` when it does not exist.
type LoadKey<T> = Box<dyn Fn(&Path) -> Result<Option<T>, KeyError> + Send + Sync>;

/// One key file, re-read only when it changes.
struct KeyCache<T> {
    path: PathBuf,
    load: LoadKey<T>,
    cached: RwLock<Option<(Stamp, T)>>,
}

impl<T: Clone> KeyCache<T> {
    fn new(
        path: PathBuf,
        load: impl Fn(&Path) -> Result<Option<T>, KeyError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            path,
            load: Box::new(load),
            cached: RwLock::new(None),
        }
    }

    /// The key, which must exist.
    fn required(&self) -> Result<T, KeyError> {
        self.get()?
            .ok_or_else(|| KeyError::Missing(self.path.display().to_string()))
    }

    /// The key, or `None` when the file does not exist.
    fn get(&self) -> Result<Option<T>, KeyError> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(metadata) => Stamp::of(&metadata),
            Err(error) => {
                // Forget a key whose file is gone: readiness must follow the file.
                if let Ok(mut cached) = self.cached.write() {
                    *cached = None;
                }
                return if error.kind() == std::io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(KeyError::Unreadable(format!(
                        "{}: {error}",
                        self.path.display()
                    )))
                };
            }
        };
        if let Ok(cached) = self.cached.read()
            && let Some((cached_stamp, key)) = cached.as_ref()
            && *cached_stamp == stamp
        {
            return Ok(Some(key.clone()));
        }
        // Changed (or first use): read and validate it again. If the file is
        // replaced between the stat and the read, the next request sees a new
        // stamp and reads it once more.
        let Some(key) = (self.load)(&self.path)? else {
            return Ok(None);
        };
        if let Ok(mut cached) = self.cached.write() {
            *cached = Some((stamp, key.clone()));
        }
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "42a5dd4b401dc38d1857b79e53432bf33b9f4d36301fd5c863280c0a550777172b7235376c2a35d2d5eb857407575559ec6874127f05fe8f098217cfc9225e63";

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "native-server-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn key_cache_follows_the_file() {
        let dir = temp_dir();
        let path = dir.join("key.txt");
        let cache = KeyCache::new(path.clone(), |path: &Path| SigningKey::load_optional(path));
        assert!(matches!(cache.get(), Ok(None)));
        std::fs::write(&path, KEY).unwrap();
        assert!(matches!(cache.get(), Ok(Some(_))));
        assert!(matches!(cache.get(), Ok(Some(_))));
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(cache.get(), Err(KeyError::Malformed(_))));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(cache.get(), Ok(None)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_current_key_is_required_and_the_previous_one_optional() {
        let dir = temp_dir();
        let path = dir.join("key.txt");
        let keys = CachedKeys::new(path.clone(), Algorithm::Hs256);
        assert!(matches!(keys.current(), Err(KeyError::Missing(_))));
        std::fs::write(&path, KEY).unwrap();
        assert!(keys.current().is_ok());
        assert!(matches!(keys.previous(), Ok(None)));
        std::fs::write(dir.join("previous-key.txt"), KEY.replace('4', "5")).unwrap();
        let previous = keys.previous().unwrap().unwrap();
        assert_ne!(previous.kid(), keys.current().unwrap().kid());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn contract_headers_convert_without_panicking() {
        let response = Response::error(405, "method_not_allowed", "use POST");
        let mut response = response;
        response.headers.push(("Allow", "POST".to_owned()));
        response
            .headers
            .push(("WWW-Authenticate", r#"Bearer error="invalid_token""#.into()));
        let converted = into_hyper(response);
        assert_eq!(converted.status(), 405);
        assert_eq!(converted.headers()["allow"], "POST");
        assert_eq!(converted.headers()[CONTENT_TYPE], "application/json");
    }
}
