//! The creator's and the verifier's request handling, natively: arbitrary
//! method, path, keys and raw body bytes in, the contract's response out.
//!
//! Properties: no panic; a 5xx only when a key the host holds is broken;
//! every error is the documented JSON shape and code; a 200 from the creator
//! is a token for the username asked for that the key signed (checked by a
//! separate HMAC and by `jsonwebtoken`) and our verifier accepts; a 200 from
//! the verifier only for a token an accepted key signed, naming the username
//! it answers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use token_contract::{Config, Endpoint, KeyError, Request, SigningKey, handle};
use token_service_fuzz::keys::{FixedKeys, KeyBytes, SEED_CURRENT_KEY, SEED_PREVIOUS_KEY};
use token_service_fuzz::response::{check_shape, text};
use token_service_fuzz::token::{check_accepted, check_issued};

/// One fuzz input: two bytes that choose the request line and the keys,
/// then, if they say so, 64 bytes of an arbitrary current key, then the
/// request body as it is. Seeds (`fuzz/seeds/service_request`, written by
/// `fuzz/seeds.py`) are bodies with those bytes in front.
///
/// ```text
/// byte 0: bit 0     creator (1) or verifier (0)
///         bits 1-2  method: POST, GET, PUT, post
///         bits 3-4  path: the service's route, /healthz, /readyz, the other service's route
///         bits 5-6  current key: the seed key, arbitrary (64 bytes follow), missing, malformed
/// byte 1: bits 0-1  previous key: none, the seed previous key, arbitrary (the current one
///                   reversed), malformed
///         bits 2-7  token lifetime: 1 + n * 1371 seconds (up to the maximum, 86400)
/// ```
struct Input<'a> {
    endpoint: Endpoint,
    method: &'static str,
    path: &'static str,
    keys: FixedKeys,
    /// The key files' contents, for the independent checks.
    current_bytes: Vec<u8>,
    previous_bytes: Vec<u8>,
    ttl_secs: u64,
    body: &'a [u8],
}

fn parse(data: &[u8]) -> Option<Input<'_>> {
    let (&[line, keys], mut body) = data.split_first_chunk::<2>()?;
    let endpoint = if line & 1 == 1 {
        Endpoint::Creator
    } else {
        Endpoint::Verifier
    };
    let other = if endpoint == Endpoint::Creator {
        Endpoint::Verifier
    } else {
        Endpoint::Creator
    };
    let method = ["POST", "GET", "PUT", "post"][usize::from(line >> 1 & 3)];
    let path = [endpoint.path(), "/healthz", "/readyz", other.path()][usize::from(line >> 3 & 3)];
    let malformed = || Err(KeyError::Malformed("key.txt: not hex".into()));
    let (current, current_bytes) = match line >> 5 & 3 {
        0 => (
            SigningKey::from_file_contents(SEED_CURRENT_KEY),
            SEED_CURRENT_KEY.to_vec(),
        ),
        1 => {
            let (bytes, rest) = body.split_first_chunk::<64>()?;
            body = rest;
            let key = KeyBytes(*bytes);
            (Ok(key.signing_key()), key.file_contents())
        }
        2 => (
            Err(KeyError::Missing("/usr/share/key/key.txt".into())),
            Vec::new(),
        ),
        _ => (malformed(), Vec::new()),
    };
    let (previous, previous_bytes) = match keys & 3 {
        0 => (Ok(None), Vec::new()),
        1 => (
            SigningKey::from_file_contents(SEED_PREVIOUS_KEY).map(Some),
            SEED_PREVIOUS_KEY.to_vec(),
        ),
        2 => {
            let mut bytes = current_bytes.clone();
            bytes.reverse();
            match SigningKey::from_file_contents(&bytes) {
                Ok(key) => (Ok(Some(key)), bytes),
                Err(_) => (Ok(None), Vec::new()), // no current key to reverse
            }
        }
        _ => (malformed().map(Some), Vec::new()),
    };
    Some(Input {
        endpoint,
        method,
        path,
        keys: FixedKeys { current, previous },
        current_bytes,
        previous_bytes,
        ttl_secs: (1 + u64::from(keys >> 2) * 1371).min(86_400),
        body,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = parse(data) else { return };
    let Input {
        endpoint,
        method,
        path,
        keys,
        current_bytes,
        previous_bytes,
        ttl_secs,
        body,
    } = input;
    let config = Config {
        token_ttl: std::time::Duration::from_secs(ttl_secs),
        ..Config::default()
    };
    let request = Request { method, path, body };
    let response = handle(endpoint, &config, request, &keys);

    if check_shape(endpoint, &response, !keys.all_usable()).is_some() || response.status != 200 {
        return;
    }
    let answer = text(&response);
    match path {
        "/healthz" => assert_eq!(answer, "ok"),
        "/readyz" => {
            assert_eq!(answer, "ready");
            assert!(keys.all_usable() || endpoint == Endpoint::Creator && keys.current.is_ok());
        }
        _ if endpoint == Endpoint::Creator => {
            // The username asked for, read with types of our own (not the
            // contract's). Not as a `Value`: JSON allows lone surrogates in
            // strings, which serde_json refuses in a `Value` but skips in
            // fields a struct ignores, as the services do.
            #[derive(serde::Deserialize)]
            struct Create {
                username: String,
                #[allow(dead_code)]
                password: String,
            }
            let create: Create = serde_json::from_slice(body).expect("a 200 for a create body");
            let username = create.username.as_str();
            check_issued(answer, username, &current_bytes, config.token_ttl.as_secs());
            // And the verifier accepts what the creator signed. Issue times
            // are whole seconds, so a token lives between ttl - 1 and ttl
            // seconds: at 1 or 2 s it may have expired already.
            if ttl_secs < 3 {
                return;
            }
            let verify_body = serde_json::json!({ "token": answer }).to_string();
            let request = Request {
                method: "POST",
                path: "/verifier",
                body: verify_body.as_bytes(),
            };
            let verified = handle(Endpoint::Verifier, &config, request, &keys);
            assert_eq!((verified.status, text(&verified)), (200, username));
        }
        _ => {
            #[derive(serde::Deserialize)]
            struct Verify {
                token: String,
            }
            let verify: Verify = serde_json::from_slice(body).expect("a 200 for a verify body");
            let token = verify.token.as_str();
            let mut accepted: Vec<&[u8]> = vec![&current_bytes];
            if !previous_bytes.is_empty() {
                accepted.push(&previous_bytes);
            }
            check_accepted(token, answer, &accepted);
        }
    }
});
