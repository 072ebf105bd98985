"""The scheduler: runners, their slots and placement, the queue, loads, reloads and evictions
(server/sched.go, llm/llama_server.go, v0.33.0-rc2)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

from standin_cache import PromptCache
from standin_config import FIT_MARGIN, GIB, MIB, Config, dumps, log
from standin_store import Store

ERR_BUSY = "server busy, please try again.  maximum pending requests exceeded"
# server/sched.go load (v0.33.0-rc2): architectures (Config.ModelFamily) that are not safe with num_parallel > 1.
SINGLE_SLOT_FAMILIES = (
    "mllama",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "qwen3next",
    "lfm2",
    "lfm2moe",
    "nemotron_h",
    "nemotron_h_moe",
    "nemotron_h_omni",
)


# ----------------------------------------------------------------- scheduler
class Busy(Exception):
    pass


class LoadFailed(Exception):
    pass


def capabilities(entry: dict) -> list[str]:
    return entry.get("capabilities", ["completion"])


def model_parallel(num_parallel: int, entry: dict) -> int:
    """The slots a model gets (server/sched.go Scheduler.load): embedding models, which lack the completion
    capability (server/images.go ggufCapabilities: a GGUF with pooling_type), and the architectures in
    SINGLE_SLOT_FAMILIES are loaded with numParallel 1; only the latter is logged."""
    parallel = max(num_parallel, 1)
    if "completion" not in capabilities(entry):
        parallel = 1
    family = entry.get("family", "")
    if family in SINGLE_SLOT_FAMILIES and parallel != 1:
        parallel = 1
        log("WARN", "model architecture does not currently support parallel requests", architecture=family)
    return parallel


# server/sched.go Scheduler.load and bestSingleGPUFit: "Use 80% of free memory as threshold to leave headroom."
SCHEDULER_SHARE = 0.8


def model_info(entry: dict) -> tuple[dict, str]:
    info = entry.get("model_info", {})
    return info, info.get("general.architecture", "")


def predicted_vram(model: dict, num_ctx: int, parallel: int) -> int:
    """What Ollama predicts a load takes before it places it (llm/llama_server.go PredictServerVRAM): the
    weights file plus an f16 KV cache of 2 x layers x the fewest KV heads x (embedding / the most heads) x the
    context, num_ctx (already capped at the training context) x slots (server/sched.go
    effectiveLlamaServerContext). Whatever OLLAMA_KV_CACHE_TYPE says, and without compute buffers."""
    info, arch = model_info(model["entry"])

    def counts(name):
        value = info.get(f"{arch}.{name}", 1)
        return [int(v) for v in value] if isinstance(value, list) else [int(value)]

    heads, kv_heads = max(counts("attention.head_count")) or 1, min(counts("attention.head_count_kv")) or 1
    head_dim = int(info.get(f"{arch}.embedding_length", 0)) // heads
    layers = int(info.get(f"{arch}.block_count", 0))
    return model["size"] + 2 * layers * kv_heads * head_dim * num_ctx * max(parallel, 1) * 2


def kv_bytes_per_token(cfg: Config, model: dict) -> float:
    """The KV cache one token takes, at OLLAMA_KV_CACHE_TYPE's bytes."""
    info, arch = model_info(model["entry"])
    layers = int(info.get(f"{arch}.block_count", 0))
    heads = int(info.get(f"{arch}.attention.head_count", 1) or 1)
    kv_heads = int(info.get(f"{arch}.attention.head_count_kv", heads) or heads)
    head_dim = int(info.get(f"{arch}.embedding_length", 0)) // heads if heads else 0
    k = int(info.get(f"{arch}.attention.key_length", head_dim))
    v = int(info.get(f"{arch}.attention.value_length", head_dim))
    return layers * kv_heads * (k + v) * cfg.kv_bytes


def runner_bytes(cfg: Config, model: dict, num_ctx: int, parallel: int) -> int:
    """What a loaded runner allocates: weights + KV cache (context x slots) + a compute buffer
    (llm/llama_server.go: llama-server gets -c num_ctx*np -np np)."""
    return model["size"] + int(num_ctx * parallel * kv_bytes_per_token(cfg, model)) + 256 * MIB


class Runner:
    """One loaded model: its options, slots, context and the VRAM it holds on each GPU (server/sched.go
    runnerRef; llama.VRAMByGPU)."""

    def __init__(self, cfg: Config, model: dict, opts: dict, parallel: int, vram_by_gpu: dict[str, int]):
        self.name = model["name"]
        self.model = model
        # server/sched.go ByDurationAndName breaks ties by the model's path: its weights blob
        self.path = next(
            (
                layer["digest"]
                for layer in model["manifest"].get("layers", [])
                if layer.get("mediaType", "").endswith(".model")
            ),
            self.name,
        )
        self.opts = opts
        self.num_ctx = opts["num_ctx"]
        self.parallel = parallel
        # llm/llama_server.go NewLlamaServerRunner: semaphore.NewWeighted(numParallel); Completion, Chat and
        # Embedding wait on it for as long as it takes.
        self.slots = threading.Semaphore(parallel)
        # the KV cache of each slot, and what llama-server keeps of them in host memory
        self.cache = PromptCache(parallel, self.num_ctx, int(kv_bytes_per_token(cfg, model)), cfg.cache_ram_mib * MIB)
        self.refs = 0  # requests that hold the runner, in a slot or waiting for one (runnerRef.refCount)
        self.active = 0  # in a slot
        self.waiting = 0  # waiting for a slot
        self.expiring = False  # to unload once refs reaches 0
        self.keep_alive = cfg.keep_alive
        self.expires = time.monotonic() + cfg.keep_alive
        self.size = runner_bytes(cfg, model, self.num_ctx, parallel)
        self.vram_by_gpu = vram_by_gpu
        self.size_vram = sum(vram_by_gpu.values())
        self.gpus = [uuid for uuid, held in vram_by_gpu.items() if held]

    def needs_reload(self, want: dict) -> bool:
        """server/sched.go runnerRef.needsReload: the runner options differ (num_ctx already capped at the
        training context); a request's num_gpu below 0 (automatic) matches any."""
        old, new = dict(self.opts), dict(want)
        if new["num_gpu"] < 0:
            old["num_gpu"] = new["num_gpu"] = -1
        return old != new


class Pending:
    """A request waiting in the scheduler for a load or a reload (server/sched.go LlmRequest)."""

    def __init__(self, model: dict, opts: dict, keep_alive: float | None):
        self.model = model
        self.opts = opts
        self.keep_alive = keep_alive
        self.runner: Runner | None = None
        self.error: Exception | None = None
        self.done = False


class Scheduler:
    """server/sched.go: requests for a loaded model whose options match go straight to its runner (getRunner);
    the rest wait in a queue of at most OLLAMA_MAX_QUEUE that one loop works through, one load at a time
    (processPending)."""

    def __init__(self, cfg: Config, store: Store):
        self.cfg = cfg
        self.store = store
        self.lock = threading.Condition()
        self.runners: dict[str, Runner] = {}
        self.pending: deque[Pending] = deque()  # pendingReqCh, buffered to OLLAMA_MAX_QUEUE
        self.loading: str | None = None  # the model processPending is working on (no longer in the queue)
        threading.Thread(target=self._process_pending, daemon=True).start()
        threading.Thread(target=self._reaper, daemon=True).start()

    def default_ctx(self) -> int:
        # server/routes.go: OLLAMA_CONTEXT_LENGTH, else the default context by total visible VRAM (>= 0.15.5).
        if self.cfg.context_length > 0:
            return self.cfg.context_length
        vram = sum(g["memory_total"] for g in self.cfg.gpus)
        return 262144 if vram >= 47 * GIB else 32768 if vram >= 23 * GIB else 4096

    def runner_options(self, model: dict, options: dict) -> dict:
        """The api.Runner options a request needs (server/routes.go modelOptions over api.DefaultOptions;
        server/sched.go getRunner: num_ctx at least 4, 2048 for vision; needsReload: capped at the training
        context by effectiveContext)."""
        entry = model["entry"]
        info = entry.get("model_info", {})
        train_ctx = int(info.get(f"{info.get('general.architecture', '')}.context_length", 0) or 0)

        def opt(name, default):
            value = options.get(name)
            return default if value is None else value

        num_ctx = max(int(opt("num_ctx", self.default_ctx())), 4)
        if "vision" in capabilities(entry):
            num_ctx = max(num_ctx, 2048)
        if train_ctx > 0:
            num_ctx = min(num_ctx, train_ctx)
        main_gpu = opt("main_gpu", None)
        return {
            "num_ctx": num_ctx,
            "num_batch": int(opt("num_batch", 512)),
            "num_gpu": int(opt("num_gpu", -1)),
            "main_gpu": None if main_gpu is None else int(main_gpu),
            "use_mmap": opt("use_mmap", None),
            "num_thread": int(opt("num_thread", 0)),
        }

    def acquire(self, model: dict, options: dict, keep_alive: float | None) -> tuple[Runner, float]:
        """A slot on a runner with the request's options; 503 (Busy) when the scheduler's queue is full.
        Returns the runner and the time until the scheduler handed it over (load_duration)."""
        want = self.runner_options(model, options)
        started = time.monotonic()
        with self.lock:
            runner = self.runners.get(model["name"])
            # server/sched.go getRunner: a loaded runner that needs no reload is used at once, past the queue
            if runner is not None and not runner.needs_reload(want):
                self._use(runner, keep_alive)
            else:
                # getRunner: `select { case s.pendingReqCh <- req: default: ErrMaxQueue }`
                if len(self.pending) >= self.cfg.max_queue:
                    raise Busy(ERR_BUSY)
                request = Pending(model, want, keep_alive)
                self.pending.append(request)
                self.lock.notify_all()
                while not request.done:
                    self.lock.wait()
                if request.error is not None:
                    raise request.error
                runner = request.runner
            runner.waiting += 1
        load = time.monotonic() - started
        runner.slots.acquire()  # llm/llama_server.go Completion: s.sem.Acquire, no bound on the wait
        with self.lock:
            runner.waiting -= 1
            runner.active += 1
        return runner, load

    def _use(self, runner: Runner, keep_alive: float | None) -> None:
        """server/sched.go useLoadedRunner: one more reference; the request's keep_alive becomes the runner's."""
        runner.refs += 1
        if keep_alive is not None:
            runner.keep_alive = keep_alive

    def release(self, runner: Runner) -> None:
        """server/sched.go processCompleted: the last request gone, a keep_alive of 0 (or a pending reload or
        eviction) unloads at once, else the keep_alive timer starts."""
        with self.lock:
            runner.active -= 1
            runner.refs -= 1
            runner.slots.release()
            if runner.refs <= 0:
                runner.expires = time.monotonic() + runner.keep_alive
                if runner.keep_alive == 0 or runner.expiring:
                    self._unload(runner)
            self.lock.notify_all()

    def expire(self, name: str) -> None:
        """server/sched.go expireRunner (an empty prompt with keep_alive 0): unload now, or once it is idle."""
        with self.lock:
            runner = self.runners.get(name)
            if runner is None:
                return
            runner.keep_alive = 0
            runner.expires = time.monotonic()
            runner.expiring = True
            if runner.refs <= 0:
                self._unload(runner)

    def _unload(self, runner: Runner) -> None:
        if self.runners.get(runner.name) is runner:
            del self.runners[runner.name]
            log("INFO", "model unloaded", model=runner.name)
        self.lock.notify_all()

    def _process_pending(self) -> None:
        """server/sched.go processPending: one queued request at a time."""
        while True:
            with self.lock:
                while not self.pending:
                    self.lock.wait()
                request = self.pending.popleft()
                self.loading = request.model["name"]
            try:
                self._schedule(request)
            except Exception as exc:  # a failed load fails this request only
                request.error = exc if isinstance(exc, LoadFailed) else LoadFailed(str(exc))
            finally:
                with self.lock:
                    request.done = True
                    self.loading = None
                    self.lock.notify_all()

    def _schedule(self, request: Pending) -> None:
        """server/sched.go processPending's inner loop: use the loaded runner; or expire the one that needs a
        reload (needsReload) or, at OLLAMA_MAX_LOADED_MODELS, another (findRunnerToUnload), or one that the new
        model does not fit beside (Scheduler.load asks for room), wait for it to unload and look again; else
        load."""
        name = request.model["name"]
        while True:
            with self.lock:
                runner = self.runners.get(name)
                if runner is not None and not runner.needs_reload(request.opts):
                    self._use(runner, request.keep_alive)
                    request.runner = runner
                    return
                if runner is not None:
                    log("INFO", "reloading", model=name, loaded=dumps(runner.opts), wanted=dumps(request.opts))
                    victim = runner
                elif len(self.runners) >= self.cfg.max_loaded:
                    victim = self._runner_to_unload()
                else:
                    placed = self._place(request)
                    victim = None if placed else self._runner_to_unload()
                if victim is not None:
                    # processPending: expire it at once and wait until its last request is done and it is gone.
                    # (Ollama sets its sessionDuration to 0, which a later request's keep_alive can undo; here the
                    # mark stays, so a reload cannot wait forever.)
                    log("INFO", "resetting model to expire immediately to make room", model=victim.name, loading=name)
                    victim.expiring = True
                    if victim.refs <= 0:
                        self._unload(victim)
                    while self.runners.get(victim.name) is victim:
                        self.lock.wait()
                    continue
            runner = self._load(request, *placed)
            with self.lock:
                self.runners[name] = runner
                self._use(runner, request.keep_alive)
                request.runner = runner
                return

    def free_memory(self) -> dict[str, int]:
        """Each visible GPU's free memory as the scheduler sees it (server/sched.go updateFreeSpace): what the
        device reports free (its total less other processes' memory_used, and less what the loaded runners hold
        on it, as a real device would count them)."""
        held = Counter()
        for runner in self.runners.values():
            held.update(runner.vram_by_gpu)
        return {g["uuid"]: max(0, g["memory_total"] - g.get("memory_used", 0) - held[g["uuid"]]) for g in self.cfg.gpus}

    def _placement(self, opts: dict, predicted: int, free: dict[str, int]) -> list[dict]:
        """The GPUs a load goes to (server/sched.go selectLlamaServerPlacement): none for num_gpu 0; the one
        main_gpu names (bestExplicitMainGPU); else, unless OLLAMA_SCHED_SPREAD, the GPU with the most free
        memory among those whose 80 % holds the prediction (bestSingleGPUFit); else every visible GPU (one
        library, so one group: bestGPUGroupByAvailableMemory)."""
        gpus = self.cfg.gpus if opts["num_gpu"] != 0 else []
        if len(gpus) <= 1:
            return gpus
        main = opts["main_gpu"]
        if main is not None:
            return [gpus[main]] if 0 <= main < len(gpus) else gpus
        if not self.cfg.sched_spread and predicted > 0:
            fits = [g for g in gpus if predicted <= free[g["uuid"]] * SCHEDULER_SHARE]
            if fits:
                return [max(fits, key=lambda g: free[g["uuid"]])]  # the first of equals, as betterPlacementGPU
        return gpus

    def _place(self, request: Pending) -> tuple[int, dict[str, int]] | None:
        """server/sched.go Scheduler.load up to the runner's start: the slots the model gets and the VRAM it
        will hold per GPU; None when a loaded runner must go first. With other models loaded (processPending
        passes requireFull), the pre-flight check asks for room when the prediction exceeds 80 % of the free
        memory where it goes, unless num_gpu asks for a partial offload (explicitPartialGPUOffload); a load
        whose layers then do not all fit asks for room too (llm.ErrLoadRequiredFull). The first model loads
        whatever it takes, its rest on the CPU."""
        model, opts = request.model, request.opts
        parallel = model_parallel(self.cfg.num_parallel, model["entry"])
        predicted = predicted_vram(model, opts["num_ctx"], parallel)
        free = self.free_memory()
        gpus = self._placement(opts, predicted, free)
        require_full = bool(self.runners)
        info, arch = model_info(model["entry"])
        partial = 0 < opts["num_gpu"] < int(info.get(f"{arch}.block_count", 0)) + 1
        available = sum(free[g["uuid"]] for g in gpus)
        if require_full and gpus and not partial and predicted > available * SCHEDULER_SHARE:
            log(
                "INFO",
                "llama-server model predicted to exceed available memory, evicting",
                model=model["name"],
                predicted=predicted,
                available=available,
            )
            return None
        need = runner_bytes(self.cfg, model, opts["num_ctx"], parallel)
        # llama.cpp --fit keeps FIT_MARGIN free on every device and splits the layers by what is left
        room = {g["uuid"]: max(0, free[g["uuid"]] - FIT_MARGIN) for g in gpus}
        total_room = sum(room.values())
        if need > total_room:
            if require_full and not partial:
                log("INFO", "model requires more memory than is free beside the loaded models", model=model["name"])
                return None
            log(
                "WARN",
                "model does not fit in VRAM, offloading to CPU",
                model=model["name"],
                required=need,
                available=total_room,
            )
        on_gpu = min(need, total_room)
        share = {uuid: on_gpu * r // total_room for uuid, r in room.items()} if total_room else {}
        if share:
            share[gpus[-1]["uuid"]] += on_gpu - sum(share.values())  # the division's remainder
        return parallel, share

    def _runner_to_unload(self) -> Runner:
        """server/sched.go findRunnerToUnload: sorted by keep_alive (ByDurationAndName: a negative one, forever,
        is the largest as uint64), then the model's path; the first idle one, else the first."""
        ordered = sorted(self.runners.values(), key=lambda r: (r.keep_alive, r.path))
        return next((r for r in ordered if r.refs <= 0), ordered[0])

    def _load(self, request: Pending, parallel: int, vram_by_gpu: dict[str, int]) -> Runner:
        """server/sched.go load: the runner's start and the weights, then the runner as placed."""
        model = request.model
        # llm/llama_server.go WaitUntilRunning: OLLAMA_LOAD_TIMEOUT is a stall timeout; streaming the weights
        # shows progress, a runner start longer than the timeout does not.
        if self.cfg.load_time > self.cfg.load_timeout:
            time.sleep(self.cfg.load_timeout)
            raise LoadFailed("timed out waiting for llama runner to start - progress 0.00")
        time.sleep(self.cfg.load_seconds(model["size"]))
        runner = Runner(self.cfg, model, request.opts, parallel, vram_by_gpu)
        log(
            "INFO",
            "model loaded",
            model=runner.name,
            num_ctx=runner.num_ctx,
            parallel=runner.parallel,
            size_vram=runner.size_vram,
            size=runner.size,
            gpus=",".join(runner.gpus),
        )
        return runner

    def _reaper(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                for r in list(self.runners.values()):
                    if r.refs <= 0 and time.monotonic() >= r.expires:
                        self._unload(r)

    def ps(self) -> list[Runner]:
        with self.lock:
            return list(self.runners.values())
