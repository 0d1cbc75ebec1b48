"""docs/openapi.yaml: a valid OpenAPI 3.1 document that matches the code.

Validity is checked with openapi-spec-validator; agreement with the code is
checked against the Rust sources themselves (the error codes each side can
answer with), and against the live services by test_schemathesis.py.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"
API_RS = ROOT / "components" / "token-contract" / "src" / "api.rs"
SERVER_RS = ROOT / "components" / "runner" / "src" / "server.rs"



def load() -> dict:
    with SPEC.open() as f:
        return yaml.safe_load(f)


def test_is_valid_openapi_3_1():
    spec = load()
    assert spec["openapi"].startswith("3.1.")
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_the_validator_rejects_a_broken_document():
    # Negative control: proves the check above can fail.
    spec = copy.deepcopy(load())
    del spec["paths"]["/create"]["post"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(spec, cls=OpenAPIV31SpecValidator)


def _codes_in_source() -> dict[str, set[int]]:
    """error code -> HTTP statuses it is sent with, read from the Rust sources."""
    pairs: dict[str, set[int]] = {}
    call = re.compile(
        r'(?:Response::error|Self::error|error_response)\(\s*'
        r'(?:(\d{3})|StatusCode::([A-Z_]+))\s*,\s*"([a-z_]+)"'
    )
    names = {"BAD_REQUEST": 400, "REQUEST_TIMEOUT": 408, "PAYLOAD_TOO_LARGE": 413,
             "INTERNAL_SERVER_ERROR": 500, "SERVICE_UNAVAILABLE": 503}
    for path in (API_RS, SERVER_RS):
        source = path.read_text()
        # The tests at the bottom of api.rs build no responses; skip them anyway.
        source = source.split("#[cfg(test)]")[0]
        for number, name, code in call.findall(source):
            assert number or name in names, f"{path.name}: unknown StatusCode::{name}"
            pairs.setdefault(code, set()).add(int(number) if number else names[name])
    # parse_json() passes the code in a variable: it answers 400 with one of these two.
    assert '("malformed_json", "request body is not valid JSON")' in API_RS.read_text()
    pairs.setdefault("malformed_json", set()).add(400)
    return pairs


def _error_enum(schema: dict, spec: dict) -> set[str]:
    """The `error` codes a response schema allows (resolving the allOf narrowing)."""
    if "$ref" in schema:
        return _error_enum(_resolve(spec, schema["$ref"]), spec)
    if "allOf" in schema:
        narrowed = [_error_enum(s, spec) for s in schema["allOf"]]
        return set.intersection(*narrowed)
    error = schema.get("properties", {}).get("error", {})
    if "$ref" in error:
        error = _resolve(spec, error["$ref"])
    if "const" in error:
        return {error["const"]}
    return set(error["enum"])


def _resolve(spec: dict, ref: str) -> dict:
    node = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _documented_codes(spec: dict) -> dict[str, set[int]]:
    """error code -> statuses under which the description documents it."""
    responses = []
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method in {"get", "post"}:
                responses.extend(operation["responses"].items())
    # 404 and 405 can answer any path, so they live in components only.
    components = spec["components"]["responses"]
    responses += [("404", components["NotFound"]), ("405", components["MethodNotAllowed"])]
    documented: dict[str, set[int]] = {}
    for status, response in responses:
        if "$ref" in response:
            response = _resolve(spec, response["$ref"])
        content = response.get("content", {}).get("application/json")
        if content:
            for code in _error_enum(content["schema"], spec):
                documented.setdefault(code, set()).add(int(status))
    return documented


def test_error_code_enum_is_exactly_the_codes_in_the_code():
    spec = load()
    enum = set(spec["components"]["schemas"]["ErrorCode"]["enum"])
    in_source = set(_codes_in_source())
    assert len(in_source) >= 14, f"the source scan found too little: {sorted(in_source)}"
    assert in_source - enum == set(), "codes the services send but the description omits"
    assert enum - in_source == set(), "codes the description invents"


def test_every_code_is_documented_under_the_status_it_is_sent_with():
    documented = _documented_codes(load())
    for code, statuses in _codes_in_source().items():
        for status in statuses:
            assert status in documented.get(code, set()), (
                f"{code} is sent with {status} but documented only under "
                f"{sorted(documented.get(code, set()))}"
            )


def test_error_responses_and_their_headers():
    spec = load()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post"}:
                continue
            for status, response in operation["responses"].items():
                response = _resolve(spec, response["$ref"]) if "$ref" in response else response
                assert response.get("content"), f"{method} {path} {status}: no body described"
                media = set(response["content"])
                if status.startswith("2") and path == "/.well-known/jwks.json":
                    assert media == {"application/jwk-set+json"}, f"{path} {status}: {media}"
                elif status.startswith("2"):
                    assert media == {"text/plain"}, f"{method} {path} {status}: {media}"
                else:
                    assert media == {"application/json"}, f"{method} {path} {status}: {media}"
                for example in response["content"][next(iter(media))].get("examples", {}).values():
                    assert "value" in example
    verify = spec["paths"]["/verifier"]["post"]["responses"]["401"]
    assert "WWW-Authenticate" in _resolve(spec, verify["$ref"])["headers"]
    assert "Allow" in spec["components"]["responses"]["MethodNotAllowed"]["headers"]


def test_each_service_route_lists_only_its_own_server():
    spec = load()
    ports = {server["description"]: server["url"] for server in spec["servers"]}
    assert ports == {"creator": "http://{host}:8000", "verifier": "http://{host}:5000"}
    for path, service in (("/create", "creator"), ("/verifier", "verifier")):
        servers = spec["paths"][path]["servers"]
        assert [s["url"] for s in servers] == [ports[service]], path
        assert spec["paths"][path]["post"]["tags"] == [service]
    for path in ("/healthz", "/readyz", "/.well-known/jwks.json"):
        assert "servers" not in spec["paths"][path], f"{path} is served by both"
