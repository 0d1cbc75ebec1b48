//! A request's span while it runs ([`RequestSpan`]) and once it has ended
//! ([`FinishedSpan`]): the values the tracer makes and the exporter sends.
//! Apart from both so that the exporter need not use the tracer, which
//! starts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode, Version};

use super::context::RemoteParent;

/// A moment inside a request, recorded as a span event.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// The whole request body has arrived (and fits the limit).
    BodyRead,
    /// An instance slot was free and the component is instantiated.
    InstanceReady,
    /// The component has set its response (its headers; the body may
    /// still stream).
    GuestAnswered,
}

impl Phase {
    /// In the order they happen; `phase as usize` indexes arrays of them.
    pub(super) const ALL: [Self; 3] = [Self::BodyRead, Self::InstanceReady, Self::GuestAnswered];

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::BodyRead => "request body read",
            Self::InstanceReady => "instance ready",
            Self::GuestAnswered => "guest answered",
        }
    }
}

/// Why a request failed, as the span's error status tells it.
#[derive(Debug, Clone)]
pub struct SpanError {
    /// `error.type`: a short, low-cardinality kind.
    pub kind: &'static str,
    /// The status message: what happened, for a person.
    pub message: String,
}

/// Longest error message kept on a span: a trap's message holds a Wasm
/// backtrace, and the queue's memory is bounded by span count.
const MAX_ERROR_MESSAGE: usize = 1024;

/// A request being traced.
pub struct RequestSpan {
    facts: SpanFacts,
    start: Instant,
    phases: [Option<Instant>; 3],
}

/// What a span records while its request runs, and keeps when it ends.
pub(super) struct SpanFacts {
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    pub(super) parent: Option<RemoteParent>,
    pub(super) start_unix_nanos: u64,
    pub(super) error: Option<SpanError>,
    pub(super) request_body_size: Option<u64>,
    pub(super) client: SocketAddr,
    pub(super) server_address: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) version: Version,
}

impl RequestSpan {
    /// A span that starts now.
    pub(super) fn start(facts: SpanFacts) -> Self {
        Self {
            facts,
            start: Instant::now(),
            phases: [None; 3],
        }
    }

    pub fn trace_id(&self) -> [u8; 16] {
        self.facts.trace_id
    }

    pub fn span_id(&self) -> [u8; 8] {
        self.facts.span_id
    }

    pub fn mark(&mut self, phase: Phase) {
        self.mark_at(phase, Instant::now());
    }

    pub fn mark_at(&mut self, phase: Phase, at: Instant) {
        self.phases[phase as usize] = Some(at);
    }

    pub fn set_request_body_size(&mut self, bytes: usize) {
        self.facts.request_body_size = Some(bytes as u64);
    }

    /// Sets the span's status to error.
    pub fn fail(&mut self, kind: &'static str, message: impl Into<String>) {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE {
            let mut end = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        self.facts.error = Some(SpanError { kind, message });
    }

    /// Ends the span now, with what is known of the request once it is
    /// answered.
    pub(super) fn end(
        self,
        method: Method,
        path: String,
        route: Option<Arc<str>>,
        status: StatusCode,
        response_body_size: Option<u64>,
    ) -> FinishedSpan {
        let end = Instant::now();
        let start_unix_nanos = self.facts.start_unix_nanos;
        let at = |instant: Instant| {
            start_unix_nanos + instant.saturating_duration_since(self.start).as_nanos() as u64
        };
        FinishedSpan {
            end_unix_nanos: at(end),
            events: self.phases.map(|phase| phase.map(at)),
            facts: self.facts,
            method,
            path,
            route,
            status,
            response_body_size,
        }
    }
}

/// All the exporter needs to know of a finished request; encoded to
/// protobuf off the request path.
pub struct FinishedSpan {
    pub(super) facts: SpanFacts,
    pub(super) end_unix_nanos: u64,
    /// When each [`Phase`] happened, if it did.
    pub(super) events: [Option<u64>; 3],
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) route: Option<Arc<str>>,
    pub(super) status: StatusCode,
    pub(super) response_body_size: Option<u64>,
}
