//! W3C Trace Context (https://www.w3.org/TR/trace-context/): reading an
//! incoming `traceparent` / `tracestate`, and the sampler chosen (the SDK samples).

use http::HeaderMap;

/// The caller's span, from a valid `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The `sampled` flag (bit 0 of trace-flags).
    pub sampled: bool,
    /// `tracestate`, as received (several header lines joined with `,`),
    /// when it is printable ASCII of at most [`MAX_TRACE_STATE`] bytes.
    pub trace_state: Option<String>,
}

/// W3C: a vendor may drop a `tracestate` longer than 512 bytes.
pub const MAX_TRACE_STATE: usize = 512;

impl RemoteParent {
    /// The caller's span, if the request carries exactly one valid
    /// `traceparent`. An invalid or repeated one is ignored: the request
    /// starts a new trace, as the W3C specification asks.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all("traceparent").iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let (trace_id, span_id, flags) = parse_traceparent(value.as_bytes())?;
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            trace_state: trace_state(headers),
        })
    }
}

/// `version "-" trace-id "-" parent-id "-" trace-flags`, all lowercase hex.
/// Version `00` is exactly 55 bytes; a later version may append fields after
/// a `-`, which are ignored; version `ff` is invalid, and so are all-zero IDs.
pub fn parse_traceparent(value: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if value.len() < 55 {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    if version == 0xff || (version == 0 && value.len() != 55) {
        return None;
    }
    if value.len() > 55 && value[55] != b'-' {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, byte) in trace_id.iter_mut().enumerate() {
        *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
    }
    let mut span_id = [0u8; 8];
    for (i, byte) in span_id.iter_mut().enumerate() {
        *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags))
}

/// Two lowercase hex digits (W3C forbids uppercase).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

fn trace_state(headers: &HeaderMap) -> Option<String> {
    let mut joined = String::new();
    for value in headers.get_all("tracestate") {
        let text = value.to_str().ok()?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    let printable = joined.bytes().all(|b| (0x20..0x7f).contains(&b));
    (!joined.is_empty() && joined.len() <= MAX_TRACE_STATE && printable).then_some(joined)
}

/// Which requests are traced: `OTEL_TRACES_SAMPLER`'s values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// For a request without a (valid) `traceparent`: the share of traces
    /// recorded, 0.0 to 1.0 (`always_on` is 1, `always_off` 0).
    pub root_ratio: f64,
    /// Follow the caller's sampled flag when there is one (`parentbased_*`).
    pub parent_based: bool,
}

impl Sampler {
    /// The SDK's default: `parentbased_always_on`.
    pub const DEFAULT: Self = Self {
        root_ratio: 1.0,
        parent_based: true,
    };

    /// The OpenTelemetry SDK's sampler for this choice (its
    /// `TraceIdRatioBased` is deterministic in the trace ID).
    pub fn to_sdk(self) -> opentelemetry_sdk::trace::Sampler {
        use opentelemetry_sdk::trace::Sampler as S;
        let root = if self.root_ratio >= 1.0 {
            S::AlwaysOn
        } else if self.root_ratio <= 0.0 {
            S::AlwaysOff
        } else {
            S::TraceIdRatioBased(self.root_ratio)
        };
        if self.parent_based {
            S::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

/// Lowercase hex, as IDs appear in `traceparent` and in logs.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_specifications_example_parses() {
        let parent = RemoteParent::from_headers(&headers(&[
            ("traceparent", EXAMPLE),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]))
        .unwrap();
        assert_eq!(hex(&parent.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&parent.span_id), "00f067aa0ba902b7");
        assert!(parent.sampled);
        assert_eq!(
            parent.trace_state.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad:?}");
        }
        let twice = headers(&[("traceparent", EXAMPLE), ("traceparent", EXAMPLE)]);
        assert_eq!(RemoteParent::from_headers(&twice), None);
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-ever";
        let (_, _, flags) = parse_traceparent(later.as_bytes()).unwrap();
        assert_eq!(flags, 0);
    }

    #[test]
    fn an_unusable_tracestate_is_dropped_but_the_parent_kept() {
        let long = "a=".to_owned() + &"b".repeat(MAX_TRACE_STATE);
        let parent = RemoteParent::from_headers(&headers(&[
            ("traceparent", EXAMPLE),
            ("tracestate", &long),
        ]))
        .unwrap();
        assert_eq!(parent.trace_state, None);
    }
}
