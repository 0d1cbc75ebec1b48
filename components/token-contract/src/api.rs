//! Routes, status codes and bodies of the two services, independent of the
//! HTTP stack that carries them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alg::Algorithm;
use crate::key::{DEFAULT_KEY_FILE, KeyError, Keys};
use crate::token::{self, ClaimsPolicy, IssuingKey, TokenError};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Token lifetime unless `TOKEN_TTL_SECONDS` says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);

/// How long clients may cache the JWK Set unless `JWKS_MAX_AGE_SECONDS` says
/// otherwise: as long as a token lives by default. A rotation publishes the
/// next key at least this long before it signs (README, "Rotating the
/// signing key").
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// Where both services publish the public keys (EdDSA and ES256).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The media type of a JWK Set (RFC 7517, section 8.5).
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";

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
    /// `KEY_FILE`: path of the key file written by keycreator; the other key
    /// files lie next to it.
    pub key_file: String,
    /// `TOKEN_TTL_SECONDS`: lifetime of issued tokens (creator only).
    pub token_ttl: Duration,
    /// `TOKEN_ALG`: the one algorithm tokens are signed and checked with.
    pub algorithm: Algorithm,
    /// `TOKEN_ISSUER` and `TOKEN_AUDIENCE`: the `iss` and `aud` claims.
    pub claims: ClaimsPolicy,
    /// `JWKS_MAX_AGE_SECONDS`: `Cache-Control: max-age` of the JWK Set.
    pub jwks_max_age: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key_file: DEFAULT_KEY_FILE.to_owned(),
            token_ttl: DEFAULT_TOKEN_TTL,
            algorithm: Algorithm::default(),
            claims: ClaimsPolicy::default(),
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
        }
    }
}

/// Reads the whole number of seconds in `name`, between 0 and `max`.
fn seconds(name: &str, value: &str, min: u64, max: u64) -> Result<Duration, ConfigError> {
    let seconds: u64 = value.trim().parse().map_err(|_| {
        ConfigError(format!(
            "{name} must be a whole number of seconds, got {value:?}"
        ))
    })?;
    if !(min..=max).contains(&seconds) {
        return Err(ConfigError(format!(
            "{name} must be between {min} and {max}, got {seconds}"
        )));
    }
    Ok(Duration::from_secs(seconds))
}

/// An `iss` or `aud` value: unset or empty means none; otherwise printable,
/// without leading or trailing space, at most 256 bytes.
fn claim_value(name: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.len() > 256 || value.trim() != value || value.chars().any(char::is_control) {
        return Err(ConfigError(format!(
            "{name} must be at most 256 bytes, without control characters or surrounding \
             spaces, got {value:?}"
        )));
    }
    Ok(Some(value))
}

/// The settings every deployment tool carries the same way (compose's
/// `x-token-settings`, the `token-settings` ConfigMap, spin.toml's
/// variables, which are these names in lowercase).
pub const TOKEN_SETTINGS: [&str; 5] = [
    "TOKEN_ALG",
    "TOKEN_TTL_SECONDS",
    "TOKEN_ISSUER",
    "TOKEN_AUDIENCE",
    "JWKS_MAX_AGE_SECONDS",
];

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
            config.token_ttl = seconds("TOKEN_TTL_SECONDS", &ttl, 1, 86_400)?;
        }
        config.algorithm =
            Algorithm::from_lookup(&lookup).map_err(|e| ConfigError(e.to_string()))?;
        config.claims = ClaimsPolicy {
            issuer: claim_value("TOKEN_ISSUER", lookup("TOKEN_ISSUER"))?,
            audience: claim_value("TOKEN_AUDIENCE", lookup("TOKEN_AUDIENCE"))?,
        };
        if let Some(max_age) = lookup("JWKS_MAX_AGE_SECONDS").filter(|v| !v.is_empty()) {
            config.jwks_max_age = seconds("JWKS_MAX_AGE_SECONDS", &max_age, 0, 86_400)?;
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

    /// The answer for a service whose environment cannot be used: a 503 for
    /// every route but liveness, so that the service is never ready and says
    /// why (`GET /readyz`), and a restart, which cannot fix a setting, is not
    /// asked for.
    pub fn misconfigured(error: &ConfigError, path: &str) -> Self {
        if path == "/healthz" {
            return Self::text(200, "ok");
        }
        Self::error(503, "misconfigured", error.to_string())
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
        // Published only by deployments that have public keys.
        JWKS_PATH if config.algorithm.is_asymmetric() => "GET",
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
        "/readyz" => match readiness(endpoint, config.algorithm, keys) {
            Ok(()) => Response::text(200, "ready"),
            Err(reason) => Response::error(503, "not_ready", reason),
        },
        JWKS_PATH => key_set(config, keys),
        // Hosts may pass just the first `MAX_BODY_BYTES + 1` bytes of a
        // larger body: enough to know it is too large.
        _ if request.body.len() > MAX_BODY_BYTES => Response::error(
            413,
            "payload_too_large",
            format!("request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
        ),
        _ => match endpoint {
            Endpoint::Creator => create(config, request.body, keys),
            Endpoint::Verifier => verify(config, request.body, keys),
        },
    }
}

/// Ready means every request can be answered as intended.
///
/// HS256: the current key is usable and, for the verifier, the previous key
/// is absent or usable. A verifier that ignored a broken previous key would
/// reject valid tokens, so it says so instead. The creator never reads the
/// previous key.
///
/// EdDSA and ES256: every key of the published set is a public key of the
/// deployment's algorithm, and the creator's private key is one of `alg`
/// whose public half is in that set (else it would sign tokens nobody can
/// verify). The verifier's key directory must hold no private key: it
/// needs none, and one there means its keycreator wrote the creator's files.
fn readiness(endpoint: Endpoint, alg: Algorithm, keys: &impl Keys) -> Result<(), String> {
    if !alg.is_asymmetric() {
        keys.current().map_err(|e| e.to_string())?;
        if endpoint == Endpoint::Verifier {
            keys.previous().map_err(|e| {
                format!("previous key unusable, tokens it signed would be rejected: {e}")
            })?;
        }
        return Ok(());
    }
    let published = keys
        .public_keys()
        .and_then(|set| set.validate(alg))
        .map_err(|e| e.to_string())?;
    match (endpoint, keys.private_key(alg)) {
        (Endpoint::Creator, Ok(key)) => {
            let kid = key.kid().unwrap_or_default();
            if !published.iter().any(|k| k == kid) {
                return Err(format!(
                    "the signing key (kid {kid}) is not in the published key set: tokens it \
                     signs could not be verified"
                ));
            }
        }
        (Endpoint::Creator, Err(e)) => return Err(e.to_string()),
        (Endpoint::Verifier, Err(KeyError::Missing(_))) => {}
        (Endpoint::Verifier, _) => {
            return Err(
                "a private key is in the verifier's key directory: give its keycreator \
                 KEYS_FOR=verifier, which writes public keys only"
                    .into(),
            );
        }
    }
    Ok(())
}

/// `GET /.well-known/jwks.json`: the public keys, for clients to cache.
fn key_set(config: &Config, keys: &impl Keys) -> Response {
    let set = match keys.public_keys() {
        Ok(set) => set,
        Err(e) => return key_unavailable(&e),
    };
    // Published only once every key in it is a well-formed public key of
    // this deployment's algorithm: never a private member.
    if let Err(e) = set.validate(config.algorithm) {
        return key_unavailable(&e);
    }
    Response {
        status: 200,
        content_type: JWKS_CONTENT_TYPE,
        headers: vec![(
            "Cache-Control",
            format!("public, max-age={}", config.jwks_max_age.as_secs()),
        )],
        body: set.json().as_bytes().to_vec(),
    }
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
    let (hmac, private);
    let key = if config.algorithm.is_asymmetric() {
        private = match keys.private_key(config.algorithm) {
            Ok(key) => key,
            Err(e) => return key_unavailable(&e),
        };
        IssuingKey::Private(&private)
    } else {
        hmac = match keys.current() {
            Ok(key) => key,
            Err(e) => return key_unavailable(&e),
        };
        IssuingKey::Hmac(&hmac)
    };
    let issued = token::issue_with(
        key,
        &request.username,
        config.token_ttl,
        &config.claims,
        None,
    );
    match issued {
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

fn verify(config: &Config, body: &[u8], keys: &impl Keys) -> Response {
    let request: VerifyRequest = match parse_json(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let verified = if config.algorithm.is_asymmetric() {
        match keys.public_keys() {
            Ok(set) => token::verify_published(
                config.algorithm,
                &set,
                &request.token,
                &config.claims,
                None,
            ),
            Err(e) => return key_unavailable(&e),
        }
    } else {
        match keys.current() {
            Ok(current) => token::verify_hs256(
                &current,
                || keys.previous(),
                &request.token,
                &config.claims,
                None,
            ),
            Err(e) => return key_unavailable(&e),
        }
    };
    match verified {
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

    use crate::jwk::{PrivateKey, PublicKeySet};
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
        fn private_key(&self, _alg: Algorithm) -> Result<PrivateKey, KeyError> {
            panic!("an HS256 service must not read a private key")
        }
        fn public_keys(&self) -> Result<PublicKeySet, KeyError> {
            panic!("an HS256 service must not read the key set")
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
        fn private_key(&self, _alg: Algorithm) -> Result<PrivateKey, KeyError> {
            panic!("must not read the private key")
        }
        fn public_keys(&self) -> Result<PublicKeySet, KeyError> {
            panic!("must not read the key set")
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
    fn token_settings_name_every_setting_config_reads() {
        let asked = std::cell::RefCell::new(Vec::new());
        Config::from_lookup(|name| {
            asked.borrow_mut().push(name.to_owned());
            None
        })
        .unwrap();
        let mut asked = asked.into_inner();
        asked.retain(|name| name != "KEY_FILE");
        asked.sort();
        let mut settings = TOKEN_SETTINGS.map(str::to_owned).to_vec();
        settings.sort();
        assert_eq!(asked, settings);
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

    // --- EdDSA and ES256 ---

    /// Keys of an asymmetric deployment: the creator's private key (if
    /// this directory has one) and the published set.
    struct PublishedKeys {
        private: Option<(Algorithm, u8)>,
        set: Result<PublicKeySet, KeyError>,
    }

    impl Keys for PublishedKeys {
        fn current(&self) -> Result<SigningKey, KeyError> {
            panic!("an asymmetric service must not read key.txt")
        }
        fn previous(&self) -> Result<Option<SigningKey>, KeyError> {
            panic!("an asymmetric service must not read previous-key.txt")
        }
        fn private_key(&self, alg: Algorithm) -> Result<PrivateKey, KeyError> {
            match self.private {
                Some((key_alg, fill)) => {
                    PrivateKey::from_jwk(alg, &derived(key_alg, fill).to_private_jwk())
                }
                None => Err(KeyError::Missing("k/signing-key.json".into())),
            }
        }
        fn public_keys(&self) -> Result<PublicKeySet, KeyError> {
            self.set.clone()
        }
    }

    fn derived(alg: Algorithm, fill: u8) -> PrivateKey {
        PrivateKey::derive(alg, &[fill; 128]).unwrap()
    }

    fn published(alg: Algorithm, signer: Option<u8>, fills: &[u8]) -> PublishedKeys {
        let keys: Vec<PrivateKey> = fills.iter().map(|f| derived(alg, *f)).collect();
        PublishedKeys {
            private: signer.map(|fill| (alg, fill)),
            set: Ok(PublicKeySet::from_keys(&keys)),
        }
    }

    fn config_for(alg: Algorithm) -> Config {
        Config {
            algorithm: alg,
            ..Config::default()
        }
    }

    fn get(endpoint: Endpoint, config: &Config, path: &str, keys: &impl Keys) -> Response {
        let request = Request {
            method: "GET",
            path,
            body: b"",
        };
        handle(endpoint, config, request, keys)
    }

    const ASYMMETRIC: [Algorithm; 2] = [Algorithm::EdDsa, Algorithm::Es256];

    #[test]
    fn asymmetric_tokens_flow_from_creator_to_verifier() {
        for alg in ASYMMETRIC {
            let config = config_for(alg);
            let creator_keys = published(alg, Some(b'1'), b"12");
            let body = br#"{"username": "testname", "password": "pass"}"#;
            let request = Request {
                method: "POST",
                path: "/create",
                body,
            };
            let created = handle(Endpoint::Creator, &config, request, &creator_keys);
            assert_eq!(created.status, 200, "{created:?}");
            let token = String::from_utf8(created.body).unwrap();
            // The verifier has public keys only.
            let verifier_keys = published(alg, None, b"12");
            let body = serde_json::to_vec(&serde_json::json!({ "token": token })).unwrap();
            let request = Request {
                method: "POST",
                path: "/verifier",
                body: &body,
            };
            let verified = handle(Endpoint::Verifier, &config, request, &verifier_keys);
            assert_eq!(
                (verified.status, &verified.body[..]),
                (200, &b"testname"[..])
            );
            // A verifier of the other algorithm refuses it.
            let other = if alg == Algorithm::EdDsa {
                Algorithm::Es256
            } else {
                Algorithm::EdDsa
            };
            let request = Request {
                method: "POST",
                path: "/verifier",
                body: &body,
            };
            let refused = handle(
                Endpoint::Verifier,
                &config_for(other),
                request,
                &published(other, None, b"12"),
            );
            assert_eq!(refused.status, 401);
            assert!(error_of(&refused).detail.contains("algorithm not accepted"));
        }
    }

    #[test]
    fn both_services_publish_the_key_set_with_cache_control() {
        for alg in ASYMMETRIC {
            let mut config = config_for(alg);
            config.jwks_max_age = Duration::from_secs(42);
            for (endpoint, keys) in [
                (Endpoint::Creator, published(alg, Some(b'1'), b"12")),
                (Endpoint::Verifier, published(alg, None, b"12")),
            ] {
                let response = get(endpoint, &config, JWKS_PATH, &keys);
                assert_eq!(response.status, 200, "{response:?}");
                assert_eq!(response.content_type, "application/jwk-set+json");
                assert_eq!(
                    response.headers,
                    vec![("Cache-Control", "public, max-age=42".to_owned())]
                );
                let set: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
                let keys = set["keys"].as_array().unwrap();
                assert_eq!(keys.len(), 2);
                for key in keys {
                    assert!(
                        key.get("d").is_none(),
                        "a private member was published: {key}"
                    );
                    assert_eq!(key["alg"], alg.name());
                }
                let post = handle(
                    endpoint,
                    &config,
                    Request {
                        method: "POST",
                        path: JWKS_PATH,
                        body: b"",
                    },
                    &published(alg, None, b"1"),
                );
                assert_eq!(post.status, 405);
                assert_eq!(post.headers, vec![("Allow", "GET".to_owned())]);
            }
        }
    }

    #[test]
    fn hs256_deployments_have_no_key_set_route() {
        let response = get(
            Endpoint::Creator,
            &Config::default(),
            JWKS_PATH,
            &Untouchable,
        );
        assert_eq!(response.status, 404);
        assert_eq!(error_of(&response).error, "not_found");
    }

    #[test]
    fn a_set_holding_a_private_key_is_never_published() {
        let alg = Algorithm::EdDsa;
        let leaky = PublishedKeys {
            private: None,
            set: Ok(PublicKeySet::from_json(format!(
                "{{\"keys\":[{}]}}",
                derived(alg, b'1').to_private_jwk()
            ))
            .unwrap()),
        };
        let response = get(Endpoint::Verifier, &config_for(alg), JWKS_PATH, &leaky);
        assert_eq!(response.status, 503);
        assert_eq!(error_of(&response).error, "key_unavailable");
        assert!(!String::from_utf8_lossy(&response.body).contains("\"d\""));
        let ready = get(Endpoint::Verifier, &config_for(alg), "/readyz", &leaky);
        assert_eq!(ready.status, 503);
    }

    #[test]
    fn asymmetric_readiness_checks_what_each_service_needs() {
        let alg = Algorithm::Es256;
        let config = config_for(alg);
        let ready = |endpoint, keys: &PublishedKeys| get(endpoint, &config, "/readyz", keys);
        assert_eq!(
            ready(Endpoint::Creator, &published(alg, Some(b'1'), b"12")).status,
            200
        );
        assert_eq!(
            ready(Endpoint::Verifier, &published(alg, None, b"12")).status,
            200
        );
        // The creator's key must be published, or nobody could verify its tokens.
        let unpublished = ready(Endpoint::Creator, &published(alg, Some(b'3'), b"12"));
        assert_eq!(unpublished.status, 503);
        assert!(
            error_of(&unpublished)
                .detail
                .contains("not in the published key set")
        );
        // The creator needs its private key; the verifier must not have one.
        let missing = ready(Endpoint::Creator, &published(alg, None, b"12"));
        assert_eq!(missing.status, 503);
        assert!(error_of(&missing).detail.contains("signing-key.json"));
        let leaked = ready(Endpoint::Verifier, &published(alg, Some(b'1'), b"12"));
        assert_eq!(leaked.status, 503);
        assert!(error_of(&leaked).detail.contains("KEYS_FOR=verifier"));
        // Keys of another algorithm: a clear refusal, not a crash.
        let other = ready(Endpoint::Verifier, &published(Algorithm::EdDsa, None, b"1"));
        assert_eq!(other.status, 503);
        assert!(
            error_of(&other).detail.contains("TOKEN_ALG is ES256"),
            "{other:?}"
        );
        let no_set = PublishedKeys {
            private: None,
            set: Err(KeyError::Missing("k/jwks.json".into())),
        };
        assert_eq!(ready(Endpoint::Verifier, &no_set).status, 503);
    }

    #[test]
    fn settings_are_read_and_checked() {
        let env = |pairs: Vec<(&'static str, String)>| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            }
        };
        let config = Config::from_lookup(env(vec![
            ("TOKEN_ALG", "EdDSA".into()),
            ("TOKEN_ISSUER", "https://tokens.example".into()),
            ("TOKEN_AUDIENCE", "api".into()),
            ("JWKS_MAX_AGE_SECONDS", "0".into()),
        ]))
        .unwrap();
        assert_eq!(config.algorithm, Algorithm::EdDsa);
        assert_eq!(
            config.claims.issuer.as_deref(),
            Some("https://tokens.example")
        );
        assert_eq!(config.claims.audience.as_deref(), Some("api"));
        assert_eq!(config.jwks_max_age, Duration::ZERO);
        let empty = Config::from_lookup(env(vec![
            ("TOKEN_ISSUER", String::new()),
            ("TOKEN_ALG", String::new()),
        ]))
        .unwrap();
        assert_eq!(empty, Config::default());
        for (name, bad) in [
            ("TOKEN_ALG", "eddsa".to_owned()),
            ("TOKEN_ALG", "none".to_owned()),
            ("TOKEN_AUDIENCE", " api".to_owned()),
            ("TOKEN_ISSUER", "a\nb".to_owned()),
            ("TOKEN_ISSUER", "x".repeat(257)),
            ("JWKS_MAX_AGE_SECONDS", "-1".to_owned()),
            ("JWKS_MAX_AGE_SECONDS", "86401".to_owned()),
        ] {
            let err = Config::from_lookup(env(vec![(name, bad.clone())])).unwrap_err();
            assert!(err.0.contains(name), "{name}={bad:?}: {err}");
        }
    }

    #[test]
    fn a_misconfigured_service_is_alive_but_never_ready() {
        let error = ConfigError(
            "TOKEN_ALG must be HS256, EdDSA or ES256 (case-sensitive), got \"x\"".into(),
        );
        assert_eq!(Response::misconfigured(&error, "/healthz").status, 200);
        for path in ["/readyz", "/create", "/verifier", JWKS_PATH] {
            let response = Response::misconfigured(&error, path);
            assert_eq!(response.status, 503, "{path}");
            let body = error_of(&response);
            assert_eq!(body.error, "misconfigured");
            assert!(body.detail.contains("TOKEN_ALG"), "{}", body.detail);
        }
    }
}
