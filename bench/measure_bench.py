#!/usr/bin/env python3
"""What measuring costs: the gateway with its request log, the body filter that reads each answer's counts
(ollama_gateway.js measure) and mtail reading the log, next to the same gateway with the log off, in one run.

    .venv/bin/python bench/measure_bench.py            (root; nginx-light + njs + mtail, as the role installs)

Both gateways are roles/ollama_gateway/templates/ollama-gateway.conf.j2 rendered by Ansible with the role's
defaults (bench/gateway_bench.py render_ours), each its own nginx (2 workers) on loopback, in front of one
upstream that streams as Ollama's /api/chat does (head with the first chunk, one chunk a token, the final
object with its counts): a small asyncio server here rather than the stand-in, so that 600 streams at once cost
the upstream little and the client little. The two gateways take turns, three rounds each; the table gives the
median of the rounds. It prints one Markdown table for the README.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from gateway_bench import render_ours, role_task, sh, start_nginx_in, wait  # noqa: E402

WORK = REPO / ".cache" / "measure-bench"
UPSTREAM = ("127.0.0.1", 21635)
GATEWAYS = {"measured": 21634, "not measured": 21644}
MTAIL_PORT = 21904
TTFT_S = 0.020
# a stream of 200 tokens at 50/s (a 7B model on one GPU) beside the probes; then 600 of 100 tokens at 10/s each
# (a loaded server), started together, the probes once they all run
ONE = {"streams": 1, "tokens": 200, "rate": 50, "settle": 0.5}
MANY = {"streams": 600, "tokens": 100, "rate": 10, "settle": 2.0}
PROBES = 100
ROUNDS = 5


# ------------------------------------------------------------------------------------ the upstream


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    """/api/chat as Ollama streams it, request after request on a kept-alive connection: the query string's
    tokens and rate (the bench's own knobs) say how long."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next((int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")), 0)
            body = json.loads(await reader.readexactly(length)) if length else {}
            tokens, rate = body.get("bench_tokens", 10), body.get("bench_rate", 50)
            started = time.monotonic()
            await asyncio.sleep(TTFT_S)
            token = b'{"model":"qwen3:0.6b","created_at":"2026-12-04T00:00:00Z","message":{"role":"assistant","content":"tok "},"done":false}\n'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunk(token)
            )
            for _ in range(tokens - 1):
                await asyncio.sleep(1 / rate)
                writer.write(chunk(token))
            total = int((time.monotonic() - started) * 1e9)
            final = {
                "model": "qwen3:0.6b", "created_at": "2026-12-04T00:00:00Z",
                "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                "total_duration": total, "load_duration": 0, "prompt_eval_count": 12,
                "prompt_eval_duration": int(TTFT_S * 1e9), "eval_count": tokens,
                "eval_duration": total - int(TTFT_S * 1e9),
            }  # fmt: skip
            writer.write(chunk(json.dumps(final, separators=(",", ":")).encode() + b"\n") + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve_upstream():
    async def main():
        server = await asyncio.start_server(answer, *UPSTREAM, backlog=2048)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ------------------------------------------------------------------------------------ the client


async def stream(port: int, tokens: int, rate: int) -> tuple[float, int, float]:
    """One streamed chat through the gateway on PORT: (seconds to the first token, tokens, seconds in all)."""
    body = json.dumps(
        {
            "model": "qwen3:0.6b",
            "messages": [{"role": "user", "content": "hi"}],
            "bench_tokens": tokens,
            "bench_rate": rate,
        }
    ).encode()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    got, first = b"", None
    while True:
        more = await reader.read(65536)
        if not more:
            break
        got += more
        if first is None and b'"done":false' in got:
            first = time.perf_counter() - started
    writer.close()
    if not got.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the gateway on {port} answered {got[:200]!r}")
    return first, got.count(b'"done":false'), time.perf_counter() - started


async def phase(port: int, setting: dict) -> dict:
    """SETTING's streams at once, all of them running together; meanwhile PROBES single-token requests one
    after another, whose times to first token are what a new request meets on a gateway that busy (the streams'
    own first tokens say more about 600 connections opening at once). Tokens per second over the streams,
    nginx's CPU seconds per 1,000 tokens, its peak memory."""
    cpu = nginx_cpu(port)
    started = time.perf_counter()
    peak = [nginx_rss(port)]
    streams = [asyncio.create_task(stream(port, setting["tokens"], setting["rate"])) for _ in range(setting["streams"])]
    await asyncio.sleep(setting["settle"])  # every stream under way
    probes = []
    for _ in range(PROBES):
        probes.append(await stream(port, 1, 50))
        peak.append(nginx_rss(port))
    results = await asyncio.gather(*streams)
    wall = time.perf_counter() - started
    tokens = sum(r[1] for r in results)
    assert tokens == setting["streams"] * setting["tokens"], "tokens went missing"
    ttft = sorted(r[0] * 1000 for r in probes)
    return {
        "p50": statistics.median(ttft),
        "p99": ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))],
        "tokens/s": tokens / wall,
        "cpu/1k": (nginx_cpu(port) - cpu) / (tokens + len(probes)) * 1000,
        "rss": max(peak) / 2**20,
    }


async def long_streams(port: int, streams: int = 20, tokens: int = 4000) -> float:
    """MiB nginx's memory grows by while STREAMS answers of TOKENS tokens each stream at once (fast)."""
    base, peak = nginx_rss(port), []
    running = [asyncio.create_task(stream(port, tokens, 2000)) for _ in range(streams)]
    while not all(t.done() for t in running):
        peak.append(nginx_rss(port))
        await asyncio.sleep(0.1)
    await asyncio.gather(*running)
    return (max(peak) - base) / 2**20


def nginx_pids(port: int) -> list[int]:
    """The nginx on PORT: master and workers."""
    pid = int((WORK / str(port) / "nginx.pid").read_text())
    return [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]


def nginx_cpu(port: int) -> float:
    """CPU seconds (user + system) the nginx on PORT has used."""
    ticks = 0
    for p in nginx_pids(port):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def nginx_rss(port: int) -> int:
    """Bytes of memory the nginx on PORT holds (resident)."""
    return sum(
        int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") for p in nginx_pids(port)
    )


# ------------------------------------------------------------------------------------ the gateways


def start_gateways(procs):
    for name, port in GATEWAYS.items():
        work = WORK / str(port)
        (work / "logs").mkdir(parents=True, exist_ok=True)
        log = str(work / "logs" / "requests.log") if name == "measured" else "off"
        # every stream from one address: the per-address limit (256 by default) would refuse the 600
        render_ours(
            work / "gateway.conf", work=work, port=port, instances=[(*UPSTREAM, MANY["streams"])], access_log=log,
            ollama_gateway_client_connections=4096,
        )  # fmt: skip
        start_nginx_in(work, ["gateway.conf"], procs, worker_connections=8192)
        wait(f"http://127.0.0.1:{port}/api/version")
    # mtail reads the measured gateway's log as ollama-gateway-requests.service does
    progs = WORK / "mtail"
    progs.mkdir(exist_ok=True)
    port = GATEWAYS["measured"]
    (progs / "extra.json").write_text(
        json.dumps({"ollama_gateway_access_log": str(WORK / str(port) / "logs" / "requests.log")})
    )
    role_task(
        "template",
        f"src={REPO}/roles/ollama_gateway/templates/ollama-gateway.mtail.j2 dest={progs}/ollama-gateway.mtail",
        progs / "extra.json",
    )
    procs.append(
        subprocess.Popen(
            [
                "mtail",
                "--progs",
                str(progs),
                "--logs",
                str(WORK / str(port) / "logs" / "requests.log"),
                "--address",
                "127.0.0.1",
                "--port",
                str(MTAIL_PORT),
                "--emit_prog_label=false",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    )


def rows_of(runs):
    """The table's rows of time to first token and tokens/s per phase: medians, measured next to not measured."""
    rows = []
    for kind, label in (("one", "1 stream"), ("many", f"{MANY['streams']} streams")):
        med = {
            name: {k: statistics.median(r[k] for r in runs[name][kind]) for k in runs[name][kind][0]}
            for name in GATEWAYS
        }
        m, n = med["measured"], med["not measured"]
        rows += [
            (f"time to first token p50, {label} (ms)", f"{m['p50']:.1f} ({m['p50'] - n['p50']:+.1f})", f"{n['p50']:.1f}", "≤ +1 ms"),
            (f"time to first token p99, {label} (ms)", f"{m['p99']:.1f} ({m['p99'] - n['p99']:+.1f})", f"{n['p99']:.1f}", "≤ +5 ms"),
            (f"tokens/s, {label}", f"{m['tokens/s']:.0f} ({m['tokens/s'] / n['tokens/s']:.3f}×)", f"{n['tokens/s']:.0f}", "≥ 0.97×"),
        ]  # fmt: skip
        if kind == "many":
            rows.append((f"nginx CPU per 1,000 tokens, {label} (ms)", f"{m['cpu/1k'] * 1000:.1f}", f"{n['cpu/1k'] * 1000:.1f}", "—"))  # fmt: skip
    return rows


def report(rows, lines, evals):
    print(
        f"\nMeasuring benchmark, {time.strftime('%Y-%m-%d')}: one upstream streaming as Ollama's /api/chat "
        f"({TTFT_S * 1000:.0f} ms to first token; {ONE['streams']} stream of {ONE['tokens']} tokens at {ONE['rate']}/s, "
        f"then {MANY['streams']} at once of {MANY['tokens']} tokens at {MANY['rate']}/s; time to first token of "
        f"{PROBES} single-token requests sent one after another while they run), "
        f"nginx with 2 workers, median of {ROUNDS} rounds (each gateway first in turn), loopback; `.venv/bin/python bench/measure_bench.py`. "
        f"The measured gateway logged {lines} lines, mtail counted {evals:.0f} tokens of them.\n"
    )
    print("| measure | measured (log, counts, mtail) | not measured (log off) | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (nginx and apt)")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / str(GATEWAYS["measured"]) / "logs" / "requests.log").unlink(missing_ok=True)
    procs = [subprocess.Popen([sys.executable, __file__, "--upstream"])]
    try:
        time.sleep(0.5)
        start_gateways(procs)
        # first, on fresh workers: their resident memory only grows (freed memory is reused, not returned)
        held = {name: asyncio.run(long_streams(port)) for name, port in GATEWAYS.items()}
        runs = {name: {"one": [], "many": []} for name in GATEWAYS}
        for n in range(ROUNDS):
            # each gateway goes first in turn: what the first leaves behind (sockets in TIME_WAIT) is shared
            for name, port in sorted(GATEWAYS.items(), reverse=n % 2 == 1):
                runs[name]["one"].append(asyncio.run(phase(port, ONE)))
                runs[name]["many"].append(asyncio.run(phase(port, MANY)))
        lines = sum(1 for _ in open(WORK / str(GATEWAYS["measured"]) / "logs" / "requests.log"))
        counted = sh("curl", "-s", f"http://127.0.0.1:{MTAIL_PORT}/metrics").stdout
        evals = sum(float(x.split()[-1]) for x in counted.splitlines() if x.startswith("ollama_eval_total{"))
        rows = rows_of(runs)
        rows.append(
            (
                "nginx memory while 20 streams of 4,000 tokens run (MiB added)",
                f"{held['measured']:.0f}",
                f"{held['not measured']:.0f}",
                "— (ollama_gateway_count_tokens)",
            )
        )
        report(rows, lines, evals)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGQUIT if p.args[0] == "nginx" else signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    if sys.argv[1:] == ["--upstream"]:
        serve_upstream()
    else:
        main()
