//! The access log: one JSON line per answered request, on stdout.
//!
//! A line has the keys, key order and timestamp format of the runner's other
//! log lines (`tracing-subscriber`'s JSON formatter, see `init_logging`), so
//! one parser reads both. It is written here with serde rather than as a
//! `tracing` event because it is on every request's path: through `tracing`,
//! a line cost ~11,700 instructions (the JSON formatter collects an event's
//! fields into a map of `serde_json::Value`s and formats through
//! `core::fmt`), a tenth of what the runner spends on a whole request
//! (docs/benchmarks.md, round 8).

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::otel::context::hex;

#[derive(Serialize)]
struct Line<'a> {
    #[serde(serialize_with = "rfc3339_micros")]
    timestamp: SystemTime,
    level: &'static str,
    method: &'a str,
    path: &'a str,
    status: u16,
    micros: u64,
    target: &'static str,
    /// The request's trace and span, when it is traced (OpenTelemetry).
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<String>,
}

fn rfc3339_micros<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_micros(*time))
}

/// A traced request's trace ID and span ID.
pub type TraceIds = ([u8; 16], [u8; 8]);

/// The line for one request, newline included.
fn line(
    method: &str,
    path: &str,
    status: u16,
    took: Duration,
    now: SystemTime,
    trace: Option<TraceIds>,
) -> Vec<u8> {
    let line = Line {
        timestamp: now,
        level: "INFO",
        method,
        path,
        status,
        micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        target: "access",
        trace_id: trace.map(|(trace_id, _)| hex(&trace_id)),
        span_id: trace.map(|(_, span_id)| hex(&span_id)),
    };
    let mut text = Vec::with_capacity(160);
    serde_json::to_writer(&mut text, &line).expect("strings and numbers serialize into memory");
    text.push(b'\n');
    text
}

/// Writes the access line of one request: `path` without its query string,
/// and how long the request took until its response was ready.
pub fn write(method: &str, path: &str, status: u16, took: Duration, trace: Option<TraceIds>) {
    let text = line(method, path, status, took, SystemTime::now(), trace);
    // One `write` per line, under stdout's lock, so lines from two worker
    // threads never interleave (`tracing` writes the other lines the same
    // way). A closed stdout is no reason to fail the request.
    let _ = std::io::stdout().lock().write_all(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_shaped_like_the_other_log_lines() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_898_412_055_503);
        let text = line(
            "POST",
            "/create",
            200,
            Duration::from_micros(7304),
            now,
            None,
        );
        assert_eq!(
            String::from_utf8(text).unwrap(),
            concat!(
                r#"{"timestamp":"2026-11-28T20:40:12.055503Z","level":"INFO","#,
                r#""method":"POST","path":"/create","status":200,"micros":7304,"#,
                r#""target":"access"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_path_is_escaped_as_json() {
        let text = line(
            "GET",
            "/a\"b\\c",
            404,
            Duration::ZERO,
            SystemTime::now(),
            None,
        );
        let parsed: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(parsed["path"], "/a\"b\\c");
        assert_eq!(parsed["micros"], 0);
    }

    #[test]
    fn a_traced_request_names_its_trace_and_span() {
        let ids = ([0xab; 16], [0x01; 8]);
        let text = line(
            "GET",
            "/",
            200,
            Duration::ZERO,
            SystemTime::now(),
            Some(ids),
        );
        let parsed: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(parsed["trace_id"], "ab".repeat(16));
        assert_eq!(parsed["span_id"], "01".repeat(8));
    }
}
