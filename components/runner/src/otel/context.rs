//! W3C Trace Context (https://www.w3.org/TR/trace-context/): reading an
//! incoming `traceparent` / `tracestate`, and the sampling decision.

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

    /// Whether a request in trace `trace_id`, with this parent, is recorded.
    pub fn sample(&self, trace_id: &[u8; 16], parent: Option<&RemoteParent>) -> bool {
        match parent {
            Some(parent) if self.parent_based => parent.sampled,
            _ => ratio_sample(self.root_ratio, trace_id),
        }
    }
}

/// `TraceIdRatioBased`: deterministic in the trace ID, so that every
/// service with the same ratio keeps the same traces. Compares the last 8
/// bytes of the ID (the random part in W3C Trace Context level 2) with the
/// ratio scaled to 2^63, as the OpenTelemetry SDKs for Go and Rust do.
fn ratio_sample(ratio: f64, trace_id: &[u8; 16]) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    let last = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
    (last >> 1) < bound
}

/// A new, non-zero random ID (trace or span).
pub fn random_id<const N: usize>() -> [u8; N] {
    loop {
        let mut id = [0u8; N];
        id.fill_with(|| fastrand::u8(..));
        if id != [0; N] {
            return id;
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

    #[test]
    fn parent_based_sampling_follows_the_callers_flag() {
        let mut parent = RemoteParent::from_headers(&headers(&[("traceparent", EXAMPLE)])).unwrap();
        let never = Sampler {
            root_ratio: 0.0,
            parent_based: true,
        };
        assert!(never.sample(&parent.trace_id, Some(&parent)));
        parent.sampled = false;
        assert!(!Sampler::DEFAULT.sample(&parent.trace_id, Some(&parent)));
        let ignore_parent = Sampler {
            root_ratio: 1.0,
            parent_based: false,
        };
        assert!(ignore_parent.sample(&parent.trace_id, Some(&parent)));
    }

    #[test]
    fn ratio_sampling_keeps_about_the_ratio_and_is_deterministic() {
        let sampler = Sampler {
            root_ratio: 0.1,
            parent_based: true,
        };
        let ids: Vec<[u8; 16]> = (0..20_000).map(|_| random_id()).collect();
        let kept = ids.iter().filter(|id| sampler.sample(id, None)).count();
        assert!((1_600..2_400).contains(&kept), "kept {kept} of 20000");
        for id in &ids[..100] {
            assert_eq!(sampler.sample(id, None), sampler.sample(id, None));
        }
        let none = Sampler {
            root_ratio: 0.0,
            parent_based: false,
        };
        assert!(ids.iter().all(|id| !none.sample(id, None)));
    }
}
