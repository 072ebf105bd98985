"""A steady, bounded mixed load (streams and short requests) through the gateway, with counts.

Traffic goes only to the URL given (a test host). Stops on stop() or after max_requests."""

from __future__ import annotations

import http.client
import math
import threading
import time
from dataclasses import dataclass, field

from .ollama_client import call


@dataclass
class Outcome:
    kind: str  # "stream" or "short"
    started: float
    ended: float
    result: str  # ok, failed (no answer or non-200), cut (stream ended without done), hung (timed out)
    status: int = 0
    instance: str = ""
    ttft: float | None = None  # streams: seconds from sending to the first line (time to first token)
    load: float | None = None  # answered in full: its load_duration in seconds (waiting for a model to load)
    worker: int = 0  # the worker that sent it (with conversations: whose conversation)


@dataclass
class Load:
    url: str
    model: str
    workers: int = 4
    timeout: float = 20
    max_requests: int = 5000
    key: str | None = None  # API key, when the gateway asks for one
    cafile: str | None = None  # CA of a TLS gateway
    pause_after_failure: float = 0  # seconds a worker waits after a failed request, as a client retrying would
    # each worker's prompts one conversation (a shared start longer than the 256 bytes the gateway keys a prompt by),
    # which the gateway keeps on one instance; else every request its own
    conversations: bool = False
    outcomes: list = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(self.workers)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)

    def _work(self, worker):
        n = 0
        while not self._stop.is_set() and len(self.outcomes) < self.max_requests:
            stream = (n + worker) % 2 == 0
            n += 1
            opening = f"conversation {worker}: " + "tell me more about it. " * 12 if self.conversations else ""
            body = {
                "model": self.model,
                "prompt": f"{opening}load {worker}/{n}",
                "stream": stream,
                "options": {"num_predict": 20 if stream else 2},
            }
            started = time.monotonic()
            try:
                answer = call(f"{self.url}/api/generate", body, key=self.key, cafile=self.cafile, timeout=self.timeout)
                if answer.status != 200:
                    result = "failed"
                elif stream and not (answer.lines() and answer.lines()[-1].get("done")):
                    result = "cut"
                else:
                    result = "ok"
                status, instance = answer.status, answer.headers.get("x-ollama-instance", "")
                ttft = answer.first_byte if stream and result == "ok" else None
                final = (answer.lines()[-1] if stream else answer.json()) if result == "ok" else {}
                load = final.get("load_duration", 0) / 1e9 if result == "ok" else None
            except TimeoutError:  # socket timeout: the request hung
                result, status, instance, ttft, load = "hung", 0, "", None, None
            except (
                OSError,
                ValueError,
                http.client.HTTPException,
            ) as exc:  # reset or a half-sent line: the stream was cut
                result, status, instance, ttft, load = (
                    ("cut" if stream else "failed"),
                    0,
                    type(exc).__name__,
                    None,
                    None,
                )
            with self._lock:
                self.outcomes.append(
                    Outcome(
                        "stream" if stream else "short",
                        started,
                        time.monotonic(),
                        result,
                        status,
                        instance,
                        ttft,
                        load,
                        worker,
                    )  # fmt: skip
                )
            if result != "ok" and self.pause_after_failure:
                self._stop.wait(self.pause_after_failure)

    def count(self, result=None, since=None, until=None, kind=None):
        return sum(
            1
            for o in list(self.outcomes)
            if (result is None or o.result == result)
            and (kind is None or o.kind == kind)
            and (since is None or o.started >= since)
            and (until is None or o.started <= until)
        )

    def ttft(self, quantile, since=None, until=None):
        """Time to first token of the streams answered in full that started in [since, until]: the
        QUANTILE (0.99 for p99, nearest rank), in seconds; None without any."""
        seen = sorted(
            o.ttft
            for o in list(self.outcomes)
            if o.ttft is not None and (since is None or o.started >= since) and (until is None or o.started <= until)
        )
        if not seen:
            return None
        return seen[min(len(seen) - 1, max(0, math.ceil(quantile * len(seen)) - 1))]
