//! The verifier service: a `wasi:http/incoming-handler` component.
//!
//! All behaviour lives in `token-contract`; this crate only binds it to the
//! component's HTTP export, so the same contract runs under our runner, under
//! `wasmtime serve` and under Spin.

use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;
use token_contract::Endpoint;

#[http_component]
fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    token_contract::spin::serve(Endpoint::Verifier, request, response_out);
}
