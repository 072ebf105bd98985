"""The stand-in's settings: Ollama's environment (envconfig/config.go, v0.33.0-rc2), the simulated GPUs
CUDA would show it, the OLLAMA_STANDIN_* knobs, and its log lines."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

VERSION = "@VERSION@"  # replaced when the archive is built
HERE = Path(__file__).resolve().parent
GIB = 1024**3
MIB = 1024**2
# llama.cpp --fit keeps this much free on every device (LLAMA_ARG_FIT_TARGET's default, 1024 MiB, which Ollama
# v0.33 passes to the llama-server it starts).
FIT_MARGIN = 1024 * MIB
KNOBS_FILE = "/etc/ollama-standin.env"


# ----------------------------------------------------------------- settings
def parse_duration(value: str | None, default: float) -> float:
    """Ollama's durations: Go strings ("5m", "1h30m"), plain seconds, negative = forever."""
    if value is None or value.strip() == "":
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = re.findall(r"(-?[\d.]+)(ms|s|m|h)", value)
        if not parts or "".join(n + u for n, u in parts) != value:
            return default
        unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        seconds = sum(float(n) * unit[u] for n, u in parts)
    return float("inf") if seconds < 0 else seconds


def parse_host(value: str | None) -> tuple[str, int]:
    value = (value or "").strip() or "127.0.0.1:11434"
    value = re.sub(r"^https?://", "", value).rstrip("/")
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "")
    return (host.strip("[]") or "127.0.0.1"), int(port or 11434)


def env_int(env, name: str, default: int) -> int:
    try:
        return int(env.get(name) or default)
    except ValueError:
        return default


def read_knobs(path: str) -> dict[str, str]:
    """The OLLAMA_STANDIN_* lines of a KEY=VALUE file (# comments, optional quotes); other lines are ignored."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    knobs = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if sep and key.startswith("OLLAMA_STANDIN_") and key != "OLLAMA_STANDIN_KNOBS":
            knobs[key] = value
        else:
            log("WARN", "knobs file: ignored a line that sets no OLLAMA_STANDIN_* knob", path=path, line=line)
    return knobs


class Config:
    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.host, self.port = parse_host(env.get("OLLAMA_HOST"))
        self.models = Path(env.get("OLLAMA_MODELS") or Path.home() / ".ollama/models")
        self.num_parallel = max(1, env_int(env, "OLLAMA_NUM_PARALLEL", 1))
        self.max_queue = env_int(env, "OLLAMA_MAX_QUEUE", 512)
        self.keep_alive = parse_duration(env.get("OLLAMA_KEEP_ALIVE"), 300)
        self.load_timeout = parse_duration(env.get("OLLAMA_LOAD_TIMEOUT"), 300)
        if self.load_timeout <= 0:
            self.load_timeout = float("inf")
        self.context_length = env_int(env, "OLLAMA_CONTEXT_LENGTH", 0)
        # envconfig NoCloud: strconv.ParseBool's true values (no server config file here)
        self.no_cloud = (env.get("OLLAMA_NO_CLOUD") or "").strip().lower() in ("1", "t", "true")
        self.max_loaded = env_int(env, "OLLAMA_MAX_LOADED_MODELS", 0)
        # envconfig SchedSpread: every model over all visible GPUs, never one GPU alone (strconv.ParseBool)
        self.sched_spread = (env.get("OLLAMA_SCHED_SPREAD") or "").strip().lower() in ("1", "t", "true")
        self.kv_bytes = {"q8_0": 1.0625, "q4_0": 0.5625}.get(env.get("OLLAMA_KV_CACHE_TYPE", ""), 2)
        # The stand-in's own knobs: the file first (test hosts' units get only what the toolkit sets),
        # the process environment over it.
        self.knobs_file = env.get("OLLAMA_STANDIN_KNOBS") or KNOBS_FILE
        self.knobs = {
            **read_knobs(self.knobs_file),
            **{k: v for k, v in env.items() if k.startswith("OLLAMA_STANDIN_") and k != "OLLAMA_STANDIN_KNOBS"},
        }
        self.ttft = env_int(self.knobs, "OLLAMA_STANDIN_TTFT_MS", 50) / 1000
        self.tps = max(1, env_int(self.knobs, "OLLAMA_STANDIN_TOKENS_PER_SEC", 50))
        self.tokens = env_int(self.knobs, "OLLAMA_STANDIN_TOKENS", 24)
        # prompt evaluation: tokens per second for the tokens not in the prompt cache (0: no time), after TTFT_MS;
        # 2000 is a mid-size model on one data-centre GPU
        self.prompt_tps = max(0, env_int(self.knobs, "OLLAMA_STANDIN_PROMPT_TOKENS_PER_SEC", 2000))
        # llama-server's --cache-ram (MiB of host memory for prompts saved from slots), which Ollama leaves at 8192
        self.cache_ram_mib = max(0, env_int(self.knobs, "OLLAMA_STANDIN_CACHE_RAM_MIB", 8192))
        self.load_time = env_int(self.knobs, "OLLAMA_STANDIN_LOAD_MS", 200) / 1000
        self.load_mib_s = max(0, env_int(self.knobs, "OLLAMA_STANDIN_LOAD_MIB_S", 1536))
        self.pull_time = env_int(self.knobs, "OLLAMA_STANDIN_PULL_MS", 100) / 1000
        # plays registry.ollama.ai when set (a base URL such as http://10.213.0.1:5001); else pulls of library
        # models are served from the catalogue in process
        self.public_registry = self.knobs.get("OLLAMA_STANDIN_PUBLIC_REGISTRY", "").strip().rstrip("/")
        self.gpus = visible_gpus(env)
        if not self.max_loaded:
            self.max_loaded = 3 * max(1, len(self.gpus))

    def prompt_seconds(self, evaluated: int) -> float:
        """Time to the first token: TTFT_MS, then the prompt's tokens not found in the cache."""
        return self.ttft + (evaluated / self.prompt_tps if self.prompt_tps else 0)

    def load_seconds(self, size: int) -> float:
        """A load: the runner's start, then the weights from disk to VRAM at LOAD_MIB_S (0: at once)."""
        return self.load_time + (size / MIB / self.load_mib_s if self.load_mib_s else 0)


def visible_gpus(env) -> list[dict]:
    """The GPUs CUDA would show this process: the spec's, filtered by CUDA_VISIBLE_DEVICES."""
    spec_path = env.get("NVML_SIM_SPEC") or "/etc/nvidia-sim/gpus.json"
    try:
        spec = json.loads(Path(spec_path).read_text())
    except (OSError, ValueError):
        return []
    if spec.get("init_error"):
        return []
    devices = []
    for index, gpu in enumerate(spec.get("gpus", [])):
        devices.append({**gpu, "index": index})
        for mig in gpu.get("mig_devices", []) if gpu.get("mig_mode") else []:
            devices.append({**mig, "index": None, "parent": gpu["uuid"]})
    wanted = env.get("CUDA_VISIBLE_DEVICES")
    if wanted is None:
        return [d for d in devices if d["index"] is not None]
    chosen = []
    for token in [t.strip() for t in wanted.split(",") if t.strip()]:
        if token == "-1":
            return []
        match = [d for d in devices if d["uuid"] == token or str(d["index"]) == token]
        if not match:
            break  # CUDA stops at the first invalid entry
        chosen.append(match[0])
    return chosen


def dumps(value) -> str:
    """JSON as Go's encoder writes it: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def log(level: str, msg: str, **fields) -> None:
    extra = " ".join(f"{k}={dumps(v) if isinstance(v, str) and ' ' in v else v}" for k, v in fields.items())
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    print(f'time={stamp} level={level} source=standin msg="{msg}" {extra}'.rstrip(), file=sys.stderr, flush=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
