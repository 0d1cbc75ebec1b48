//! Clients that misbehave at the HTTP level, as an attacker or an old tool
//! would: a body that stalls half-way, a client that half-closes its socket.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{Runner, cwasm, key_dir};

/// Sends `head` and reads until the server closes, or fails after `limit`.
fn exchange(addr: &str, head: &[u8], half_close: bool, limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(head).unwrap();
    if half_close {
        stream.shutdown(Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // A reset after the answer was read still leaves the answer.
        Err(error) if !answer.is_empty() => eprintln!("after the answer: {error}"),
        Err(error) => panic!("no answer within {limit:?}: {error}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_body_that_stalls_gets_408_and_the_connection_is_closed() {
    let keys = key_dir();
    let dir = format!("{}::/usr/share/key", keys.path().display());
    let runner = Runner::start(
        &cwasm("creator"),
        &["--dir", &dir, "--body-read-timeout", "500ms"],
    );
    // Declares 100 bytes, sends 10, then goes silent without closing.
    let head = b"POST /create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"username\"";
    let started = Instant::now();
    let answer = exchange(&runner.addr, head, false, Duration::from_secs(10));
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );
    // `read_to_end` returned, so the runner closed the connection; and it
    // still serves everyone else.
    let token = runner.post("/create", r#"{"username":"testname","password":"p"}"#);
    assert_eq!(token.status, 200, "{token:?}");
}

#[test]
fn a_body_sent_in_time_is_not_cut_off_by_the_read_timeout() {
    let keys = key_dir();
    let dir = format!("{}::/usr/share/key", keys.path().display());
    let runner = Runner::start(
        &cwasm("creator"),
        &["--dir", &dir, "--body-read-timeout", "2s"],
    );
    let body = br#"{"username":"testname","password":"p"}"#;
    let mut stream = TcpStream::connect(&runner.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /create HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A slow but live client: the body arrives in two parts, 300 ms apart.
    stream.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[test]
fn clients_that_half_close_after_their_request_get_their_response() {
    let keys = key_dir();
    let dir = format!("{}::/usr/share/key", keys.path().display());
    let runner = Runner::start(&cwasm("creator"), &["--dir", &dir]);
    let body = r#"{"username":"testname","password":"p"}"#;
    let head = format!(
        "POST /create HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Many at once, as in the report that found it: before the fix about
    // half of them raced hyper's EOF handling and got nothing.
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..40)
            .map(|_| {
                scope.spawn(|| {
                    exchange(&runner.addr, head.as_bytes(), true, Duration::from_secs(10))
                })
            })
            .collect();
        for client in clients {
            let answer = client.join().unwrap();
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
            let token = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
            assert_eq!(token.split('.').count(), 3, "{answer:?}");
        }
    });
}

/// wasi:http gives the guest the request's authority, so the runner settles
/// it first: an HTTP/1.1 request without `Host` (or with one that is not
/// text) is the client's error, 400; HTTP/1.0 may omit it and is served.
#[test]
fn requests_without_a_usable_host_are_400_or_served_for_http_1_0() {
    let keys = key_dir();
    let dir = format!("{}::/usr/share/key", keys.path().display());
    let runner = Runner::start(&cwasm("creator"), &["--dir", &dir]);
    let body = r#"{"username":"testname","password":"p"}"#;
    let send = |version: &str, host: &[u8]| {
        let mut head = format!("POST /create {version}\r\nConnection: close\r\n").into_bytes();
        head.extend_from_slice(host);
        head.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        exchange(&runner.addr, &head, false, Duration::from_secs(10))
    };

    for (version, host) in [("HTTP/1.1", &b""[..]), ("HTTP/1.1", b"Host: caf\xe9\r\n")] {
        let answer = send(version, host);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
        assert!(answer.contains(r#""error":"bad_request""#), "{answer:?}");
        assert!(answer.contains("Host header"), "{answer:?}");
    }
    let answer = send("HTTP/1.0", b"");
    assert!(answer.starts_with("HTTP/1.0 200 "), "{answer:?}");
    let token = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(token.split('.').count(), 3, "{answer:?}");
}
