#!/usr/bin/env python3
"""An API-compatible stand-in for `ollama`, for tests and the sandbox only.

It speaks Ollama's HTTP API and the CLI verbs the roles use, honours the same environment
(OLLAMA_HOST, OLLAMA_MODELS, OLLAMA_NUM_PARALLEL, OLLAMA_MAX_QUEUE, OLLAMA_KEEP_ALIVE,
OLLAMA_CONTEXT_LENGTH, OLLAMA_KV_CACHE_TYPE, OLLAMA_LOAD_TIMEOUT, OLLAMA_MAX_LOADED_MODELS,
CUDA_VISIBLE_DEVICES) and reads the simulated GPUs from the same spec as the fake NVML library.

Behaviour that follows Ollama v0.33.0-rc2 (a comment above each names the function):
- GET /api/ps answers exactly Ollama's fields per model: name, model, size, digest, details, expires_at,
  size_vram, context_length; longest remaining keep-alive first (server/routes.go PsHandler,
  api/types.go ProcessModelResponse).
- Two queues. OLLAMA_MAX_QUEUE bounds only the requests waiting in the scheduler for a load or a reload;
  beyond it 503 "server busy, ..." (server/sched.go getRunner, processPending). Requests to a loaded model
  wait for one of its slots without any bound (llm/llama_server.go, the runner's semaphore).
- Slots: OLLAMA_NUM_PARALLEL, but one for embedding models (no completion capability) and for the
  architectures mllama, qwen3vl, qwen35, qwen3next, lfm2, nemotron_h and their variants, whose KV cache is
  then sized for one (server/sched.go load; server/images.go ggufCapabilities).
- Context: options.num_ctx, else OLLAMA_CONTEXT_LENGTH, else by visible VRAM (< 23 GiB 4096, 32768, from
  47 GiB 262144), at least 4 (2048 for vision models), capped at the training context (server/routes.go
  modelOptions, server/sched.go getRunner and effectiveContext).
- Reload: a request whose runner options (that context, num_batch, num_gpu, main_gpu, use_mmap, num_thread)
  differ from the loaded runner's waits until the runner has no requests, then the model is unloaded and
  loaded again: load time paid again, placement recomputed (server/sched.go needsReload, processPending).
  keep_alive 0 unloads once the last request finishes; with an empty prompt it unloads without loading
  (server/sched.go processCompleted, expireRunner; server/routes.go GenerateHandler, ChatHandler).
- Placement and eviction (server/sched.go Scheduler.load, selectLlamaServerPlacement, updateFreeSpace,
  findRunnerToUnload; llm/llama_server.go PredictServerVRAM): free memory is each GPU's less what the loaded
  runners hold on it. A model goes to the GPU with the most free memory whose 80 % holds its prediction (not
  with OLLAMA_SCHED_SPREAD), else over all visible GPUs; num_gpu 0 runs on CPU. With models loaded, one whose
  prediction exceeds 80 % of the free memory where it goes, or whose weights + KV cache + compute buffer do not
  fit beside llama.cpp's 1 GiB margin per device, first expires the runner findRunnerToUnload picks (shortest
  keep_alive, then model path; -1 protects nothing) and looks again; the first model loads whatever it takes,
  its rest on the CPU (size_vram < size). At most OLLAMA_MAX_LOADED_MODELS (0: 3 per GPU) models; the next one
  expires one the same way. Each eviction is logged ("resetting model to expire immediately to make room",
  model and the one loading), as Ollama logs it at debug level.
- Load time: a runner start plus the weights streamed from disk to VRAM; OLLAMA_LOAD_TIMEOUT fails a start
  that shows no progress (llm/llama_server.go WaitUntilRunning).
- On a loopback listener, a request whose Host is not local is refused with 403 (server/routes.go,
  allowedHostsMiddleware); request keys match case-insensitively and a value of the wrong type is answered
  400 with Go's json error (api/types.go, encoding/json), an option of the wrong type 500 (api/types.go
  Options.FromMap); a handler that fails answers 500 instead of dropping the connection (gin's Recovery), so
  nginx never sees a healthy instance fail.
- Pulls speak the registry protocol (server/images.go PullModel, pullModelManifest, makeRequest;
  server/download.go downloadBlob): a name whose host is not registry.ollama.ai, such as
  10.213.0.23:5000/library/llama3.1:8b, is fetched from https://HOST/v2/<ns>/<model>/manifests/<tag> with
  the system's trust store, http when the request says "insecure": true (`ollama pull --insecure`), then each
  layer and the config from .../blobs/<digest> unless blobs/ has it, each checked against its digest
  ("digest mismatch, file must be downloaded again: ..."), then the manifest's bytes as received; 404 is
  "pull model manifest: file does not exist", a failed connection Go's `Get "URL": dial tcp ...` text.
  The store is Ollama's: manifests/<host>/<ns>/<model>/<tag>, blobs/sha256-<hex> (types/model/name.go,
  manifest/paths.go); /api/tags shows other hosts' models by their full name.
- /api/copy copies the manifest's bytes (server/images.go CopyModel); /api/delete removes the manifest and
  then the blobs no remaining manifest references (manifest/manifest.go RemoveLayers); both answer 200 with
  no body, 404 `model "x" not found` and `model 'x' not found` (server/routes.go CopyHandler, DeleteHandler).

Not Ollama's, for tests only: every response carries X-Ollama-Instance (host:port) and X-Ollama-Gpus (the
UUIDs it may use), so a test behind a gateway can tell who answered. GET /standin/ps: the instance
(host:port), its GPUs, the OLLAMA_* and CUDA_VISIBLE_DEVICES environment the process got, the knobs in
effect, the free memory the scheduler sees per GPU, and per loaded model its GPUs, VRAM per GPU, slots (the
effective parallel), context, active and waiting requests. GET /standin/stats: scheduler queue and slot counts, so tests wait on state instead of sleeping.

Simplifications: a catalogue model's weights blob is a placeholder of PLACEHOLDER_BYTES (1 MiB) pseudo-random
bytes while its manifest carries the real size (catalogue_image), so pull progress reports the descriptor's
size as total and scales completed to it, where Ollama reports the blob's Content-Length; a blob is fetched
with one GET after a HEAD, not in Range parts, and is not resumed (its partial file goes when a pull fails);
/api/tags `size` sums the layers without the config's few hundred bytes. The scheduler's OOM retry (every
runner evicted after a load that crashed) and its automatic num_batch are not modelled.

Prompt cache (standin_cache.py): llama-server's slots as Ollama 0.33 runs them; a conversation's next turn on the
same instance evaluates only its new tokens, prompt_eval_count counts them all (cached ones too, as
llm/llama_server.go does), /api/generate returns `context`, and /standin/ps shows each runner's cache.

Knobs that exist only here (OLLAMA_STANDIN_*): TTFT_MS (50), TOKENS_PER_SEC (50), TOKENS (24, answer length
when num_predict is unset), PROMPT_TOKENS_PER_SEC (2000: prompt tokens not in the cache are evaluated at this
rate after TTFT_MS; 0 = instant), CACHE_RAM_MIB (8192, llama-server's --cache-ram), LOAD_MS (200, runner start), LOAD_MIB_S (1536, weights from disk to VRAM in MiB/s,
0 = instant: a 70B Q4 of ~40 GiB loads in ~27 s), PULL_MS (100: the blobs a pull fetches arrive over this time,
shared by descriptor size; a pull that finds every blob stored takes none of it), PUBLIC_REGISTRY (a base URL
such as http://10.213.0.1:5001, e.g. tests/helpers/public_registry.py, that plays registry.ollama.ai for library
models; unset, they come from the catalogue in process, the same bytes). The environment sets them, else the
file named by OLLAMA_STANDIN_KNOBS (default /etc/ollama-standin.env, KEY=VALUE lines): on test hosts the
instances run as systemd units whose environment the toolkit controls.
"""

from __future__ import annotations

import json
import os
import sys
from urllib import error as urlerror
from urllib import request as urlrequest

from standin_config import VERSION, Config, dumps, parse_host
from standin_routes import serve


# ----------------------------------------------------------------- CLI
def client(path: str, body: dict | None = None, method: str | None = None):
    host, port = parse_host(os.environ.get("OLLAMA_HOST"))
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"
    data = dumps(body).encode() if body is not None else None
    req = urlrequest.Request(
        url, data=data, method=method or ("POST" if data else "GET"), headers={"Content-Type": "application/json"}
    )
    return urlrequest.urlopen(req, timeout=600)


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return ""


USAGE = (
    "Usage:\n  ollama [flags]\n  ollama [command]\n\nAvailable Commands:\n"
    "  serve  Start ollama\n  pull   Pull a model from a registry (--insecure: http)\n"
    "  list   List models\n  ps     List running models\n\nFlags:\n  -v, --version"
)


def cmd_version(_args) -> int:
    try:
        server = json.load(client("/api/version"))["version"]
        print(f"ollama version is {server}")
        if server != VERSION:
            print(f"Warning: client version is {VERSION}")
    except (urlerror.URLError, OSError):
        print("Warning: could not connect to a running Ollama instance")
        print(f"Warning: client version is {VERSION}")
    return 0


def cmd_serve(_args) -> int:
    serve(Config())
    return 0


def cmd_list(_args) -> int:
    models = json.load(client("/api/tags"))["models"]
    print(f"{'NAME':<32}{'ID':<16}{'SIZE':<10}MODIFIED")
    for m in models:
        print(f"{m['name']:<32}{m['digest'][:12]:<16}{human(m['size']):<10}recently")
    return 0


def cmd_ps(_args) -> int:
    models = json.load(client("/api/ps"))["models"]
    print(f"{'NAME':<28}{'ID':<16}{'SIZE':<10}{'PROCESSOR':<18}{'CONTEXT':<10}UNTIL")
    for m in models:
        share = round(100 * m["size_vram"] / m["size"]) if m["size"] else 0
        proc = "100% GPU" if share == 100 else "100% CPU" if share == 0 else f"{100 - share}%/{share}% CPU/GPU"
        print(
            f"{m['name']:<28}{m['digest'][:12]:<16}{human(m['size']):<10}{proc:<18}"
            f"{m['context_length']:<10}{m['expires_at']}"
        )
    return 0


def cmd_pull(args) -> int:
    names = [a for a in args if a != "--insecure"]
    if len(names) != 1:
        print(f"Error: accepts 1 arg(s), received {len(names)}", file=sys.stderr)
        return 1
    body = {"model": names[0], "insecure": "--insecure" in args, "stream": True}
    with client("/api/pull", body) as resp:
        for line in resp:
            event = json.loads(line)
            if "error" in event:
                print(f"Error: {event['error']}", file=sys.stderr)
                return 1
            if "total" in event:
                print(f"{event['status']}: {human(event['completed'])}/{human(event['total'])}")
            else:
                print(event["status"])
    return 0


COMMANDS = {"-v": cmd_version, "--version": cmd_version, "serve": cmd_serve, "list": cmd_list, "ls": cmd_list}
COMMANDS |= {"ps": cmd_ps, "pull": cmd_pull}


def cli(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(
            f'Error: unknown command "{argv[0]}" for "ollama" (the stand-in simulates serve, pull, list, ps)',
            file=sys.stderr,
        )
        return 1
    try:
        return command(argv[1:])
    except urlerror.HTTPError as exc:
        print(f"Error: {json.load(exc).get('error', exc.reason)}", file=sys.stderr)
        return 1
    except (urlerror.URLError, ConnectionError) as exc:
        print(f"Error: could not connect to ollama server, run 'ollama serve' to start it ({exc})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
