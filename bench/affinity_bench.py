#!/usr/bin/env python3
"""Conversations through the gateway with affinity (a conversation stays on the instance that holds its prompt)
and with least_conn alone, in one run, on the same simulated fleet, as one table for the README.

    .venv/bin/python bench/affinity_bench.py            (root; nginx-light + njs, as the role installs)

The fleet: four stand-in instances of one model, two slots each, caching prompts as llama-server does under
Ollama 0.33 (tests/ollama_standin/standin_cache.py) and evaluating what is not cached at the stand-in's default
rate (OLLAMA_STANDIN_PROMPT_TOKENS_PER_SEC); one shared store. Two gateways rendered from the role (bench/
gateway_bench.py render_ours) in front of them, one with ollama_gateway_affinity true, one false. Each phase
starts with every runner reloaded (empty caches); then USERS clients at once, each holding conversations of TURNS
turns one after another, reading each answer for a moment (THINK) before the next: a shared system prompt, a first
question of its own (a few of them long documents), the whole history sent again each turn as chat clients do.
Without the pause every client would find a free slot only where its last turn just ended, and least_conn
would keep conversations in place by accident. Time to first token is to the first streamed chunk.
Tokens evaluated: what the instances' caches did not hold (/standin/ps). The most requests an instance had at
once: polled from /standin/stats (in a slot or waiting for one), against its slots.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "ollama_standin"))
from gateway_bench import ensure_nginx, launch_standins, render_ours, start_nginx_in, wait  # noqa: E402
from helpers.ollama_client import call  # noqa: E402

WORK = REPO / ".cache" / "affinity-bench"
MODEL = "qwen3:0.6b"
SLOTS = 2
INSTANCES = [("127.0.0.1", 22435 + n, SLOTS) for n in range(4)]
GATEWAYS = {"affinity": 22434, "least_conn": 22444}
USERS = 8  # the fleet's slots: every request has a slot somewhere
CONVERSATIONS = 3  # per user, one after another
TURNS = 6
ANSWER_TOKENS = 150  # a short chat answer; the history grows by it every turn
SYSTEM_WORDS, FIRST_WORDS, LONG_FIRST_WORDS, TURN_WORDS = 300, 60, 3000, 40
THINK = (0.2, 1.0)  # seconds between an answer and the next turn


def start_standins(procs):
    launch_standins(
        procs, WORK, INSTANCES, OLLAMA_STANDIN_TTFT_MS="20", OLLAMA_STANDIN_TOKENS_PER_SEC="200",
        OLLAMA_STANDIN_KNOBS=str(WORK / "no-knobs.env"),
    )  # fmt: skip
    host, port, _ = INSTANCES[0]
    call(f"http://{host}:{port}/api/pull", {"model": MODEL, "stream": False})  # one store for all four


def start_gateways(procs):
    for name, port in GATEWAYS.items():
        work = WORK / name
        work.mkdir(parents=True, exist_ok=True)
        render_ours(
            work / "ours.conf", work, port, INSTANCES, access_log="off", pinned=(MODEL,),
            ollama_gateway_affinity=name == "affinity",
        )  # fmt: skip
        start_nginx_in(work, ["ours.conf"], procs)
        wait(f"http://127.0.0.1:{port}/api/version")


def reload_runners():
    """Every instance's runner unloaded and loaded again: empty prompt caches."""
    for host, port, _ in INSTANCES:
        call(f"http://{host}:{port}/api/generate", {"model": MODEL, "keep_alive": 0})
        call(f"http://{host}:{port}/api/generate", {"model": MODEL, "keep_alive": -1})


def standin(path: str) -> list[dict]:
    return [call(f"http://{h}:{p}{path}").json() for h, p, _ in INSTANCES]


def evaluated() -> int:
    return sum(m["prompt_cache"]["prompt_tokens_evaluated"] for ps in standin("/standin/ps") for m in ps["models"])


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(n))


VOCABULARY = [f"w{n}" for n in range(5000)]


def chat(port: int, messages: list[dict]) -> tuple[float, str]:
    """One streamed /api/chat: seconds to its first chunk, and the answer."""
    body = json.dumps({"model": MODEL, "messages": messages, "stream": True, "options": {"num_predict": ANSWER_TOKENS}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    conn.request("POST", "/api/chat", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"the gateway on {port} answered {resp.status}: {resp.read()[:200]!r}")
    first, answer = None, []
    for line in resp:
        if first is None:
            first = time.perf_counter() - started
        answer.append(json.loads(line)["message"]["content"])
    conn.close()
    return first, "".join(answer)


def user(port: int, n: int, system: str, times: dict):
    rng = random.Random(1000 + n)  # noqa: S311 - a repeatable workload, not a secret
    for c in range(CONVERSATIONS):
        long_one = c == 0 and n % 4 == 0  # a few conversations start with a long document
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": words(rng, LONG_FIRST_WORDS if long_one else FIRST_WORDS)},
        ]
        for turn in range(TURNS):
            if turn:
                time.sleep(rng.uniform(*THINK))  # the user reads the answer and writes the next question
            ttft, answer = chat(port, messages)
            times["first" if turn == 0 else "later"].append(ttft)
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": words(rng, TURN_WORDS)}]


def busiest(stop: threading.Event, peak: list):
    """The most requests any instance held at once (in a slot or waiting for one), polled every 10 ms."""
    while not stop.is_set():
        for stats in standin("/standin/stats"):
            held = stats["active"].get(MODEL, 0) + stats["waiting"].get(MODEL, 0)
            peak[0] = max(peak[0], held)
        time.sleep(0.01)


def phase(name: str) -> dict:
    reload_runners()
    before = evaluated()
    system = words(random.Random(7), SYSTEM_WORDS)  # noqa: S311 - the same system prompt in both phases
    times = {"first": [], "later": []}
    stop, peak = threading.Event(), [0]
    poller = threading.Thread(target=busiest, args=(stop, peak))
    poller.start()
    started = time.perf_counter()
    users = [threading.Thread(target=user, args=(GATEWAYS[name], n, system, times)) for n in range(USERS)]
    for t in users:
        t.start()
    for t in users:
        t.join()
    seconds = time.perf_counter() - started
    stop.set()
    poller.join()
    requests = len(times["first"]) + len(times["later"])
    return {
        "routing": name,
        "first": times["first"],
        "later": times["later"],
        "evaluated": evaluated() - before,
        "rps": requests / seconds,
        "requests": requests,
        "peak": peak[0],
    }


def pct(values: list[float], q: float) -> float:
    return sorted(values)[max(0, round(q * len(values)) - 1)]


def table(rows: list[dict]) -> str:
    lines = [
        "| routing | first turns: TTFT p50 / p95 | later turns: TTFT p50 / p95 | prompt tokens evaluated | requests/s "
        "| most requests on one instance at once (slots) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['routing']} | {statistics.median(r['first']) * 1000:.0f} / {pct(r['first'], 0.95) * 1000:.0f} ms "
            f"| {statistics.median(r['later']) * 1000:.0f} / {pct(r['later'], 0.95) * 1000:.0f} ms "
            f"| {r['evaluated']:,} | {r['rps']:.2f} | {r['peak']} ({SLOTS}) |"
        )
    ours, base = rows
    lines.append("")
    lines.append(
        f"Affinity against least_conn: later-turn TTFT p50 {statistics.median(ours['later']) / statistics.median(base['later']):.2f}×, "  # noqa: E501
        f"requests/s {ours['rps'] / base['rps']:.2f}×, prompt tokens evaluated {ours['evaluated'] / base['evaluated']:.2f}×."
    )
    return "\n".join(lines)


def main():
    ensure_nginx()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    procs = []
    try:
        start_standins(procs)
        start_gateways(procs)
        rows = [phase("affinity"), phase("least_conn")]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=10)
    (WORK / "results.json").write_text(json.dumps(rows, indent=1))
    print(
        f"Affinity benchmark, {time.strftime('%Y-%m-%d')}: {len(INSTANCES)} stand-in instances of {MODEL} with "
        f"{SLOTS} slots each, {USERS} clients at once, {USERS * CONVERSATIONS} conversations of {TURNS} turns "
        f"({rows[0]['requests']} requests a phase); `.venv/bin/python bench/affinity_bench.py`\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
