#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (fuzz/seeds/TARGET/) from scratch.

Seeds are where libFuzzer's mutations start: valid inputs that reach deep
into the code (tokens that verify, bodies the services accept, key files
the services load), and a few of each kind of invalid one. They are made
here with PyJWT, hashlib and cryptography, not with the code under test,
and with the keys keycreator derives from KEY=fuzz-current and
KEY=fuzz-previous (the keys fuzz/src/keys.rs names): the HS256 key files,
and the EdDSA and ES256 key pairs derived from them as
components/token-contract/src/jwk.rs documents (HKDF-SHA256; checked here
against its known answers).

The output depends on nothing but this file and the libraries: no clock
(every `exp` is in 2100, every `iat` in the past), no randomness (Ed25519 is
deterministic, and ECDSA signs with RFC 6979 nonces, PyJWT's ES256 too), so
running it again rewrites exactly the committed seeds (with PyJWT 2.15.1 and
cryptography 48.0.0; another PyJWT may order or space JSON differently).

    pip install 'pyjwt>=2.10' 'cryptography>=44'
    python3 fuzz/seeds.py && git status --short fuzz/seeds   # nothing: up to date
"""

import base64
import hashlib
import hmac
import json
import shutil
from pathlib import Path

import jwt  # PyJWT
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm
from jwt.utils import der_to_raw_signature

SEEDS = Path(__file__).resolve().parent / "seeds"
CURRENT = hashlib.sha512(b"fuzz-current").hexdigest()
PREVIOUS = hashlib.sha512(b"fuzz-previous").hexdigest()
FOREVER = 4102444800  # 2100-01-01: seeds stay valid
PAST = 1700000000

# RFC 6979 deterministic ECDSA (cryptography >= 44), so that every run signs
# the same bytes.
DETERMINISTIC_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


class DeterministicES256(ECAlgorithm):
    """PyJWT's ES256, with RFC 6979 nonces instead of random ones."""

    def sign(self, msg: bytes, key) -> bytes:
        return der_to_raw_signature(key.sign(msg, DETERMINISTIC_ECDSA), key.curve)


jwt.unregister_algorithm("ES256")
jwt.register_algorithm("ES256", DeterministicES256(ECAlgorithm.SHA256))


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
        # verify_mutated_token's finding in CI: an empty `aud` names no
        # audience (PyJWT accepts it); its header and claims, with the seed
        # key and a lasting exp.
        "aud-empty-list": token(
            claims={"aud": [], "exp": FOREVER, "iat": PAST, "username": "^\n\n\n["}, with_kid=False
        ),
        "aud-empty-string": token(claims={"username": "x", "exp": FOREVER, "aud": ""}),
        "aud-named": token(claims={"username": "x", "exp": FOREVER, "aud": ["", "api"]}),
        # jwt-simple's own header parameter: refused with our unsalted keys.
        "salt-header": token(headers={"salt": "AAAA"}),
        # A key in the header, as RFC 7515 writes it (an object): jwt-simple
        # reads `jwk` as a string, so refuses it.
        "jwk-object-header": token(headers={"jwk": {"kty": "oct", "k": "AAAA"}}),
        "garbage": "a.b.c",
    }


# --- EdDSA and ES256: the key pairs keycreator derives, as JWKs -------------

DERIVATION_SALT = b"wasm-jwt key derivation v1"
ED25519_SEED_INFO = b"wasm-jwt v1 EdDSA Ed25519 seed"
P256_SCALAR_INFO = b"wasm-jwt v1 ES256 P-256 scalar"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ISSUER = "https://tokens.example"  # as fuzz_targets/verify_published_token.rs
AUDIENCE = "api"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hkdf(key_file: str, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=DERIVATION_SALT, info=info).derive(
        key_file.encode()
    )


def thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, no whitespace."""
    required = ["crv", "kty", "x"] + (["y"] if jwk["kty"] == "EC" else [])
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


class KeyPair:
    """The key pair of `alg` keycreator derives from a key file's contents."""

    def __init__(self, alg: str, key_file: str):
        self.alg = alg
        if alg == "EdDSA":
            seed = hkdf(key_file, ED25519_SEED_INFO, 32)
            self.private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
            raw = self.private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            self.raw_public = raw
            self.public_jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
            d = seed
        else:
            scalar = int.from_bytes(hkdf(key_file, P256_SCALAR_INFO, 48), "big") % P256_N
            self.private = ec.derive_private_key(scalar, ec.SECP256R1())
            numbers = self.private.public_key().public_numbers()
            x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
            self.raw_public = b"\x04" + x + y
            self.public_jwk = {"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}
            d = scalar.to_bytes(32, "big")
        self.kid = thumbprint(self.public_jwk)
        self.public_jwk.update({"alg": alg, "use": "sig", "kid": self.kid})
        self.private_jwk = dict(self.public_jwk, d=b64(d))
        self.pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, signing_input: bytes, high_s: bool = False) -> bytes:
        if self.alg == "EdDSA":
            return self.private.sign(signing_input)
        r, s = decode_dss_signature(self.private.sign(signing_input, DETERMINISTIC_ECDSA))
        low = min(s, P256_N - s)
        s = P256_N - low if high_s else low
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def check_derivation() -> None:
    """The known answers of components/token-contract/src/jwk.rs."""
    benchmark = hashlib.sha512(b"benchmark-secret\n").hexdigest()
    eddsa, es256 = KeyPair("EdDSA", benchmark), KeyPair("ES256", benchmark)
    assert eddsa.kid == "WAjEP1K8MyFItZbcjatVC6KHiVeieEajcL70fkZYkQQ", eddsa.kid
    assert eddsa.private_jwk["d"] == "lhQkVk61JpU_xVlx4XbTqYzYbbXAFyVDrHia9NNou0o"
    assert es256.kid == "gO3hpCbFby0fYbw77lQ0iHI4Rie1uIbodd-F-RiB02U", es256.kid
    assert es256.private_jwk["d"] == "Qt-UZm5YriyRPvuBa5YbC6MboZY5o2TExEBSSe0b7T0"


def jose(header: dict, claims: dict, sign) -> str:
    """A compact JWS of this header and these claims, `sign` making the signature."""
    signing_input = ".".join(
        b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def published_tokens(alg: str) -> dict[str, tuple[int, str]]:
    """Tokens against the seed deployment of `alg` (current and previous
    keys), with the policy bits they are meant for (bit 0 issuer, bit 1
    audience; see fuzz_targets/verify_published_token.rs)."""
    current, previous = KeyPair(alg, CURRENT), KeyPair(alg, PREVIOUS)
    other_alg = "ES256" if alg == "EdDSA" else "EdDSA"
    other = KeyPair(other_alg, CURRENT)
    stranger = KeyPair(alg, hashlib.sha512(b"someone-else").hexdigest())
    claims = {"username": "testname", "iat": PAST, "exp": FOREVER}

    def signed(key=current, header=None, body=None, high_s=False, name=None):
        head = {"alg": name or key.alg, "typ": "JWT", "kid": key.kid}
        head.update(header or {})
        head = {k: v for k, v in head.items() if v is not None}
        return jose(head, claims if body is None else body, lambda m: key.sign(m, high_s))

    def pyjwt(key=current, body=None, headers=None):
        pem = key.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        headers = dict({"kid": key.kid}, **(headers or {}))
        return jwt.encode(claims if body is None else body, pem, algorithm=key.alg, headers=headers)

    def hs256(secret: bytes, kid=current.kid) -> str:
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        return jose(header, claims, lambda m: hmac.new(secret, m, "sha256").digest())

    jwks = json.dumps({"keys": [current.public_jwk, previous.public_jwk]}).encode()
    tokens = {
        "current": (0, signed()),
        "previous": (0, signed(previous)),
        "pyjwt": (0, pyjwt()),  # ES256: in whichever form of s PyJWT signs
        "policy": (3, signed(body=dict(claims, iss=ISSUER, aud=AUDIENCE))),
        "policy-audience-list": (2, signed(body=dict(claims, aud=["other", AUDIENCE]))),
        "wrong-issuer": (1, signed(body=dict(claims, iss="https://evil.example"))),
        "aud-without-audience": (0, signed(body=dict(claims, aud=AUDIENCE))),
        "aud-empty-list": (0, signed(body=dict(claims, aud=[]))),
        "aud-empty-string": (0, signed(body=dict(claims, aud=""))),
        "aud-empty-with-audience": (2, signed(body=dict(claims, aud=[]))),
        "no-kid": (0, signed(header={"kid": None})),
        "unknown-kid": (0, signed(stranger)),
        "kid-of-current-signed-by-stranger": (0, signed(stranger, header={"kid": current.kid})),
        "other-algorithm": (0, signed(other)),
        "other-algorithm-our-kid": (0, signed(other, header={"kid": current.kid})),
        "expired": (0, signed(body={"username": "x", "iat": PAST, "exp": PAST + 300})),
        "no-exp": (0, signed(body={"username": "x", "iat": PAST})),
        "nbf-future": (0, signed(body={"username": "x", "exp": FOREVER, "nbf": FOREVER - 1})),
        "fractional-exp": (0, signed(body={"username": "x", "exp": FOREVER + 0.5})),
        "typ-other": (0, signed(header={"typ": "at+jwt"})),
        "typ-wrong": (0, signed(header={"typ": "dd"})),
        "crit": (0, signed(header={"crit": ["exp"]})),
        "crit-empty": (0, signed(header={"crit": []})),
        "jwk-header": (0, signed(header={"jwk": stranger.public_jwk})),
        "jwk-header-string": (0, signed(header={"jwk": json.dumps(current.public_jwk)})),
        "jku-header": (0, signed(header={"jku": "https://attacker.example/jwks.json"})),
        "x5u-header": (0, signed(header={"x5u": "https://attacker.example/cert.pem"})),
        "x5c-header": (0, signed(header={"x5c": ["MIIB"]})),
        "jwk-null": (0, jose({"alg": alg, "kid": current.kid, "jwk": None}, claims, current.sign)),
        "alg-none": (0, jose({"alg": "none", "kid": current.kid}, claims, lambda m: b"")),
        "hs256-raw-public-key": (0, hs256(current.raw_public)),
        "hs256-pem": (0, hs256(current.pem)),
        "hs256-public-jwk": (0, hs256(json.dumps(current.public_jwk).encode())),
        "hs256-jwks": (0, hs256(jwks)),
        "hs256-key-file": (0, hs256(CURRENT.encode(), kid=kid(CURRENT))),
        "alg-relabelled-hmac": (0, jose({"alg": alg, "kid": current.kid}, claims,
                                       lambda m: hmac.new(current.pem, m, "sha256").digest())),
        "garbage": (0, "a.b.c"),
    }
    if alg == "EdDSA":
        tokens["alg-ed25519"] = (0, signed(name="Ed25519"))
    else:
        tokens["high-s"] = (0, signed(high_s=True))
    return tokens


def key_files(alg: str) -> dict[str, tuple[bytes | None, bytes | None]]:
    """jwks.json and signing-key.json contents (None: no such file)."""
    current, previous = KeyPair(alg, CURRENT), KeyPair(alg, PREVIOUS)
    other = KeyPair("ES256" if alg == "EdDSA" else "EdDSA", CURRENT)

    def dump(value) -> bytes:
        return json.dumps(value).encode()

    def keyset(*keys) -> bytes:
        return dump({"keys": list(keys)})

    good = keyset(current.public_jwk, previous.public_jwk)
    private = dump(current.private_jwk)
    padded = dict(current.public_jwk, x=current.public_jwk["x"] + "=")
    relabelled = dict(current.public_jwk, kid="key-1")
    bare = {k: v for k, v in current.public_jwk.items() if k not in ("alg", "use")}
    files = {
        "creator": (good, private),
        "verifier": (good, None),
        "signing-only": (None, private),
        "one-key": (keyset(current.public_jwk), private),
        "bare-members": (keyset(bare), private),
        "private-in-set": (keyset(current.private_jwk), private),
        "duplicate-kid": (keyset(current.public_jwk, current.public_jwk), None),
        "kid-not-thumbprint": (keyset(relabelled), None),
        "other-algorithm-set": (keyset(other.public_jwk), dump(other.private_jwk)),
        "mixed-set": (keyset(current.public_jwk, other.public_jwk), private),
        "padded-x": (keyset(padded), None),
        "empty-set": (keyset(), None),
        "too-many-keys": (keyset(*[current.public_jwk] * 9), None),
        "keys-not-array": (dump({"keys": current.public_jwk}), None),
        "duplicate-member": (b'{"keys":[' + dump(current.public_jwk)[:-1] + b',"x":"AAAA"}]}', None),
        "escaped-d": (b'{"keys":[' + dump(current.public_jwk)[:-1] + b',"\\u0064":"'
                      + current.private_jwk["d"].encode() + b'"}]}', None),
        "not-utf8": (b"\xff" + good, b"\xfe" + private),
        "signing-public-only": (good, dump(current.public_jwk)),
        "signing-kid-mismatch": (good, dump(dict(current.private_jwk, kid="key-1"))),
        "signing-other-d": (good, dump(dict(current.private_jwk, d=previous.private_jwk["d"]))),
    }
    if alg == "ES256":
        wrong_y = dict(current.public_jwk, y=current.public_jwk["x"])
        files["point-not-on-curve"] = (keyset(wrong_y), None)
    return files


def write(target: str, name: str, data: bytes) -> None:
    directory = SEEDS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def main() -> None:
    check_derivation()
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
    # EdDSA and ES256 (bit 7 of byte 0: a configuration byte follows byte
    # 1; see fuzz_targets/service_request.rs): bits 0-1 the algorithm
    # (1 EdDSA, 2 ES256), 2-3 issuer and audience, bit 4 the JWK Set path,
    # 5-7 the key files (0 in order, 1 with a next key, 3 signer not
    # published, 4 a private key in the set, 6 no set).
    for alg, code in (("EdDSA", 0x01), ("ES256", 0x02)):
        lower = alg.lower()
        bodies[f"create-{lower}"] = (bytes([0x81, 0xF4, code]), create)
        bodies[f"create-{lower}-policy"] = (bytes([0x81, 0xF4, code | 0x0C]), create)
        bodies[f"create-{lower}-rotation"] = (bytes([0x81, 0x05, code | 0x20]), create)
        bodies[f"create-{lower}-unpublished"] = (bytes([0x81, 0x01, code | 0x60]), create)
        bodies[f"jwks-{lower}-creator"] = (bytes([0x83, 0x18, code | 0x10]), b"")
        bodies[f"jwks-{lower}-verifier"] = (bytes([0x82, 0x01, code | 0x30]), b"")
        bodies[f"jwks-{lower}-private-in-set"] = (bytes([0x82, 0x00, code | 0x90]), b"")
        bodies[f"readyz-{lower}"] = (bytes([0x92, 0x01, code]), b"")
        for name, (bits, value) in published_tokens(alg).items():
            head = bytes([0x80, 0x01, code | bits << 2])
            bodies[f"verify-{lower}-{name}"] = (head, json.dumps({"token": value}).encode())
    bodies["jwks-under-hs256"] = (b"\x82\x00\x10", b"")
    for name, (head, body) in bodies.items():
        write("service_request", name, head + body)

    # verify_published_token, raw: byte 0 bit 0 the algorithm, bits 2-3 the
    # policy, then the token.
    for alg, bit in (("EdDSA", 0), ("ES256", 1)):
        for name, (bits, value) in published_tokens(alg).items():
            write("verify_published_token", f"{alg.lower()}-{name}",
                  bytes([bit | bits << 2]) + value.encode())

    # jwk_set, raw: byte 0 bit 0 the algorithm, bit 2 no jwks.json, then
    # jwks.json, a 0x00 and signing-key.json (none without the 0x00).
    for alg, bit in (("EdDSA", 0), ("ES256", 1)):
        for name, (jwks, signing) in key_files(alg).items():
            if jwks is None:
                data = bytes([bit | 4]) + signing
            else:
                data = bytes([bit]) + jwks + (b"" if signing is None else b"\x00" + signing)
            write("jwk_set", f"{alg.lower()}-{name}", data)

    write("key_file", "current", CURRENT.encode())
    write("key_file", "with-newline", (CURRENT + "\n").encode())
    write("key_file", "uppercase", CURRENT.upper().encode())
    write("key_file", "short", CURRENT[:127].encode())
    for name, data in [("current", CURRENT.encode()), ("with-newline", (CURRENT + "\n").encode()),
                       ("not-utf8", b"\xff" + CURRENT[1:].encode()), ("empty", b"")]:
        write("runner_env_from_file", name, data)


if __name__ == "__main__":
    main()
