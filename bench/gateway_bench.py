#!/usr/bin/env python3
"""Gateway benchmark: our nginx config next to the seeds' recipe and plain round robin, in one run.

    .venv/bin/python bench/gateway_bench.py            (root; installs nginx-light + njs if missing)

Everything runs on loopback: two Ollama stand-ins (OLLAMA_NUM_PARALLEL 4 and 2, 20 ms to first
token, 50 tokens/s) and three nginx instances in a private prefix under .cache/bench:
  ours         roles/ollama_gateway/templates/ollama-gateway.conf.j2 rendered by Ansible's own
               template module with the role's defaults
  recipe       the seeds' `upstream { least_conn; server … max_conns=8; }` + bare proxy_pass
  round robin  ours with plain round robin instead of least_conn + max_conns + overflow
It prints one Markdown table for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from importlib.machinery import SourceFileLoader
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "ollama_standin"))
from helpers.ollama_client import burst, call  # noqa: E402

WORK = REPO / ".cache" / "bench"
# Like the seeds' fleet, the instances differ: one runs 4 requests at once, the other 2.
INSTANCES = [("127.0.0.1", 21435, 4), ("127.0.0.1", 21436, 2)]
PORTS = {"ours": 21434, "recipe": 21444, "round robin": 21454}
MODEL = "qwen3:0.6b"


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def ensure_nginx():
    if not Path("/usr/lib/nginx/modules/ngx_http_js_module.so").exists():
        sh("apt-get", "install", "-y", "-q", "nginx-light", "libnginx-mod-http-js")


def launch_standins(procs, work: Path, instances, **knobs):
    """One stand-in `ollama serve` per (host, port, parallel) of INSTANCES from the release archive built in WORK,
    one model store there, on simulated GPU 0, with OLLAMA_STANDIN_* KNOBS over instant loads and pulls; returns
    once each answers."""
    import build_archive

    archive = build_archive.build("0.33.0", work / "release")
    root = work / "ollama"
    shutil.rmtree(root, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    for host, port, parallel in instances:
        env = {
            **os.environ,
            "OLLAMA_HOST": f"{host}:{port}",
            "OLLAMA_MODELS": str(work / "models"),
            "OLLAMA_NUM_PARALLEL": str(parallel),
            "OLLAMA_STANDIN_LOAD_MS": "0",
            "OLLAMA_STANDIN_LOAD_MIB_S": "0",
            "OLLAMA_STANDIN_PULL_MS": "0",
            **knobs,
            "NVML_SIM_SPEC": str(REPO / "tests/gpu_sim/specs/l20x8.json"),
            "CUDA_VISIBLE_DEVICES": "0",
        }
        procs.append(
            subprocess.Popen(
                [str(root / "bin/ollama"), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    for host, port, _ in instances:
        wait(f"http://{host}:{port}/api/version")


def start_standins(procs):
    launch_standins(procs, WORK, INSTANCES, OLLAMA_STANDIN_TTFT_MS="20", OLLAMA_STANDIN_TOKENS_PER_SEC="50")
    for host, port, _ in INSTANCES:
        call(f"http://{host}:{port}/api/pull", {"model": MODEL, "stream": False})
        call(f"http://{host}:{port}/api/generate", {"model": MODEL, "keep_alive": -1})


def wait(url, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if call(url, timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


def role_task(module: str, args: str, extra: Path):
    """One Ansible MODULE with ARGS on this machine, with the gateway role's defaults and vars, then EXTRA's."""
    sh(
        str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-m", module, "-a", args,
        "-e", f"@{REPO}/roles/ollama_gateway/defaults/main.yml", "-e", f"@{REPO}/roles/ollama_gateway/vars/main/gateway.yml",
        "-e", f"@{extra}",
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}, cwd=REPO,
    )  # fmt: skip


def render_ours(
    dest: Path,
    work: Path = WORK,
    port: int = PORTS["ours"],
    instances=INSTANCES,
    access_log: str = "",
    pinned: tuple = (),
    **more,
):
    """The role's real files: its nginx template and fleet.json through Ansible with the role's defaults, the
    upstreams by the drain tool's own renderer, the router as shipped, all in WORK. The bench's instances pin
    nothing, so they serve every model on demand (ollama_gateway_unpinned_models), or every model in PINNED with
    a slot per request they run at once. ACCESS_LOG: the request log ("off": none, so nothing measured); by
    default one in WORK. MORE: other role variables."""
    backends = [
        {
            "host": "bench",
            "instance": f"i{n}",
            "address": h,
            "port": p,
            "max_conns": par,
            "models": list(pinned),
            "slots": {model: par for model in pinned},
            "gpu_label": f"GPU {n}",
            "gpus": [],
        }
        for n, (h, p, par) in enumerate(instances)
    ]
    extra = {
        "_ollama_gateway_backends": backends,
        "__ollama_gateway_dir": str(work),
        "ollama_gateway_port": port,
        "ollama_gateway_listen_address": "127.0.0.1",
        "ollama_gateway_status_listen": "",
        # measured with its JSON line per request
        "ollama_gateway_access_log": access_log or str(work / "logs" / "requests.log"),
        "ollama_gateway_unpinned_models": "reject" if pinned else [f"bench/i{n}" for n in range(len(instances))],
        "_ollama_gateway_tls": False,
        **more,
    }
    (work / "extra.json").write_text(json.dumps(extra))
    role_task(
        "template", f"src={REPO}/roles/ollama_gateway/templates/ollama-gateway.conf.j2 dest={dest}", work / "extra.json"
    )
    role_task(
        "copy", f"content={{{{ __ollama_gateway_fleet | to_nice_json }}}} dest={work}/fleet.json", work / "extra.json"
    )
    drain = SourceFileLoader("drain", str(REPO / "roles/ollama_gateway/files/ollama-gateway-drain")).load_module()
    (work / "upstreams.conf").write_text(drain.render(json.loads((work / "fleet.json").read_text()), set()))
    shutil.copy(REPO / "roles/ollama_gateway/files/ollama_gateway.js", work / "ollama_gateway.js")
    for keys in ("client_keys.map", "admin_keys.map"):
        (work / keys).write_text("")


# The recipe Ollama's maintainers point to (one ollama serve per GPU group behind least_conn: ollama/ollama
# issues #3902, #8430), plus one line: nginx sends the upstream's name as Host, which
# Ollama 0.33 on loopback refuses with 403 (server/routes.go allowedHostsMiddleware; so does the stand-in).
RECIPE = """
upstream recipe_backend {
    least_conn;
%s
}
server {
    listen 127.0.0.1:%d;
    location / {
        proxy_set_header Host localhost;
        proxy_pass http://recipe_backend;
    }
}
"""
# Plain round robin with streaming done right: isolates the balancing policy.
ROUND_ROBIN = """
upstream rr_backend {
%s
    keepalive 64;
}
server {
    listen 127.0.0.1:%d;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host localhost;
    proxy_buffering off;
    location / {
        proxy_pass http://rr_backend;
    }
}
"""


def start_nginx(procs):
    render_ours(WORK / "ours.conf")
    (WORK / "recipe.conf").write_text(
        RECIPE % ("\n".join(f"    server {h}:{p} max_conns=8;" for h, p, _ in INSTANCES), PORTS["recipe"])
    )
    (WORK / "rr.conf").write_text(
        ROUND_ROBIN % ("\n".join(f"    server {h}:{p};" for h, p, _ in INSTANCES), PORTS["round robin"])
    )
    start_nginx_in(WORK, ["ours.conf", "rr.conf", "recipe.conf"], procs)
    for port in PORTS.values():
        wait(f"http://127.0.0.1:{port}/api/version")


def start_nginx_in(work: Path, includes: list[str], procs, worker_connections: int = 4096):
    """nginx with 2 workers and the js module, its prefix WORK, serving the INCLUDES (files in WORK)."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"    include {work / name};" for name in includes)
    (work / "nginx.conf").write_text(f"""
load_module /usr/lib/nginx/modules/ngx_http_js_module.so;
worker_processes 2;
worker_rlimit_nofile {4 * worker_connections};
pid {work}/nginx.pid;
error_log {work}/logs/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    include /etc/nginx/mime.types;
{servers}
}}
""")
    sh("nginx", "-t", "-q", "-p", str(work), "-c", str(work / "nginx.conf"))
    procs.append(subprocess.Popen(["nginx", "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"]))


def url(name, path):
    return (
        f"http://127.0.0.1:{PORTS[name]}{path}"
        if name != "direct"
        else f"http://{INSTANCES[0][0]}:{INSTANCES[0][1]}{path}"
    )


def first_token(target: str, body: dict) -> tuple[int, float]:
    """(status, seconds from the request's first byte to its first streamed line), on a raw socket. Python's
    http.client reads a chunked answer in steps that can wait for the next chunk when the head and the first
    chunk arrive together (as nginx sends them): it showed the gateway 40 ms slower than curl and this do."""
    parts = urlsplit(target)
    data = json.dumps(body).encode()
    request = (
        b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (parts.path.encode(), len(data), data)
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started, got = time.perf_counter(), b""
        conn.sendall(request)
        while True:
            more = conn.recv(65536)
            got += more
            head, _, rest = got.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1]) if head.count(b" ") >= 2 else 0
            # a chunk's size line, then its data up to the line's end; or the whole answer of a refusal
            if not more or (status == 200 and rest.count(b"\n") >= 2) or (status and status != 200):
                return status, time.perf_counter() - started


def ttft(name, n=40, prompt_bytes=0) -> str:
    """Median time to first token (ms), with a prompt of PROMPT_BYTES (an ordinary large body: a long document,
    or an image's size in base64, which the gateway reads before it can route); or the status it answered."""
    body = {"model": MODEL, "prompt": "x" * prompt_bytes or "ttft", "options": {"num_predict": 10}}
    answers = [first_token(url(name, "/api/generate"), body) for _ in range(n)]
    refused = [status for status, _ in answers if status != 200]
    return f"answered {refused[0]}" if refused else f"{statistics.median(t for _, t in answers) * 1000:.1f}"


def throughput(name, seconds=4.0, workers=8):
    """Rounds of `workers` tiny requests at once; direct alternates over the two instances."""
    body = {"model": MODEL, "prompt": "s", "stream": False, "options": {"num_predict": 1}}
    if name == "direct":
        targets = [f"http://{h}:{p}/api/generate" for h, p, _ in INSTANCES] * (workers // len(INSTANCES))
    else:
        targets = [url(name, "/api/generate")] * workers
    done, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        done += sum(1 for a in at_once(targets, body) if a.status == 200)
    return done / (time.monotonic() - started)


def at_once(targets, body):
    import threading

    out = [None] * len(targets)

    def one(i):
        out[i] = call(targets[i], body)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def burst_failures(name, n):
    body = {"model": MODEL, "prompt": "burst", "options": {"num_predict": 20}}
    return sum(1 for a in burst(url(name, "/api/generate"), [body] * n) if a.status != 200)


def mixed_p95(name, seeds=(7, 11, 13), n=100, gap=0.1, p_long=0.1):
    """Open-loop arrivals every 100 ms, one in ten long (150 tokens, 3 s), the rest short (3 tokens):
    p95 latency of the short ones, pooled over three seeded sequences (the same for every setup)."""
    import random
    import threading

    short = []
    for seed in seeds:
        rng = random.Random(seed)  # noqa: S311 - a repeatable workload, not a secret
        kinds = ["long" if rng.random() < p_long else "short" for _ in range(n)]
        times = [None] * n

        def one(i, kinds=kinds, times=times):
            body = {
                "model": MODEL,
                "prompt": kinds[i],
                "stream": False,
                "options": {"num_predict": 150 if kinds[i] == "long" else 3},
            }
            answer = call(url(name, "/api/generate"), body, timeout=120)
            times[i] = answer.total if answer.status == 200 else None

        threads = []
        for i in range(n):
            threads.append(threading.Thread(target=one, args=(i,)))
            threads[-1].start()
            time.sleep(gap)
        for t in threads:
            t.join()
        short += [t for t, k in zip(times, kinds, strict=True) if k == "short" and t is not None]
    return statistics.quantiles(short, n=20)[18] * 1000


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (nginx binds and apt)")
    WORK.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        ensure_nginx()
        start_standins(procs)
        start_nginx(procs)
        slots = sum(par for _, _, par in INSTANCES)
        rows = []
        for size, label, target, n in (
            (0, "", 2, 40),
            (1_000_000, ", 1 MB body", 3, 15),
            (10_000_000, ", 10 MB body", 20, 15),
        ):
            d, o, r = (ttft(name, n, size) for name in ("direct", "ours", "recipe"))
            added = f", +{float(o) - float(d):.1f}" if "answered" not in o + d else ""
            base = f"{r} (+{float(r) - float(d):.1f})" if "answered" not in r + d else r
            rows.append(
                (
                    f"time to first token{label}, median (ms)",
                    f"{o} (direct {d}{added})",
                    base,
                    f"gateway adds ≤ {target} ms",
                )
            )
        td, to, tr = throughput("direct"), throughput("ours"), throughput("recipe")
        rows.append(
            (
                "small requests/s, gateway ÷ direct",
                f"{to / td:.2f} ({to:.0f} vs {td:.0f})",
                f"{tr / td:.2f} ({tr:.0f})",
                "≥ 0.85",
            )
        )
        bo, br = burst_failures("ours", 10 * slots), burst_failures("recipe", 10 * slots)
        rows.append((f"burst of {10 * slots} (10× {slots} slots): non-200", str(bo), str(br), "0"))
        mo, mr = mixed_p95("ours"), mixed_p95("round robin")
        rows.append(
            ("mixed long/short: p95 of short (ms)", f"{mo:.0f}", f"{mr:.0f} (round robin)", "lower than round robin")
        )
        print(
            f"\nGateway benchmark, {time.strftime('%Y-%m-%d')}: 2 stand-in instances (OLLAMA_NUM_PARALLEL 4 and 2), "
            "20 ms to first token, 50 tokens/s, loopback; `.venv/bin/python bench/gateway_bench.py`\n"
        )
        print("| measure | ours | seeds' recipe / baseline | target |")
        print("|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM if p.args[0] != "nginx" else signal.SIGQUIT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
