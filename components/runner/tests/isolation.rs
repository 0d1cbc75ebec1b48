//! A guest that traps, loops or exhausts memory fails only its own request;
//! the runner keeps serving.

mod common;

use common::{Runner, cwasm};

fn guest(args: &[&str]) -> Runner {
    Runner::start(&cwasm("misbehaving_guest"), args)
}

#[test]
fn a_trap_is_a_500_and_the_next_request_is_served() {
    let runner = guest(&[]);
    for _ in 0..3 {
        let reply = runner.get("/trap");
        assert_eq!(reply.status, 500, "{reply:?}");
        assert_eq!(reply.error().0, "component_failed");
        assert_eq!(runner.get("/ok").status, 200);
    }
    let failures = runner
        .log()
        .into_iter()
        .filter(|e| e["message"] == "the component failed a request")
        .count();
    assert_eq!(failures, 3, "each trap is logged once");
}

#[test]
fn a_runaway_guest_is_stopped_at_the_deadline_with_503() {
    let runner = guest(&["--request-timeout", "300ms"]);
    let started = std::time::Instant::now();
    let reply = runner.get("/loop");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.error().0, "timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(runner.get("/ok").status, 200);
}

#[test]
fn a_memory_hog_hits_the_cap_and_only_its_request_fails() {
    for pooling in [&[][..], &["--no-pooling"][..]] {
        let mut args = vec!["--max-memory-bytes", "16777216"];
        args.extend_from_slice(pooling);
        let runner = guest(&args);
        let reply = runner.get("/oom");
        assert_eq!(reply.status, 500, "{args:?}: {reply:?}");
        assert_eq!(runner.get("/ok").status, 200);
    }
}

#[test]
fn failures_do_not_disturb_concurrent_requests() {
    let runner = guest(&["--request-timeout", "2s"]);
    std::thread::scope(|scope| {
        let bad: Vec<_> = ["/trap", "/loop", "/oom", "/trap"]
            .into_iter()
            .map(|path| scope.spawn(|| runner.get(path).status))
            .collect();
        let good: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| runner.get("/ok").status))
            .collect();
        for handle in good {
            assert_eq!(handle.join().unwrap(), 200);
        }
        let mut statuses: Vec<u16> = bad.into_iter().map(|h| h.join().unwrap()).collect();
        statuses.sort();
        assert_eq!(statuses, [500, 500, 500, 503]);
    });
}

#[test]
fn more_requests_than_instances_wait_instead_of_failing() {
    let runner = guest(&["--max-concurrent-requests", "2"]);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| runner.get("/slow?ms=100").status))
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), 200);
        }
    });
}
