//! Serving the contract from a `spin-sdk` HTTP component.
//!
//! This uses spin-sdk's low-level handler form (`IncomingRequest` and
//! `ResponseOutparam`, the `wasi:http` resources themselves) rather than its
//! `Request`/`Response` conversions. Those copy every header into maps, read
//! the body through an async stream and an executor, and write the response
//! the same way; for requests this small that glue cost more than the token
//! work itself (docs/benchmarks.md, "Round 3: the work above the floor"). Here a
//! request is answered with the fewest `wasi:http` calls the interface
//! allows: method, path, one read of the body, and one write of the answer.

use std::io;
use std::path::{Component, Path};

use spin_sdk::http::ResponseOutparam;
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse};
use wasi::cli::environment::get_environment;
use wasi::filesystem::preopens::get_directories;
use wasi::filesystem::types::{DescriptorFlags, ErrorCode, OpenFlags, PathFlags};
use wasi::io::streams::StreamError;

use crate::api::{Config, Endpoint, MAX_BODY_BYTES, Request as ContractRequest, Response, handle};
use crate::key::KeyFiles;

/// Answers `request` for `endpoint`, reading configuration from the WASI
/// environment and the key from the (preopened) key file.
///
/// Hosts give every request a fresh instance, so there is nothing to cache
/// across requests here: the key files are read only by routes that need
/// them, and the previous key only for tokens that may be its. A host that
/// caches them itself passes their contents in the environment instead
/// (see [`KEY_CONTENTS_ENV`](crate::key::KEY_CONTENTS_ENV)).
pub fn serve(endpoint: Endpoint, request: IncomingRequest, response_out: ResponseOutparam) {
    let response = respond(endpoint, &request);
    drop(request);
    send(response_out, response);
}

fn respond(endpoint: Endpoint, request: &IncomingRequest) -> Response {
    // One host call for the whole environment, looked up in place. `std::env`
    // would have wasi-libc copy it into a C `environ` first (a `malloc` per
    // variable), then scan that with `strncmp` for every name.
    let environment = get_environment();
    let lookup = |name: &str| {
        spin_variable(name).or_else(|| {
            environment
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    };
    let method = request.method();
    let path_and_query = request.path_with_query().unwrap_or_default();
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query.as_str(), |(path, _query)| path);
    let config = match Config::from_lookup(lookup) {
        Ok(config) => config,
        Err(e) => return Response::misconfigured(&e, path),
    };
    let body = match read_body(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request = ContractRequest {
        method: method_name(&method),
        path,
        body: &body,
    };
    // The environment is read for `Config` anyway, so key contents the host
    // passes there cost no host call; only files the host did not pass are
    // opened.
    let keys = KeyFiles::with_reader(&config.key_file, read_key_file).with_contents_from(lookup);
    handle(endpoint, &config, request, &keys)
}

/// A token setting from Spin's application variables: `TOKEN_ALG` is the
/// component variable `token_alg` (spin.toml maps each to an application
/// variable, which `SPIN_VARIABLE_TOKEN_ALG` or `spin up --variable` sets).
/// A variable the manifest does not define leaves the environment's value.
#[cfg(feature = "spin-variables")]
fn spin_variable(name: &str) -> Option<String> {
    if !crate::api::TOKEN_SETTINGS.contains(&name) {
        return None;
    }
    spin_sdk::variables::get(&name.to_ascii_lowercase()).ok()
}

/// Without the `spin-variables` feature the component imports nothing but
/// WASI 0.2, and the settings come from the environment only.
#[cfg(not(feature = "spin-variables"))]
fn spin_variable(_name: &str) -> Option<String> {
    None
}

/// Reads at most `limit` bytes of the file at `path` straight through
/// `wasi:filesystem`: find the preopened directory, `open-at`, `read`.
///
/// `std::fs` gets there through wasi-libc, which spends a dozen host calls
/// on the same file (preopen table, descriptor type and flags, a stream per
/// read, reads until end of file); under Wasm each host call crosses the
/// component boundary, and this runs on every request.
fn read_key_file(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let not_found = || io::Error::new(io::ErrorKind::NotFound, "no preopened directory holds it");
    // The preopen the path lies in; the longest match, as wasi-libc picks.
    let preopens = get_directories();
    let (directory, relative) = preopens
        .iter()
        .filter_map(|(directory, guest)| {
            let relative = path.strip_prefix(guest).ok()?;
            Some((guest.len(), directory, relative))
        })
        .max_by_key(|(length, _, _)| *length)
        .map(|(_, directory, relative)| (directory, relative))
        .ok_or_else(not_found)?;
    // An empty or non-UTF-8 remainder, or one with `..` in it, names nothing
    // a key can be (and `open-at` would refuse `..` anyway).
    let relative = relative
        .to_str()
        .filter(|r| {
            !r.is_empty()
                && relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
        })
        .ok_or_else(not_found)?;
    // Follow symbolic links, as `open` does: Kubernetes mounts a Secret's
    // files as links into a timestamped directory.
    let file = directory
        .open_at(
            PathFlags::SYMLINK_FOLLOW,
            relative,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(io_error)?;
    let mut contents = Vec::new();
    while contents.len() < limit {
        let want = (limit - contents.len()) as u64;
        let (chunk, end) = file.read(want, contents.len() as u64).map_err(io_error)?;
        contents.extend_from_slice(&chunk);
        if end || chunk.is_empty() {
            break;
        }
    }
    Ok(contents)
}

fn io_error(code: ErrorCode) -> io::Error {
    let kind = match code {
        ErrorCode::NoEntry => io::ErrorKind::NotFound,
        ErrorCode::Access | ErrorCode::NotPermitted => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{code:?}"))
}

/// Reads the request body, at most `MAX_BODY_BYTES + 1` bytes of it: enough
/// for the contract to tell a too-large body (413) without holding it all.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, Response> {
    let unreadable = |why: &str| {
        Response::error(
            400,
            "bad_request",
            format!("could not read the request body: {why}"),
        )
    };
    let body = request
        .consume()
        .map_err(|()| unreadable("it was already consumed"))?;
    let stream = body.stream().map_err(|()| unreadable("it has no stream"))?;
    let limit = MAX_BODY_BYTES + 1;
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        let want = (limit - bytes.len()) as u64;
        match stream.blocking_read(want) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(unreadable(&e.to_debug_string()));
            }
        }
    }
    // The stream is a child of the body: it goes first. (No trailers are
    // expected, so the body is dropped rather than finished.)
    drop(stream);
    drop(body);
    Ok(bytes)
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

/// `blocking-write-and-flush` takes at most this many bytes per call.
const WRITE_CHUNK: usize = 4096;

/// Sends `response`: status, headers and the whole body at once.
fn send(response_out: ResponseOutparam, response: Response) {
    let length = response.body.len().to_string();
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("content-type".into(), response.content_type.into()),
        // A known length lets the host frame the response without chunking.
        ("content-length".into(), length.into_bytes()),
    ];
    headers.extend(
        response
            .headers
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.into_bytes())),
    );
    let fields = Fields::from_list(&headers).expect("the contract's headers are valid");
    let outgoing = OutgoingResponse::new(fields);
    // A new response is a 200 (`wasi:http`): one host call less for most.
    if response.status != 200 {
        outgoing
            .set_status_code(response.status)
            .expect("the contract's status codes are valid");
    }
    let body = outgoing.body().expect("a new response has a body");
    response_out.set(outgoing);
    let stream = body.write().expect("a new body has a stream");
    for chunk in response.body.chunks(WRITE_CHUNK) {
        // Fails only when the client has gone; there is nobody to tell.
        if stream.blocking_write_and_flush(chunk).is_err() {
            return;
        }
    }
    drop(stream);
    // Tells the host the body is complete (and its length matched).
    let _ = OutgoingBody::finish(body, None);
}
