//! Routes, status codes and bodies of the two services, independent of the
//! HTTP stack that carries them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::key::{DEFAULT_KEY_FILE, KeyError, Keys};
use crate::token::{self, TokenError};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Token lifetime unless `TOKEN_TTL_SECONDS` says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Which service is answering: each owns one route besides the health probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /create`: issue a token.
    Creator,
    /// `POST /verifier`: check a token.
    Verifier,
}

impl Endpoint {
    /// The path this service owns.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Creator => "/create",
            Endpoint::Verifier => "/verifier",
        }
    }
}

/// Settings read from the environment (WASI environment under a Wasm host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `KEY_FILE`: path of the key file written by keycreator.
    pub key_file: String,
    /// `TOKEN_TTL_SECONDS`: lifetime of issued tokens (creator only).
    pub token_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key_file: DEFAULT_KEY_FILE.to_owned(),
            token_ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

impl Config {
    /// Reads the configuration from this process's environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, in production).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = lookup("KEY_FILE").filter(|p| !p.is_empty()) {
            config.key_file = path;
        }
        if let Some(ttl) = lookup("TOKEN_TTL_SECONDS") {
            let seconds: u64 = ttl.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "TOKEN_TTL_SECONDS must be a whole number of seconds, got {ttl:?}"
                ))
            })?;
            if !(1..=86_400).contains(&seconds) {
                return Err(ConfigError(format!(
                    "TOKEN_TTL_SECONDS must be between 1 and 86400, got {seconds}"
                )));
            }
            config.token_ttl = Duration::from_secs(seconds);
        }
        Ok(config)
    }
}

/// A setting in the environment has a value the service cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The parts of an HTTP request the contract looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub body: &'a [u8],
}

/// A complete HTTP response, ready for any HTTP stack to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra headers such as `Allow` or `WWW-Authenticate`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `invalid_token`.
    pub error: String,
    /// What exactly was wrong, for a human.
    pub detail: String,
}

impl Response {
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An error response with a JSON [`ErrorBody`].
    pub fn error(status: u16, error: &str, detail: impl Into<String>) -> Self {
        let body = ErrorBody {
            error: error.to_owned(),
            detail: detail.into(),
        };
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::to_vec(&body).expect("a struct of strings always serializes"),
        }
    }

    /// The answer for a service whose environment cannot be used.
    pub fn misconfigured(error: &ConfigError) -> Self {
        Self::error(500, "misconfigured", error.to_string())
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Answers one request for `endpoint`.
///
/// `keys` are asked for only by the routes that need them, so a missing key
/// never affects liveness and each host decides how keys are cached.
pub fn handle(
    endpoint: Endpoint,
    config: &Config,
    request: Request<'_>,
    keys: &impl Keys,
) -> Response {
    let allowed = match request.path {
        "/healthz" | "/readyz" => "GET",
        path if path == endpoint.path() => "POST",
        _ => {
            return Response::error(
                404,
                "not_found",
                format!(
                    "no route for {}; this service answers POST {}",
                    request.path,
                    endpoint.path()
                ),
            );
        }
    };
    if request.method != allowed {
        return Response::error(
            405,
            "method_not_allowed",
            format!(
                "{} {} is not supported; use {allowed}",
                request.method, request.path
            ),
        )
        .with_header("Allow", allowed);
    }
    match request.path {
        "/healthz" => Response::text(200, "ok"),
        "/readyz" => match readiness(endpoint, keys) {
            Ok(()) => Response::text(200, "ready"),
            Err(reason) => Response::error(503, "not_ready", reason),
        },
        // Hosts may pass just the first `MAX_BODY_BYTES + 1` bytes of a
        // larger body: enough to know it is too large.
        _ if request.body.len() > MAX_BODY_BYTES => Response::error(
            413,
            "payload_too_large",
            format!("request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
        ),
        _ => match endpoint {
            Endpoint::Creator => create(config, request.body, keys),
            Endpoint::Verifier => verify(request.body, keys),
        },
    }
}

/// Ready means every request can be answered as intended: the current key is
/// usable and, for the verifier, the previous key is absent or usable. A
/// verifier that ignored a broken previous key would reject valid tokens, so
/// it says so instead. The creator never reads the previous key.
fn readiness(endpoint: Endpoint, keys: &impl Keys) -> Result<(), String> {
    keys.current().map_err(|e| e.to_string())?;
    if endpoint == Endpoint::Verifier {
        keys.previous().map_err(|e| {
            format!("previous key unusable, tokens it signed would be rejected: {e}")
        })?;
    }
    Ok(())
}

/// `POST /create` body. The password is accepted as the reference system
/// does; it is never logged or echoed (see the `Debug` impl).
#[derive(Deserialize)]
struct CreateRequest {
    username: String,
    #[allow(dead_code)] // Part of the wire contract; checked in a later issue.
    password: String,
}

impl fmt::Debug for CreateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `POST /verifier` body.
#[derive(Debug, Deserialize)]
struct VerifyRequest {
    token: String,
}

fn create(config: &Config, body: &[u8], keys: &impl Keys) -> Response {
    let request: CreateRequest = match parse_json(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    if request.username.is_empty() {
        return Response::error(400, "invalid_request", "username must not be empty");
    }
    // Always the current key: only verifiers honour the previous one.
    let key = match keys.current() {
        Ok(key) => key,
        Err(e) => return key_unavailable(&e),
    };
    match token::issue(&key, &request.username, config.token_ttl) {
        // The verifier refuses tokens over MAX_TOKEN_LEN unparsed; issuing one
        // would hand out a token that can never be verified. The username is
        // what makes it long, so it is the client's error.
        Ok(token) if token.len() > token::MAX_TOKEN_LEN => Response::error(
            400,
            "invalid_request",
            format!(
                "username is too long: its token would be {} bytes; tokens are at most {}",
                token.len(),
                token::MAX_TOKEN_LEN
            ),
        ),
        Ok(token) => Response::text(200, token),
        Err(e) => Response::error(500, "internal", e.to_string()),
    }
}

fn verify(body: &[u8], keys: &impl Keys) -> Response {
    let request: VerifyRequest = match parse_json(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let current = match keys.current() {
        Ok(key) => key,
        Err(e) => return key_unavailable(&e),
    };
    match token::verify_with_keys(&current, || keys.previous(), &request.token) {
        Ok(username) => Response::text(200, username),
        Err(TokenError::Invalid(detail)) => Response::error(401, "invalid_token", detail)
            .with_header("WWW-Authenticate", r#"Bearer error="invalid_token""#),
        Err(TokenError::KeyUnavailable(e)) => key_unavailable(&e),
        Err(e @ TokenError::Signing(_)) => Response::error(500, "internal", e.to_string()),
    }
}

fn key_unavailable(error: &KeyError) -> Response {
    Response::error(503, "key_unavailable", error.to_string())
}

/// Parses a JSON body, telling malformed JSON apart from a wrong shape.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        let (error, what) = if e.is_data() {
            ("invalid_request", "request body has the wrong shape")
        } else {
            ("malformed_json", "request body is not valid JSON")
        };
        Response::error(400, error, format!("{what}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::key::SigningKey;
    use std::cell::Cell;

    /// Fixed keys that count how often the previous one is asked for.
    struct TestKeys {
        current: Result<SigningKey, KeyError>,
        previous: Result<Option<SigningKey>, KeyError>,
        previous_reads: Cell<u32>,
    }

    impl Keys for TestKeys {
        fn current(&self) -> Result<SigningKey, KeyError> {
            self.current.clone()
        }
        fn previous(&self) -> Result<Option<SigningKey>, KeyError> {
            self.previous_reads.set(self.previous_reads.get() + 1);
            self.previous.clone()
        }
    }

    fn signing_key(fill: u8) -> SigningKey {
        SigningKey::from_file_contents(&[fill; 128]).unwrap()
    }

    fn keys(
        current: Result<SigningKey, KeyError>,
        previous: Result<Option<SigningKey>, KeyError>,
    ) -> TestKeys {
        TestKeys {
            current,
            previous,
            previous_reads: Cell::new(0),
        }
    }

    fn key() -> TestKeys {
        keys(Ok(signing_key(b'7')), Ok(None))
    }

    fn no_key() -> TestKeys {
        keys(
            Err(KeyError::Missing("/usr/share/key/key.txt".into())),
            Ok(None),
        )
    }

    /// Keys that must not be touched.
    struct Untouchable;

    impl Keys for Untouchable {
        fn current(&self) -> Result<SigningKey, KeyError> {
            panic!("must not read the key")
        }
        fn previous(&self) -> Result<Option<SigningKey>, KeyError> {
            panic!("must not read the previous key")
        }
    }

    fn call(endpoint: Endpoint, method: &str, path: &str, body: &[u8]) -> Response {
        let request = Request { method, path, body };
        handle(endpoint, &Config::default(), request, &key())
    }

    fn error_of(response: &Response) -> ErrorBody {
        assert_eq!(response.content_type, "application/json");
        serde_json::from_slice(&response.body).unwrap()
    }

    #[test]
    fn create_then_verify_returns_the_username() {
        let body = br#"{"username": "testname", "password": "pass"}"#;
        let created = call(Endpoint::Creator, "POST", "/create", body);
        assert_eq!(created.status, 200, "{created:?}");
        let token = String::from_utf8(created.body).unwrap();
        let body = serde_json::to_vec(&serde_json::json!({ "token": token })).unwrap();
        let verified = call(Endpoint::Verifier, "POST", "/verifier", &body);
        assert_eq!(
            (verified.status, &verified.body[..]),
            (200, &b"testname"[..])
        );
        assert!(verified.content_type.starts_with("text/plain"));
    }

    /// Found while fuzzing (`service_request`): JSON allows a lone surrogate
    /// escape in a string (RFC 8259, section 8.2). In a field the contract
    /// ignores it changes nothing; in the username it cannot become a Rust
    /// string, and is the client's error (serde_json calls it a syntax
    /// error), never a 500.
    #[test]
    fn lone_surrogates_are_ignored_or_a_400() {
        let body = br#"{"username": "a", "password": "p", "extra": "\udc00"}"#;
        assert_eq!(call(Endpoint::Creator, "POST", "/create", body).status, 200);
        let body = br#"{"username": "\ud800", "password": "p"}"#;
        let response = call(Endpoint::Creator, "POST", "/create", body);
        assert_eq!(response.status, 400);
        assert_eq!(error_of(&response).error, "malformed_json");
    }

    #[test]
    fn bad_json_and_missing_fields_are_400_with_a_reason() {
        for (body, code, needle) in [
            (&b"{not json"[..], "malformed_json", "not valid JSON"),
            (b"", "malformed_json", "not valid JSON"),
            (
                br#"{"username": "x"}"#,
                "invalid_request",
                "missing field `password`",
            ),
            (
                br#"{"password": "x"}"#,
                "invalid_request",
                "missing field `username`",
            ),
            (
                br#"{"username": 5, "password": "x"}"#,
                "invalid_request",
                "invalid type",
            ),
            (
                br#"{"username": "", "password": "x"}"#,
                "invalid_request",
                "must not be empty",
            ),
        ] {
            let response = call(Endpoint::Creator, "POST", "/create", body);
            assert_eq!(response.status, 400);
            let error = error_of(&response);
            assert_eq!(error.error, code);
            assert!(error.detail.contains(needle), "{}", error.detail);
        }
        let response = call(Endpoint::Verifier, "POST", "/verifier", b"{}");
        assert_eq!(response.status, 400);
        assert!(error_of(&response).detail.contains("missing field `token`"));
    }

    #[test]
    fn invalid_tokens_are_401_with_www_authenticate() {
        let response = call(
            Endpoint::Verifier,
            "POST",
            "/verifier",
            br#"{"token":"x.y.z"}"#,
        );
        assert_eq!(response.status, 401);
        assert_eq!(error_of(&response).error, "invalid_token");
        assert!(
            response
                .headers
                .iter()
                .any(|(name, _)| *name == "WWW-Authenticate")
        );
    }

    #[test]
    fn the_creator_issues_only_tokens_the_verifier_accepts() {
        let create = |username: String| {
            let body = serde_json::json!({ "username": username, "password": "p" }).to_string();
            call(Endpoint::Creator, "POST", "/create", body.as_bytes())
        };
        // Control characters are escaped to six bytes each in the claims, the
        // worst case per character: 900 of them still fit, with room for a
        // longer header.
        let long = "\u{1}".repeat(900);
        let created = create(long.clone());
        assert_eq!(created.status, 200, "{created:?}");
        let body = serde_json::json!({ "token": String::from_utf8(created.body).unwrap() });
        let verified = call(
            Endpoint::Verifier,
            "POST",
            "/verifier",
            body.to_string().as_bytes(),
        );
        assert_eq!(verified.status, 200, "{verified:?}");
        assert_eq!(verified.body, long.as_bytes());

        let refused = create("a".repeat(token::MAX_TOKEN_LEN));
        assert_eq!(refused.status, 400);
        let error = error_of(&refused);
        assert_eq!(error.error, "invalid_request");
        assert!(
            error.detail.contains("username is too long"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn oversized_bodies_are_413() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        let response = call(Endpoint::Creator, "POST", "/create", &body);
        assert_eq!(response.status, 413);
        assert_eq!(error_of(&response).error, "payload_too_large");
    }

    #[test]
    fn wrong_method_is_405_with_allow_and_unknown_path_is_404() {
        let response = call(Endpoint::Creator, "GET", "/create", b"");
        assert_eq!(response.status, 405);
        assert_eq!(response.headers, vec![("Allow", "POST".to_owned())]);
        let response = call(Endpoint::Verifier, "POST", "/readyz", b"");
        assert_eq!(response.status, 405);
        assert_eq!(response.headers, vec![("Allow", "GET".to_owned())]);
        // Each service owns only its own route.
        assert_eq!(call(Endpoint::Verifier, "POST", "/create", b"").status, 404);
        assert_eq!(call(Endpoint::Creator, "POST", "/", b"").status, 404);
        assert_eq!(
            error_of(&call(Endpoint::Creator, "GET", "/x", b"")).error,
            "not_found"
        );
    }

    #[test]
    fn readiness_follows_the_key_and_liveness_does_not() {
        let config = Config::default();
        let get = |path| Request {
            method: "GET",
            path,
            body: b"",
        };
        let ready = handle(Endpoint::Creator, &config, get("/readyz"), &no_key());
        assert_eq!(ready.status, 503);
        assert!(error_of(&ready).detail.contains("does not exist"));
        assert_eq!(
            handle(Endpoint::Creator, &config, get("/readyz"), &key()).status,
            200
        );
        let live = handle(Endpoint::Creator, &config, get("/healthz"), &Untouchable);
        assert_eq!(live.status, 200);
    }

    #[test]
    fn a_broken_previous_key_makes_the_verifier_unready_not_the_creator() {
        let get = Request {
            method: "GET",
            path: "/readyz",
            body: b"",
        };
        let broken = || {
            keys(
                Ok(signing_key(b'7')),
                Err(KeyError::Malformed("previous-key.txt: bad".into())),
            )
        };
        let ready = handle(Endpoint::Verifier, &Config::default(), get, &broken());
        assert_eq!(ready.status, 503);
        let detail = error_of(&ready).detail;
        assert!(detail.contains("previous key unusable"), "{detail}");
        assert!(detail.contains("previous-key.txt"), "{detail}");
        let creator = handle(Endpoint::Creator, &Config::default(), get, &broken());
        assert_eq!(creator.status, 200);
        let with_previous = keys(Ok(signing_key(b'7')), Ok(Some(signing_key(b'6'))));
        let ready = handle(Endpoint::Verifier, &Config::default(), get, &with_previous);
        assert_eq!(ready.status, 200);
    }

    fn verify_with(keys: &TestKeys, token: &str) -> Response {
        let body = serde_json::to_vec(&serde_json::json!({ "token": token })).unwrap();
        let request = Request {
            method: "POST",
            path: "/verifier",
            body: &body,
        };
        handle(Endpoint::Verifier, &Config::default(), request, keys)
    }

    #[test]
    fn the_verifier_accepts_both_keys_and_reads_the_previous_only_when_needed() {
        let (current, previous) = (signing_key(b'7'), signing_key(b'6'));
        let rotating = keys(Ok(current.clone()), Ok(Some(previous.clone())));
        let ttl = Duration::from_secs(60);
        let new = token::issue(&current, "new", ttl).unwrap();
        let old = token::issue(&previous, "old", ttl).unwrap();

        let reply = verify_with(&rotating, &new);
        assert_eq!((reply.status, &reply.body[..]), (200, &b"new"[..]));
        assert_eq!(rotating.previous_reads.get(), 0, "common path");
        let reply = verify_with(&rotating, &old);
        assert_eq!((reply.status, &reply.body[..]), (200, &b"old"[..]));
        assert_eq!(rotating.previous_reads.get(), 1);

        // Window closed: the old key's tokens are 401 and say why.
        let reply = verify_with(&keys(Ok(current), Ok(None)), &old);
        assert_eq!(reply.status, 401);
        let error = error_of(&reply);
        assert_eq!(error.error, "invalid_token");
        assert!(error.detail.contains("unknown key id"), "{}", error.detail);
    }

    #[test]
    fn an_old_token_with_an_unreadable_previous_key_is_503() {
        let broken = keys(
            Ok(signing_key(b'7')),
            Err(KeyError::Unreadable("previous-key.txt: denied".into())),
        );
        let old = token::issue(&signing_key(b'6'), "old", Duration::from_secs(60)).unwrap();
        let reply = verify_with(&broken, &old);
        assert_eq!(reply.status, 503);
        assert_eq!(error_of(&reply).error, "key_unavailable");
    }

    #[test]
    fn the_creator_signs_with_the_current_key_only() {
        let current = signing_key(b'7');
        let rotating = keys(Ok(current.clone()), Ok(Some(signing_key(b'6'))));
        let request = Request {
            method: "POST",
            path: "/create",
            body: br#"{"username":"a","password":"b"}"#,
        };
        let created = handle(Endpoint::Creator, &Config::default(), request, &rotating);
        assert_eq!(created.status, 200);
        let token = String::from_utf8(created.body).unwrap();
        assert_eq!(token::verify(&current, &token).unwrap(), "a");
        assert_eq!(rotating.previous_reads.get(), 0);
    }

    #[test]
    fn a_missing_key_is_503_not_a_client_error() {
        let request = Request {
            method: "POST",
            path: "/create",
            body: br#"{"username":"a","password":"b"}"#,
        };
        let response = handle(Endpoint::Creator, &Config::default(), request, &no_key());
        assert_eq!(response.status, 503);
        assert_eq!(error_of(&response).error, "key_unavailable");
    }

    #[test]
    fn config_reads_key_file_and_ttl() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Config::from_lookup(env(&[])).unwrap(), Config::default());
        let config =
            Config::from_lookup(env(&[("KEY_FILE", "/k"), ("TOKEN_TTL_SECONDS", "60")])).unwrap();
        assert_eq!(config.key_file, "/k");
        assert_eq!(config.token_ttl, Duration::from_secs(60));
        for bad in ["", "abc", "-1", "0", "86401"] {
            let pairs: &'static [(&str, &str)] =
                Box::leak(vec![("TOKEN_TTL_SECONDS", bad)].into_boxed_slice());
            let err = Config::from_lookup(env(pairs)).unwrap_err();
            assert!(err.0.contains("TOKEN_TTL_SECONDS"), "{err}");
        }
    }

    #[test]
    fn create_request_debug_never_shows_the_password() {
        let request: CreateRequest =
            serde_json::from_str(r#"{"username":"u","password":"hunter2"}"#).unwrap();
        assert!(!format!("{request:?}").contains("hunter2"));
    }
}
