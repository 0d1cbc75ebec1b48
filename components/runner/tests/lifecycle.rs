//! Process behaviour: start-up errors, the access log, the probe
//! subcommand, and graceful shutdown on SIGTERM/SIGINT.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{RUNNER, Runner, cwasm, key_dir, try_request};

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(RUNNER).args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn start_up_errors_are_one_clear_line_and_exit_1() {
    let not_a_component = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_component.path(), b"\0asm garbage").unwrap();
    let not_a_component = not_a_component.path().to_str().unwrap();
    let not_wasm = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_wasm.path(), b"hello\n").unwrap();
    let not_wasm = not_wasm.path().to_str().unwrap();
    for (args, needle) in [
        (vec!["/nonexistent.wasm"], "cannot read /nonexistent.wasm"),
        (vec!["/"], "cannot read /"),
        (vec![not_a_component], "not a valid Wasm component"),
        (
            vec![not_wasm],
            "neither a Wasm component nor a component compiled for this runner",
        ),
        (
            vec!["--dir", "/nonexistent::/x", not_a_component],
            "not a directory",
        ),
        (vec!["--addr", "nonsense", not_a_component], "invalid value"),
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(
            code,
            Some(if needle == "invalid value" { 2 } else { 1 }),
            "{args:?}"
        );
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        if needle != "invalid value" {
            assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        }
    }
}

/// A `.cwasm` is mapped after reading only its magic number, so what a
/// `.cwasm` for another machine gets wrong must still come from wasmtime's
/// checks, as one line naming the file and the reason.
#[test]
fn a_cwasm_for_another_architecture_is_refused_with_the_reason() {
    let other = if cfg!(target_arch = "x86_64") {
        "aarch64-unknown-linux-musl"
    } else {
        "x86_64-unknown-linux-musl"
    };
    let dir = tempfile::tempdir().unwrap();
    let cwasm = dir.path().join("creator.cwasm");
    let cwasm = cwasm.to_str().unwrap();
    let creator = common::wasm("creator");
    let compiled = Command::new(RUNNER)
        .args(["compile", "--target", other, "-o", cwasm])
        .arg(&creator)
        .status()
        .unwrap();
    assert!(compiled.success());
    let (code, stderr) = run(&[cwasm]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("neither a Wasm component nor a component compiled for this runner"),
        "{stderr}"
    );
    assert!(stderr.contains("compiled for architecture"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// The smallest component that imports the instance `name` with one
/// resource type, `resource`, in it: enough for the runner to check the
/// import against what it links.
fn component_importing(name: &str, resource: &str) -> Vec<u8> {
    let length = |text: &str| u8::try_from(text.len()).unwrap();
    // Type 0: an instance type exporting one resource type.
    let mut types = vec![0x01, 0x42, 0x01, 0x04, 0x00, length(resource)];
    types.extend_from_slice(resource.as_bytes());
    types.extend_from_slice(&[0x03, 0x01]); // a type, bounded as `sub resource`
    // One import: `name`, an instance of type 0.
    let mut imports = vec![0x01, 0x00, length(name)];
    imports.extend_from_slice(name.as_bytes());
    imports.extend_from_slice(&[0x05, 0x00]);

    let mut component = b"\0asm\x0d\x00\x01\x00".to_vec(); // a component, binary version 0x0d
    for (id, section) in [(0x07, types), (0x0a, imports)] {
        component.push(id);
        component.push(u8::try_from(section.len()).unwrap());
        component.extend_from_slice(&section);
    }
    component
}

#[test]
fn a_component_that_imports_sockets_is_refused_at_start_up() {
    let import = "wasi:sockets/network@0.2.0";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), component_importing(import, "network")).unwrap();
    let (code, stderr) = run(&[file.path().to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("imports something this runner does not provide")
            && stderr.contains(import),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn each_request_writes_one_json_access_line() {
    let runner = Runner::start(&cwasm("misbehaving_guest"), &[]);
    assert_eq!(runner.get("/ok?x=1").status, 200);
    assert_eq!(runner.get("/nope").status, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    let access = loop {
        let access: Vec<_> = runner
            .log()
            .into_iter()
            .filter(|e| e["target"] == "access")
            .collect();
        if access.len() >= 2 || Instant::now() > deadline {
            break access;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(access.len(), 2, "{access:?}");
    assert_eq!(access[0]["method"], "GET");
    assert_eq!(access[0]["path"], "/ok", "the query string is not logged");
    assert_eq!(access[0]["status"], 200);
    assert!(access[0]["micros"].as_u64().unwrap() > 0);
    assert_eq!(access[1]["status"], 404);
}

#[test]
fn probe_exits_0_only_for_a_2xx_answer() {
    let empty = tempfile::tempdir().unwrap();
    let dir = format!("{}::/usr/share/key", empty.path().display());
    let runner = Runner::start(&cwasm("creator"), &["--dir", &dir]);
    let (code, _) = run(&["probe", &runner.url("/healthz")]);
    assert_eq!(code, Some(0));
    let (code, stderr) = run(&["probe", &runner.url("/readyz")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("503"), "{stderr}");
    drop(runner);
    let (code, stderr) = run(&["probe", "--timeout", "1s", "http://127.0.0.1:9/healthz"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot connect"), "{stderr}");
    let (code, stderr) = run(&["probe", "https://127.0.0.1/"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("only http://"), "{stderr}");
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_0() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut runner = Runner::start(&cwasm("misbehaving_guest"), &[]);
        let url = runner.url("/slow?ms=1000");
        let in_flight: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || try_request("GET", &url, None))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        runner.signal(signal);
        for request in in_flight {
            let reply = request.join().unwrap().unwrap_or_else(|e| {
                panic!("signal {signal}: request failed: {e}; {:?}", runner.log())
            });
            assert_eq!((reply.status, reply.body.as_str()), (200, "slept 1000 ms"));
        }
        let status = runner
            .wait_exit(Duration::from_secs(5))
            .expect("runner exits");
        assert_eq!(status.code(), Some(0), "signal {signal}");
        // The listener is closed: new connections are refused.
        assert!(try_request("GET", &runner.url("/ok"), None).is_err());
    }
}

#[test]
fn drain_is_bounded_by_the_shutdown_timeout() {
    let mut runner = Runner::start(
        &cwasm("misbehaving_guest"),
        &["--shutdown-timeout", "500ms", "--request-timeout", "30s"],
    );
    let url = runner.url("/loop");
    let _stuck = std::thread::spawn(move || try_request("GET", &url, None));
    std::thread::sleep(Duration::from_millis(200));
    assert!(sigterm_exit_time(&mut runner) < Duration::from_secs(3));
}

/// Sends SIGTERM, checks the runner exits 0, and returns how long it took.
fn sigterm_exit_time(runner: &mut Runner) -> Duration {
    let signalled = Instant::now();
    runner.signal(libc::SIGTERM);
    let status = runner
        .wait_exit(Duration::from_secs(5))
        .expect("runner exits");
    assert_eq!(status.code(), Some(0));
    signalled.elapsed()
}

#[test]
fn an_idle_runner_exits_promptly_on_sigterm() {
    let key = key_dir();
    let dir = format!("{}::/usr/share/key", key.path().display());
    let mut runner = Runner::start(&cwasm("verifier"), &["--dir", &dir]);
    assert!(sigterm_exit_time(&mut runner) < Duration::from_secs(1));
}
