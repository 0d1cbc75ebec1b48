//! Serving the contract from a `spin-sdk` HTTP component.

use spin_sdk::http::{Method, Request, Response as SpinResponse};

use crate::api::{Config, Endpoint, Request as ContractRequest, Response, handle};
use crate::key::KeyFiles;

/// Answers `request` for `endpoint`, reading configuration from the WASI
/// environment and the key from the (preopened) key file.
///
/// Hosts give every request a fresh instance, so there is nothing to cache
/// across requests here: the key files are read only by routes that need
/// them, and the previous key only for tokens that may be its.
pub fn respond(endpoint: Endpoint, request: &Request) -> SpinResponse {
    let response = match Config::from_env() {
        Ok(config) => {
            let request = ContractRequest {
                method: method_name(request.method()),
                path: request.path(),
                body: request.body(),
            };
            handle(endpoint, &config, request, &KeyFiles::new(&config.key_file))
        }
        Err(e) => Response::misconfigured(&e),
    };
    into_spin(response)
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

fn into_spin(response: Response) -> SpinResponse {
    let mut builder = SpinResponse::builder();
    builder
        .status(response.status)
        .header("content-type", response.content_type)
        // A known length lets the host frame the response without chunking.
        .header("content-length", response.body.len().to_string());
    for (name, value) in response.headers {
        builder.header(name, value);
    }
    builder.body(response.body).build()
}
