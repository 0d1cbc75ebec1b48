//! The wire contract, end to end: the real creator and verifier components
//! served by the real runner on loopback.

mod common;

use std::time::Duration;

use common::{BENCHMARK_KEY, Runner, create, cwasm, key_dir, services, token_body, wasm};
use jwt_simple::prelude::*;
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Encoder};

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

fn assert_401(verifier: &Runner, token: &str, detail_contains: &str) {
    let reply = verifier.post("/verifier", token_body(token));
    assert_eq!(reply.status, 401, "{token}: {reply:?}");
    let (error, detail) = reply.error();
    assert_eq!(error, "invalid_token");
    assert!(detail.contains(detail_contains), "{detail}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
}

#[test]
fn reference_flow_create_then_verify() {
    let key = key_dir();
    let (creator, verifier) = services(&key, &[]);
    let token = create(&creator, "testname");
    let reply = verifier.post("/verifier", token_body(&token));
    assert_eq!((reply.status, reply.body.as_str()), (200, "testname"));
}

#[test]
fn tokens_carry_the_reference_claims_and_ttl() {
    let key = key_dir();
    let (creator, _verifier) = services(&key, &["--env", "TOKEN_TTL_SECONDS=60"]);
    let token = create(&creator, "alice");
    let hs256 = HS256Key::from_bytes(BENCHMARK_KEY.as_bytes());
    let claims = hs256
        .verify_token::<serde_json::Map<String, serde_json::Value>>(&token, None)
        .unwrap();
    let (iat, exp) = (claims.issued_at.unwrap(), claims.expires_at.unwrap());
    assert_eq!((exp - iat).as_secs(), 60);
    assert_eq!(claims.custom["username"], "alice");
    assert!(claims.invalid_before.is_none(), "the reference sets no nbf");
}

#[test]
fn every_bad_token_is_401() {
    let key = key_dir();
    let (creator, verifier) = services(&key, &[]);
    let good = create(&creator, "eve");
    let [header, payload, signature]: [&str; 3] =
        good.split('.').collect::<Vec<_>>().try_into().unwrap();

    // Tampered payload, tampered signature.
    let forged = b64(br#"{"username":"admin","iat":1,"exp":99999999999}"#);
    assert_401(
        &verifier,
        &format!("{header}.{forged}.{signature}"),
        "signature",
    );
    let mut bad_signature = signature.to_owned();
    bad_signature.replace_range(0..1, if signature.starts_with('A') { "B" } else { "A" });
    assert_401(
        &verifier,
        &format!("{header}.{payload}.{bad_signature}"),
        "",
    );

    // Expired: correctly signed, but its exp is in the past.
    let expired = token_contract::token::issue_at(
        &token_contract::SigningKey::from_file_contents(BENCHMARK_KEY.as_bytes()).unwrap(),
        "eve",
        Duration::from_secs(300),
        jwt_simple::prelude::Duration::from_secs(1_600_000_000),
    )
    .unwrap();
    assert_401(&verifier, &expired, "expired");

    // Wrong algorithms: none, HS512 with the same secret, RS256.
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_401(&verifier, &none, "");
    let hs512 = HS512Key::from_bytes(BENCHMARK_KEY.as_bytes())
        .authenticate(Claims::create(jwt_simple::prelude::Duration::from_secs(60)))
        .unwrap();
    assert_401(&verifier, &hs512, "only HS256");
    let rs256 = format!(
        "{}.{payload}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&[7u8; 256])
    );
    assert_401(&verifier, &rs256, "only HS256");

    // Garbage.
    for garbage in ["", "garbage", "a.b.c", "....", &"x".repeat(20_000)] {
        assert_401(&verifier, garbage, "");
    }
}

#[test]
fn expired_by_ttl_is_401() {
    let key = key_dir();
    let (creator, verifier) = services(&key, &["--env", "TOKEN_TTL_SECONDS=1"]);
    let token = create(&creator, "shortlived");
    std::thread::sleep(Duration::from_millis(2100));
    assert_401(&verifier, &token, "expired");
}

#[test]
fn malformed_requests_are_4xx_with_json_errors() {
    let key = key_dir();
    let (creator, verifier) = services(&key, &[]);
    for (runner, path, body, status, error) in [
        (&creator, "/create", "{not json", 400, "malformed_json"),
        (&creator, "/create", "", 400, "malformed_json"),
        (
            &creator,
            "/create",
            r#"{"username":"a"}"#,
            400,
            "invalid_request",
        ),
        (
            &creator,
            "/create",
            r#"{"password":"a"}"#,
            400,
            "invalid_request",
        ),
        (&creator, "/create", "[1,2]", 400, "invalid_request"),
        (&verifier, "/verifier", "{}", 400, "invalid_request"),
        (
            &verifier,
            "/verifier",
            r#"{"token":5}"#,
            400,
            "invalid_request",
        ),
        (&verifier, "/verifier", "\u{0}\u{1}", 400, "malformed_json"),
        (&creator, "/verifier", "{}", 404, "not_found"),
        (&verifier, "/create", "{}", 404, "not_found"),
        (&creator, "/", "", 404, "not_found"),
    ] {
        let reply = runner.post(path, body);
        assert_eq!(reply.status, status, "{path} {body:?}: {reply:?}");
        assert_eq!(reply.error().0, error, "{path} {body:?}");
    }
}

#[test]
fn oversized_bodies_are_413_from_the_component_and_from_the_runner() {
    let key = key_dir();
    let (creator, verifier) = services(&key, &[]);
    // Over the contract's 64 KiB but under the runner's 1 MiB: the component says 413.
    let reply = creator.post("/create", vec![b' '; 64 * 1024 + 1]);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.error().0, "payload_too_large");
    // Over the runner's limit: refused before the guest runs.
    let reply = verifier.post("/verifier", vec![b'a'; 2 << 20]);
    assert_eq!(reply.status, 413);
    assert!(reply.error().1.contains("runner's limit"), "{reply:?}");
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let key = key_dir();
    let (creator, verifier) = services(&key, &[]);
    for (runner, method, path, allow) in [
        (&creator, "GET", "/create", "POST"),
        (&creator, "PUT", "/create", "POST"),
        (&verifier, "DELETE", "/verifier", "POST"),
        (&verifier, "POST", "/healthz", "GET"),
        (&creator, "POST", "/readyz", "GET"),
    ] {
        let reply = common::request(method, &runner.url(path), Some(b"{}"));
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some(allow));
        assert_eq!(reply.error().0, "method_not_allowed");
    }
}

#[test]
fn readiness_follows_the_key_file() {
    let empty = tempfile::tempdir().unwrap();
    let dir = format!("{}::/usr/share/key", empty.path().display());
    let creator = Runner::start(&cwasm("creator"), &["--dir", &dir]);
    assert_eq!(creator.get("/healthz").status, 200);
    let reply = creator.get("/readyz");
    assert_eq!(reply.status, 503);
    assert!(reply.error().1.contains("does not exist"));
    // Without a key, issuing is a server-side 503, never a client error.
    let reply = creator.post("/create", r#"{"username":"a","password":"b"}"#);
    assert_eq!(
        (reply.status, reply.error().0.as_str()),
        (503, "key_unavailable")
    );

    std::fs::write(empty.path().join("key.txt"), "not a key").unwrap();
    let reply = creator.get("/readyz");
    assert_eq!(reply.status, 503);
    assert!(reply.error().1.contains("malformed"));

    std::fs::write(empty.path().join("key.txt"), BENCHMARK_KEY).unwrap();
    assert_eq!(creator.get("/readyz").status, 200);
    assert_eq!(
        creator
            .post("/create", r#"{"username":"a","password":"b"}"#)
            .status,
        200
    );
}

#[test]
fn a_jit_compiled_wasm_serves_like_the_precompiled_cwasm() {
    let key = key_dir();
    let dir = format!("{}::/usr/share/key", key.path().display());
    let creator = Runner::start(&wasm("creator"), &["--dir", &dir]);
    let verifier = Runner::start(&cwasm("verifier"), &["--dir", &dir, "--no-pooling"]);
    let token = create(&creator, "jit");
    let reply = verifier.post("/verifier", token_body(&token));
    assert_eq!((reply.status, reply.body.as_str()), (200, "jit"));
}
