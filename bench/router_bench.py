#!/usr/bin/env python3
"""Router benchmark: what reading and guarding one request body costs the gateway's router, ours next to the
router of a baseline revision, in one run, under njs's CLI (Debian's njs 0.7.9, the engine nginx's
libnginx-mod-http-js runs it with).

    .venv/bin/python bench/router_bench.py [--baseline REV]      (needs the njs package: make test-packages)

Each body runs three times, each in a process of its own (njs frees nothing within a request, as in nginx),
capped at 4 GiB of address space: the median of the milliseconds the router takes (reading the body: ours
its structure within the router's bounds, the baseline JSON.parse whole; options as Go reads them; the guard;
ours also the conversation's affinity key, as for a model pinned on several instances)
and the process's peak RSS, which includes building the body in the process. It prints one Markdown table for the README.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROUTER = "roles/ollama_gateway/files/ollama_gateway.js"
LIMIT = 4 * 2**30

# name → JavaScript that builds the body (text); every one asks for a pinned model. MANY(n, f) joins f(0..n-1).
BODIES = {
    "a chat, 4 KB": '\'{"model":"llama3.1:8b","messages":[{"role":"user","content":"\' + \'x\'.repeat(4000) + \'"}]}\'',
    "an image, 10 MB": '\'{"model":"llama3.1:8b","prompt":"?","images":["\' + \'A\'.repeat(10000000) + \'"]}\'',
    "80,000 small keys, 0.87 MB, options twice": (
        "'{\"model\":\"llama3.1:8b\",' + many(80000, function (n) { return '\"k' + n + '\":1'; })"
        ' + \',"options":{"num_ctx":131072},"options":{"num_predict":1}}\''
    ),
    "a context of 128k numbers, 0.8 MB": (
        '\'{"model":"llama3.1:8b","context":[\' + many(131072, function (n) { return n; })'
        ' + \'],"options":{"num_predict":1}}\''
    ),
    "16 MiB of small keys (hostile)": (
        "'{\"model\":\"llama3.1:8b\",' + many(1500000, function (n) { return '\"' + n.toString(16) + '\":0'; }) + '}'"
    ),
    "65,000 empty arrays (hostile, under the limit)": (
        '\'{"model":"llama3.1:8b","x":[\' + many(65000, function () { return "[]"; }) + \']}\''
    ),
    "16 MiB of 66-byte strings (hostile, each left out)": (
        '\'{"model":"llama3.1:8b","x":[\' + many(243000, function () { return \'"\' + "s".repeat(66) + \'"\'; }) + \']}\''
    ),
}

PROGRAM = """import gw from 'ollama_gateway.js';
function many(count, item) {
    const parts = [];
    for (let n = 0; n < count; n++) { parts.push(item(n)); }
    return parts.join(',');
}
const text = %s;
const body = Buffer.from(text);
const started = Date.now();
let request;
let read = null;
if (gw.readRequest) {
    // ours: the body as nginx's file gives it, a Buffer
    read = gw.readRequest(body);
    request = read.error ? null : read.request;
    if (read.error) { console.log(JSON.stringify({ ms: Date.now() - started, bytes: body.length, guarded: 'refused, ' + read.status })); }
} else {
    // before: the file read as text (not timed here), parsed whole
    request = JSON.parse(text);
    if (gw.optionsAsGo) { request = gw.optionsAsGo(text, request); }
}
if (request) {
    const notes = gw.guard(request, { model: 'llama3.1:8b', context: 8192 }, 'clamp');
    if (gw.affinity) {
        // and the conversation's key, as for a model pinned on several instances
        const uri = request.messages ? '/api/chat' : '/api/generate';
        gw.affinity({ uri: uri, headersIn: {} }, { model: 'llama3.1:8b', affine: 'a' }, request, read.marks, body);
    }
    console.log(JSON.stringify({ ms: Date.now() - started, bytes: body.length, guarded: notes }));
}
"""


def measure(router: Path, body: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="router-bench-"))
    try:
        shutil.copy(router, work / "ollama_gateway.js")
        (work / "run.mjs").write_text(PROGRAM % body)

        def cap():
            resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

        run = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "njs", "-t", "module", "-p", str(work), str(work / "run.mjs")],
            capture_output=True,
            text=True,
            preexec_fn=cap,
            timeout=600,
        )
        rss_mib = int(run.stderr.strip().splitlines()[-1]) / 1024
        if run.returncode != 0:
            return {"failed": " ".join(run.stderr.split()[:8]), "rss_mib": rss_mib}
        return {**json.loads(run.stdout), "rss_mib": rss_mib}
    finally:
        shutil.rmtree(work)


def median(router: Path, body: str, runs: int = 3) -> dict:
    """The run of median time of RUNS (a busy machine's noise is tens of milliseconds)."""
    seen = [measure(router, body) for _ in range(runs)]
    if any("failed" in m for m in seen):
        return next(m for m in seen if "failed" in m)
    return sorted(seen, key=lambda m: m["ms"])[runs // 2]


def cell(m: dict) -> str:
    if "failed" in m:
        return f"failed ({m['failed']}) at {m['rss_mib']:.0f} MiB"
    guarded = ", ".join(m["guarded"]) if isinstance(m["guarded"], list) else m["guarded"]
    return f"{m['ms']} ms, {m['rss_mib']:.0f} MiB; guarded: {guarded or 'nothing'}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="50d1455", help="git revision of the router to compare with")
    args = p.parse_args()
    if shutil.which("njs") is None:
        sys.exit("njs is missing: apt-get install njs (make test-packages)")
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline.js"
        baseline.write_text(
            subprocess.check_output(["git", "-C", str(REPO), "show", f"{args.baseline}:{ROUTER}"], text=True)
        )
        rows = [(name, median(REPO / ROUTER, body), median(baseline, body)) for name, body in BODIES.items()]
    print(
        f"Router benchmark: njs {subprocess.check_output(['njs', '-v'], text=True).strip()} CLI, one process per body"
    )
    print()
    print(f"| body | ours | baseline ({args.baseline}) |")
    print("|---|---|---|")
    for name, ours, base in rows:
        print(f"| {name} | {cell(ours)} | {cell(base)} |")


if __name__ == "__main__":
    main()
