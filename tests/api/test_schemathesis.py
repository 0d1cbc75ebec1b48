"""Contract tests driven by docs/openapi.yaml: Schemathesis against the live services.

Each service is tested with the operations it serves (its own tag and the
probes), with every Schemathesis check: no 5xx, only documented statuses,
content types, headers (WWW-Authenticate, Allow) and bodies as described,
schema-valid requests accepted, schema-invalid ones rejected with 4xx, other
methods answered 405 with Allow.

Bounded and reproducible: deterministic generation (Hypothesis derandomized,
no example database), a fixed number of examples per operation, one worker.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import schemathesis
import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"
MAX_EXAMPLES = 500


def run_schemathesis(spec: Path, url: str, tags: list[str], report: Path, max_examples: int):
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", str(spec),
        "--url", url,
        "--checks", "all",
        "--max-examples", str(max_examples),
        "--generation-deterministic",
        "--workers", "1",
        "--request-timeout", "20",
        "--no-color",
        "--report", "junit", "--report-junit-path", str(report),
    ]
    for tag in tags:
        cmd += ["--include-tag", tag]
    # Run where the report goes: Schemathesis keeps a cache (.schemathesis/)
    # in its working directory, which must not land in the repository.
    return subprocess.run(
        cmd, cwd=report.parent, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=300,
    )


def operations_in_report(report: Path) -> set[str]:
    """Operation labels ("POST /create") with at least one test case in the JUnit report."""
    return {case.get("name") for case in ET.parse(report).iter("testcase")}


@pytest.mark.parametrize(
    "service,operations",
    [
        ("creator", {"POST /create", "GET /healthz", "GET /readyz"}),
        ("verifier", {"POST /verifier", "GET /healthz", "GET /readyz"}),
    ],
)
def test_the_live_service_never_contradicts_its_description(services, tmp_path, service, operations):
    live = services[service]
    report = tmp_path / "junit.xml"
    run = run_schemathesis(SPEC, live.url, [service, "probes"], report, MAX_EXAMPLES)
    print(run.stdout)  # shown with -s or -rA: what was generated and checked
    assert run.returncode == 0, f"schemathesis found problems in {service}:\n{run.stdout}"
    assert operations_in_report(report) == operations, run.stdout
    # No 5xx and no panic, seen from the server side too.
    assert live.process.poll() is None, f"{service} exited:\n{''.join(live.log)}"


def test_a_contradiction_is_found(services, tmp_path):
    # Negative control: the same run against a description that omits the 400
    # the creator really answers must fail, and must say why.
    spec = yaml.safe_load(SPEC.read_text())
    spec = copy.deepcopy(spec)
    del spec["paths"]["/create"]["post"]["responses"]["400"]
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(spec))
    run = run_schemathesis(wrong, services["creator"].url, ["creator"], tmp_path / "junit.xml", 10)
    assert run.returncode != 0, run.stdout
    assert "Undocumented status code" in run.stdout, run.stdout


def test_the_round_trip_is_described(services):
    # Generated tokens are never valid, so the runs above never see the
    # verifier's 200: drive the real flow, each response checked against the
    # description by every Schemathesis check.
    schema = schemathesis.openapi.from_path(SPEC)
    create, verify = schema["/create"]["POST"], schema["/verifier"]["POST"]
    creator, verifier = services["creator"].url, services["verifier"].url
    for username in ("testname", "\u00e9\u00e8 \u2603", "\x01" * 900):
        body = {"username": username, "password": "pass"}
        created = create.Case(body=body).call_and_validate(base_url=creator)
        assert created.status_code == 200, created.text
        verified = verify.Case(body={"token": created.text}).call_and_validate(base_url=verifier)
        assert (verified.status_code, verified.text) == (200, username)

    # A username too long for a token the verifier accepts is refused up front.
    body = {"username": "a" * 8192, "password": "pass"}
    refused = create.Case(body=body).call_and_validate(base_url=creator)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_request")

    header, payload, signature = created.text.split(".")
    tampered = f"{header}.{payload}.{signature[::-1]}"
    rejected = verify.Case(body={"token": tampered}).call_and_validate(base_url=verifier)
    assert rejected.status_code == 401
    # Schemathesis keeps headers lowercased, each with its list of values.
    assert rejected.headers["www-authenticate"] == ['Bearer error="invalid_token"']
