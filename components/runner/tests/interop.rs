//! Interoperability with an independent JWT implementation (PyJWT): its
//! tokens verify with our verifier, ours verify with it.

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{BENCHMARK_KEY, Runner, cwasm, key_dir, token_body};

/// Runs a PyJWT snippet with the key in `KEY_TEXT`; returns its stdout.
fn pyjwt(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import jwt, sys, os\nkey = os.environ['KEY_TEXT']\n{script}"
        ))
        .args(args)
        .env("KEY_TEXT", BENCHMARK_KEY)
        .output()
        .expect("python3 is needed for the interop tests (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "PyJWT failed (pip install pyjwt; scripts/test.sh does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn our_tokens_verify_with_pyjwt() {
    let key = key_dir();
    let dir = format!("{}::/usr/share/key", key.path().display());
    let creator = Runner::start(&cwasm("creator"), &["--dir", &dir]);
    let reply = creator.post("/create", r#"{"username":"testname","password":"pass"}"#);
    assert_eq!(reply.status, 200);
    let decoded = pyjwt(
        "import json\nc = jwt.decode(sys.argv[1], key, algorithms=['HS256'], options={'require': ['exp', 'iat']})\nprint(json.dumps([c['username'], c['exp'] - c['iat'], jwt.get_unverified_header(sys.argv[1])['typ']]))",
        &[&reply.body],
    );
    assert_eq!(decoded, r#"["testname", 300, "JWT"]"#);
}

#[test]
fn pyjwt_tokens_verify_with_us_and_expired_ones_do_not() {
    let key = key_dir();
    let dir = format!("{}::/usr/share/key", key.path().display());
    let verifier = Runner::start(&cwasm("verifier"), &["--dir", &dir]);
    let encode = "print(jwt.encode({'username': sys.argv[1], 'iat': int(sys.argv[2]), 'exp': int(sys.argv[3])}, key, algorithm=sys.argv[4]))";
    let t = now();

    let fresh = pyjwt(
        encode,
        &[
            "from-python",
            &t.to_string(),
            &(t + 60).to_string(),
            "HS256",
        ],
    );
    let reply = verifier.post("/verifier", token_body(&fresh));
    assert_eq!((reply.status, reply.body.as_str()), (200, "from-python"));

    let expired = pyjwt(
        encode,
        &[
            "old",
            &(t - 120).to_string(),
            &(t - 60).to_string(),
            "HS256",
        ],
    );
    assert_eq!(verifier.post("/verifier", token_body(&expired)).status, 401);

    // Same secret, other HMAC: still refused.
    let hs384 = pyjwt(
        encode,
        &["x", &t.to_string(), &(t + 60).to_string(), "HS384"],
    );
    assert_eq!(verifier.post("/verifier", token_body(&hs384)).status, 401);
}
