"""A small client for Ollama's API through the gateway or straight to an instance, for tests and bench.

Standard library only; traffic goes only to the URL it is given (loopback or the test subnet)."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes = b""
    first_byte: float = 0.0  # seconds from sending to the first body chunk
    total: float = 0.0
    chunk_times: list = field(default_factory=list)  # arrival of each NDJSON line, from sending

    def json(self):
        return json.loads(self.body)

    def lines(self):
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


def _connection(url: str, timeout: float, cafile: str | None):
    parts = urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=cafile)
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def call(
    url: str,
    body: dict | None = None,
    key: str | None = None,
    timeout: float = 60,
    cafile: str | None = None,
    method: str | None = None,
    headers: dict | None = None,
) -> Answer:
    """One request; reads the answer line by line, noting when each line arrived. HEADERS add to or
    replace the defaults (a Host header replaces the URL's)."""
    parts = urlsplit(url)
    conn = _connection(url, timeout, cafile)
    headers = {"Content-Type": "application/json", **(headers or {})}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    started = time.perf_counter()
    try:
        conn.request(method or ("POST" if data is not None else "GET"), parts.path or "/", body=data, headers=headers)
        resp = conn.getresponse()
        chunks, times = [], []
        while True:
            line = resp.readline()
            if not line:
                break
            times.append(time.perf_counter() - started)
            chunks.append(line)
        return Answer(
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            b"".join(chunks),
            times[0] if times else time.perf_counter() - started,
            time.perf_counter() - started,
            times,
        )
    finally:
        conn.close()


def burst(
    url: str, bodies: list[dict], key: str | None = None, cafile: str | None = None, timeout: float = 120
) -> list[Answer]:
    """Send every body at once, one thread each; answers in the order of bodies."""
    answers: list[Answer | None] = [None] * len(bodies)
    gate = threading.Barrier(len(bodies))

    def one(i):
        gate.wait()
        try:
            answers[i] = call(url, bodies[i], key=key, cafile=cafile, timeout=timeout)
        except OSError as exc:  # refused, reset: count it as a failure, not a crash
            answers[i] = Answer(0, {"error": str(exc)})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return answers  # type: ignore[return-value]
