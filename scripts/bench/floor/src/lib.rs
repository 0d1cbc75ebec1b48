//! The benchmark floor: a `wasi:http` component that answers every request
//! with `200 ok` and touches nothing else (no body read, no files, no SDK).
//! What the runner spends serving it is its own per-request cost: accepting,
//! instantiating, the component boundary and tearing down.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Floor;

impl wasi::exports::http::incoming_handler::Guest for Floor {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("a new response has a body");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("a new body has a stream");
        // If the client has gone the write fails; there is nobody to tell.
        let _ = stream.blocking_write_and_flush(b"ok");
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

wasi::http::proxy::export!(Floor);
