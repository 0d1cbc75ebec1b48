//! The runner's reading of W3C Trace Context headers (`traceparent`,
//! `tracestate`), which any client reaches when tracing is on: arbitrary
//! bytes as the header values.
//!
//! Properties: no panic; a `traceparent` is accepted only if it has the
//! specification's shape (lowercase hex fields of the right lengths,
//! non-zero IDs, not version `ff`), and then what was read prints back as
//! the header's first 55 bytes; a kept `tracestate` is printable ASCII of
//! at most 512 bytes and holds the received values unchanged.

#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use runner::otel::context::{MAX_TRACE_STATE, RemoteParent, hex, parse_traceparent};

fuzz_target!(|input: (&[u8], &[u8])| {
    let (traceparent, tracestate) = input;
    let parsed = parse_traceparent(traceparent);
    if let Some((trace_id, span_id, flags)) = parsed {
        let version = &traceparent[..2];
        assert!(
            version
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        );
        assert_ne!(version, b"ff");
        let printed = format!(
            "{}-{}-{}-{}",
            std::str::from_utf8(version).expect("hex digits"),
            hex(&trace_id),
            hex(&span_id),
            hex(&[flags])
        );
        assert_eq!(printed.as_bytes(), &traceparent[..55]);
        assert!(trace_id != [0; 16] && span_id != [0; 8]);
        assert!(traceparent.len() == 55 || (version != b"00" && traceparent[55] == b'-'));
    }

    let (Ok(parent), Ok(state)) = (
        HeaderValue::from_bytes(traceparent),
        HeaderValue::from_bytes(tracestate),
    ) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", parent);
    headers.insert("tracestate", state);
    let remote = RemoteParent::from_headers(&headers);
    assert_eq!(remote.is_some(), parsed.is_some());
    if let (Some(remote), Some((trace_id, span_id, flags))) = (remote, parsed) {
        assert_eq!((remote.trace_id, remote.span_id), (trace_id, span_id));
        assert_eq!(remote.sampled, flags & 1 == 1);
        if let Some(kept) = remote.trace_state {
            assert_eq!(kept.as_bytes(), tracestate);
            assert!(!kept.is_empty() && kept.len() <= MAX_TRACE_STATE);
            assert!(kept.bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
    }
});
