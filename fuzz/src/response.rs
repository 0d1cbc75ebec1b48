//! What every response of the contract must look like.

use serde_json::Value;
use token_contract::{Endpoint, Response};

/// The `error` codes the contract may answer with each status, as
/// docs/openapi.yaml documents them for the services (the runner's own
/// codes, such as `timeout`, never come from the contract).
pub fn documented_codes(status: u16) -> &'static [&'static str] {
    match status {
        400 => &["malformed_json", "invalid_request"],
        401 => &["invalid_token"],
        404 => &["not_found"],
        405 => &["method_not_allowed"],
        413 => &["payload_too_large"],
        500 => &["internal"],
        503 => &["key_unavailable", "not_ready", "misconfigured"],
        _ => &[],
    }
}

/// Checks the shape every response must have, whatever the input:
///
/// - the status is one the contract documents, and a 5xx only when
///   `server_fault_possible` (a key the host holds is broken);
/// - an error is `application/json` whose body is exactly
///   `{"error": <documented code for the status>, "detail": <non-empty>}`;
/// - a 405 names the allowed method in `Allow`, a 401 carries
///   `WWW-Authenticate: Bearer error="invalid_token"`.
///
/// Returns the error code, if the response is an error.
pub fn check_shape(
    endpoint: Endpoint,
    response: &Response,
    server_fault_possible: bool,
) -> Option<String> {
    let status = response.status;
    assert!(
        status < 500 || server_fault_possible,
        "{endpoint:?}: a server error for a client's input: {response:?}"
    );
    if status == 200 {
        // Text, or the JWK Set (whose route checks its type itself).
        assert!(
            response.content_type.starts_with("text/plain")
                || response.content_type == token_contract::api::JWKS_CONTENT_TYPE,
            "{response:?}"
        );
        return None;
    }
    let codes = documented_codes(status);
    assert!(
        !codes.is_empty(),
        "{endpoint:?}: undocumented status {status}: {response:?}"
    );
    assert_eq!(response.content_type, "application/json", "{response:?}");
    let body: Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {response:?}"));
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["detail", "error"],
        "error body has other fields: {body}"
    );
    let code = object["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error is not a string: {body}"));
    assert!(
        codes.contains(&code),
        "{status} with undocumented code {code:?}: {body}"
    );
    let detail = object["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("detail is not a string: {body}"));
    assert!(!detail.is_empty(), "empty detail: {body}");

    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    match status {
        405 => assert!(
            matches!(header("Allow"), Some("GET" | "POST")),
            "{response:?}"
        ),
        401 => assert_eq!(
            header("WWW-Authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{response:?}"
        ),
        _ => {}
    }
    Some(code.to_owned())
}

/// The body of a 200 as text.
pub fn text(response: &Response) -> &str {
    std::str::from_utf8(&response.body)
        .unwrap_or_else(|e| panic!("a 200 body that is not UTF-8 ({e}): {response:?}"))
}
