#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (fuzz/seeds/TARGET/) from scratch.

Seeds are where libFuzzer's mutations start: valid inputs that reach deep
into the code (tokens that verify, bodies the services accept), and a few of
each kind of invalid one. They are made here with PyJWT and hashlib, not
with the code under test, and with the keys keycreator derives from
KEY=fuzz-current and KEY=fuzz-previous (the keys fuzz/src/keys.rs names).

    python3 fuzz/seeds.py    # then commit fuzz/seeds
"""

import hashlib
import json
import shutil
from pathlib import Path

import jwt  # PyJWT

SEEDS = Path(__file__).resolve().parent / "seeds"
CURRENT = hashlib.sha512(b"fuzz-current").hexdigest()
PREVIOUS = hashlib.sha512(b"fuzz-previous").hexdigest()
FOREVER = 4102444800  # 2100-01-01: seeds stay valid
PAST = 1700000000


def kid(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def token(key=CURRENT, claims=None, headers=None, alg="HS256", with_kid=True) -> str:
    claims = {"username": "testname", "iat": PAST, "exp": FOREVER} if claims is None else claims
    headers = dict(headers or {})
    if with_kid:
        headers.setdefault("kid", kid(key))
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def tokens() -> dict[str, str]:
    return {
        "current": token(),
        "previous": token(PREVIOUS),
        "go-style-no-kid": token(with_kid=False),
        "previous-no-kid": token(PREVIOUS, with_kid=False),
        "other-key": token(hashlib.sha512(b"someone-else").hexdigest()),
        "expired": token(claims={"username": "x", "iat": PAST, "exp": PAST + 300}),
        "no-exp": token(claims={"username": "x", "iat": PAST}),
        "nbf-future": token(claims={"username": "x", "exp": FOREVER, "nbf": FOREVER - 1}),
        "extra-claims": token(claims={"username": "x", "exp": FOREVER, "aud": "a", "iss": "i"}),
        "unicode-username": token(claims={"username": "J\u00fcrgen \u2603", "exp": FOREVER}),
        "hs512": token(alg="HS512"),
        "kid-of-previous-signed-by-current": token(headers={"kid": kid(PREVIOUS)}),
        "alg-none": jwt.encode({"username": "x", "exp": FOREVER}, None, algorithm="none"),
        "crit-header": token(headers={"crit": ["exp"]}),
        "garbage": "a.b.c",
    }


def write(target: str, name: str, data: bytes) -> None:
    directory = SEEDS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def main() -> None:
    shutil.rmtree(SEEDS, ignore_errors=True)
    all_tokens = tokens()
    for name, value in all_tokens.items():
        write("verify_token", name, value.encode())

    # service_request: two control bytes (see fuzz_targets/service_request.rs)
    # then the body. 0x01: creator, POST, its route, the seed key; 0x00 the
    # verifier; byte 1 = 0x01 adds the previous seed key, 0xf4 the longest TTL.
    create = json.dumps({"username": "testname", "password": "pass"}).encode()
    bodies = {
        "create": (b"\x01\xf4", create),
        "create-unicode": (b"\x01\x00", json.dumps({"username": "\u00e9\u2603", "password": ""}).encode()),
        "create-extra-field": (b"\x01\x00", b'{"username":"a","password":"b","admin":true}'),
        "create-empty-username": (b"\x01\x00", b'{"username":"","password":"b"}'),
        "create-malformed": (b"\x01\x00", b'{"username":'),
        "create-arbitrary-key": (b"\x21\x02", bytes(range(64)) + create),
        "create-missing-key": (b"\x41\x00", create),
        "create-get": (b"\x03\x00", b""),
        "healthz": (b"\x0a\x00", b""),
        "readyz-broken-previous": (b"\x12\x03", b""),
        "wrong-route": (b"\x19\x00", create),
    }
    for name, value in all_tokens.items():
        bodies[f"verify-{name}"] = (b"\x00\x01", json.dumps({"token": value}).encode())
    bodies["verify-not-a-string"] = (b"\x00\x01", b'{"token": 5}')
    bodies["verify-duplicate-token"] = (b"\x00\x01", b'{"token":"a","token":"b"}')
    for name, (head, body) in bodies.items():
        write("service_request", name, head + body)

    write("key_file", "current", CURRENT.encode())
    write("key_file", "with-newline", (CURRENT + "\n").encode())
    write("key_file", "uppercase", CURRENT.upper().encode())
    write("key_file", "short", CURRENT[:127].encode())
    for name, data in [("current", CURRENT.encode()), ("with-newline", (CURRENT + "\n").encode()),
                       ("not-utf8", b"\xff" + CURRENT[1:].encode()), ("empty", b"")]:
        write("runner_env_from_file", name, data)


if __name__ == "__main__":
    main()
