"""A client that creates and verifies tokens continuously, for the key
rotation tests (tests/e2e and tests/k8s): every token it creates is verified
at once, so every token it sends the verifier is valid, and any rejection of
one is a failure of the rotation.

Creators and verifiers are base URLs on 127.0.0.1. The lists can change while
the load runs (the podman test runs old and new pods side by side during a
roll, and takes a pod out of the lists before it stops it, as a Service takes
a terminating pod out of its endpoints); each request picks one of the
current entries, so requests are spread over all of them.
"""

from __future__ import annotations

import base64
import collections
import http.client
import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Callable


def token_kid(token: str) -> str | None:
    """The `kid` of a token's header (None without one)."""
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))).get("kid")


def post(base: str, path: str, body: dict, timeout: float = 10) -> tuple[int, str]:
    url = urllib.parse.urlsplit(base)
    assert url.hostname == "127.0.0.1", f"test traffic stays on 127.0.0.1, not {base}"
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


class TokenLoad:
    """`threads` threads that each loop: create a token, verify it."""

    def __init__(self, creators: list[str], verifiers: list[str], threads: int = 4,
                 outside_verifier: Callable[[str], str] | None = None):
        """`outside_verifier`, if given, checks every token too, as a gateway
        would: it returns the token's username or raises if it refuses it."""
        self._outside_verifier = outside_verifier
        self._lock = threading.Lock()
        self._creators = list(creators)
        self._verifiers = list(verifiers)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]
        self._counter = itertools.count()
        self.verified = 0
        self.kids: collections.Counter[str | None] = collections.Counter()
        self.rejected: list[str] = []  # valid tokens the verifier refused
        self.errors: list[str] = []  # anything else that went wrong
        self.started = self.stopped = 0.0

    # --- the lists of endpoints ---------------------------------------------

    def set_creators(self, creators: list[str]) -> None:
        with self._lock:
            self._creators = list(creators)

    def set_verifiers(self, verifiers: list[str]) -> None:
        with self._lock:
            self._verifiers = list(verifiers)

    def _pick(self, which: str) -> str:
        with self._lock:
            bases = self._creators if which == "creator" else self._verifiers
            return bases[next(self._counter) % len(bases)]

    # --- running ---------------------------------------------------------------

    def __enter__(self) -> TokenLoad:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self.stopped = time.monotonic()

    def _run(self, worker: int) -> None:
        while not self._stop.is_set():
            creator = self._pick("creator")
            user = f"load-{worker}"
            try:
                status, token = post(creator, "/create", {"username": user, "password": "pass"})
            except OSError as e:
                self._record(error=f"POST {creator}/create: {e!r}")
                continue
            if status != 200:
                self._record(error=f"POST {creator}/create: HTTP {status} {token[:200]}")
                continue
            verifier = self._pick("verifier")
            try:
                status, body = post(verifier, "/verifier", {"token": token})
            except OSError as e:
                self._record(error=f"POST {verifier}/verifier: {e!r}")
                continue
            kid = token_kid(token)
            if status == 200 and body == user and self._outside_verifier:
                try:
                    found = self._outside_verifier(token)
                except Exception as e:  # noqa: BLE001 - any refusal counts
                    self._record(rejected=f"the outside verifier rejected a token of {creator} (kid {kid}): {e!r}")
                    continue
                if found != user:
                    self._record(error=f"the outside verifier read {found!r} from a token for {user!r}")
                    continue
            if status == 200 and body == user:
                self._record(kid=kid)
            elif status == 401:
                self._record(rejected=f"{verifier} rejected a token of {creator} (kid {kid}): {body[:200]}")
            else:
                self._record(error=f"POST {verifier}/verifier: HTTP {status} {body[:200]}")

    def _record(self, *, kid: str | None = None, rejected: str = "", error: str = "") -> None:
        with self._lock:
            if rejected:
                self.rejected.append(rejected)
            elif error:
                self.errors.append(error)
            else:
                self.verified += 1
                self.kids[kid] += 1

    def summary(self) -> str:
        seconds = (self.stopped or time.monotonic()) - self.started
        with self._lock:
            return (f"{self.verified} tokens created and verified in {seconds:.1f}s "
                    f"({self.verified / max(seconds, 1e-9):.0f}/s), by kid {dict(self.kids)}; "
                    f"{len(self.rejected)} valid tokens rejected, {len(self.errors)} other errors"
                    + "".join(f"\n  rejected: {r}" for r in self.rejected[:10])
                    + "".join(f"\n  error: {e}" for e in self.errors[:10]))
