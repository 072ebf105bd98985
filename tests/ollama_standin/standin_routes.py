"""The HTTP API (server/routes.go, api/types.go, openai/ and anthropic/ middleware, v0.33.0-rc2)."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import ipaddress
import os
import socket
import socketserver
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import go_body  # beside this file, here and in the release archive
from standin_cache import fit_prompt, prompt_tokens, tokenize
from standin_config import VERSION, Config, dumps, log, now_iso, parse_duration
from standin_pull import PullError, pull_model
from standin_sched import Busy, LoadFailed, Scheduler
from standin_store import Store, details, normalise, valid_name

# The JSON fields of Ollama's native requests that the stand-in reads, with their Go types (api/types.go,
# v0.33.0-rc2), decoded as encoding/json does (go_body.py): keys matched by folding ("Model" sets model),
# options objects merged, a value of another type answered 400 (server/routes.go).
REQUEST_FIELDS = {
    "/api/generate": (
        "GenerateRequest",
        {"model": "string", "prompt": "string", "stream": "bool", "keep_alive": "*api.Duration"},
    ),
    "/api/chat": (
        "ChatRequest",
        {"model": "string", "messages": "[]api.Message", "stream": "bool", "keep_alive": "*api.Duration"},
    ),
    "/api/embed": ("EmbedRequest", {"model": "string", "keep_alive": "*api.Duration"}),
    "/api/embeddings": ("EmbeddingRequest", {"model": "string", "prompt": "string", "keep_alive": "*api.Duration"}),
    "/api/show": ("ShowRequest", {"model": "string", "name": "string"}),
    "/api/pull": ("PullRequest", {"model": "string", "name": "string", "stream": "bool", "insecure": "bool"}),
    "/api/delete": ("DeleteRequest", {"model": "string", "name": "string"}),
    "/api/copy": ("CopyRequest", {"source": "string", "destination": "string"}),
}
for _struct, _fields in REQUEST_FIELDS.values():
    _fields["options"] = "map[string]interface {}"
# Options of api.Options / api.Runner the stand-in reads, and Go's kind (api/types.go Options.FromMap):
# a value of another type fails the request with 500 "option %q must be of type ...".
OPTION_KINDS = {
    "num_ctx": "integer",
    "num_predict": "integer",
    "num_gpu": "integer",
    "num_batch": "integer",
    "num_thread": "integer",
    "main_gpu": "integer",
    "use_mmap": "boolean",
    "temperature": "float32",
}
WORDS = (
    "the quick brown fox jumps over the lazy dog while seven GPUs hum along "
    "and the gateway keeps every stream flowing token by token"
).split()


# ----------------------------------------------------------------- HTTP API
def embedding(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] * (i + 1)) % 251) / 125.0 - 1.0 for i in range(dims)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in raw]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Go's net/http sets TCP_NODELAY; without it small writes on kept-alive connections stall ~40 ms.
    disable_nagle_algorithm = True
    server_version = "ollama-standin"
    cfg: Config
    store: Store
    sched: Scheduler

    def log_message(self, fmt, *args):  # one line per request, like Ollama's [GIN] lines
        log("INFO", "request", method=self.command, path=self.path, status=args[1] if len(args) > 1 else "")

    # --- plumbing
    def _identity_headers(self):
        self.send_header("X-Ollama-Instance", f"{socket.gethostname()}:{self.cfg.port}")
        self.send_header("X-Ollama-Gpus", ",".join(g["uuid"] for g in self.cfg.gpus))

    def send_json(self, status: int, body, extra: dict | None = None):
        data = dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self._identity_headers()
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, status: int, message: str):
        self.send_json(status, {"error": message})

    def start_stream(self, content_type: str):
        # HTTP/1.0 peers (nginx's default proxy_pass) get a body ended by closing, as Go's server does.
        self.chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        self.send_header("Cache-Control", "no-cache")
        self._identity_headers()
        self.end_headers()

    def chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        self.wfile.flush()

    def end_stream(self):
        if self.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def body(self) -> dict | None:
        """The request's struct as Ollama decodes the body (go_body.py); None after answering 400."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.split("?")[0] == "/v1/audio/transcriptions":
            return self.form(raw)
        if not raw.strip():
            return {}
        struct, fields = REQUEST_FIELDS.get(self.path.split("?")[0], ("", {}))
        try:
            data, error = go_body.decode(raw, struct, fields)
        except ValueError as exc:
            self.error(400, f"invalid character in request body: {exc}")
            return None
        if error:
            self.error(400, error)
            return None
        return data

    def form(self, raw: bytes) -> dict:
        """A multipart/form-data body as Go's Request.FormValue reads it: each field's first value (the URL's
        query for a field the body lacks); values as bytes."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + (self.headers.get("Content-Type") or "").encode() + b"\r\n\r\n" + raw
        )
        fields = {}
        for part in message.iter_parts() if message.is_multipart() else []:
            fields.setdefault(part.get_param("name", header="content-disposition"), part.get_payload(decode=True))
        for key, values in parse_qs(urlparse(self.path).query).items():
            fields.setdefault(key, values[0].encode())
        return fields

    def option_error(self, options: dict) -> str | None:
        for name, kind in OPTION_KINDS.items():
            value = options.get(name)
            if value is None:
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (isinstance(value, bool) if kind == "boolean" else number):
                return f'option "{name}" must be of type {kind}'
        return None

    # --- DNS-rebinding guard: server/routes.go allowedHostsMiddleware, allowedHost and isLocalIP (v0.33.0-rc2).
    # Only a server listening on loopback checks the Host header: an IP that is loopback, private (Go's
    # netip IsPrivate), unspecified or one of this machine's own; "localhost", the hostname, or a name
    # under .localhost/.local/.internal pass. Everything else gets 403 with an empty body.
    GO_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]

    def host_allowed(self) -> bool:
        listener = ipaddress.ip_address(self.server.server_address[0])
        if not listener.is_loopback:
            return True
        name = self.split_host_port((self.headers.get("Host") or "").lower())
        try:
            ip = ipaddress.ip_address(name)
            ip = getattr(ip, "ipv4_mapped", None) or ip  # netip's Unmap: ::ffff:127.0.0.1 is loopback
        except ValueError:
            return name in ("", "localhost", socket.gethostname().lower()) or name.endswith(
                (".localhost", ".local", ".internal")
            )
        return ip.is_loopback or ip.is_unspecified or any(ip in n for n in self.GO_PRIVATE) or self.is_local_ip(ip)

    @staticmethod
    def split_host_port(host: str) -> str:
        """Go's net.SplitHostPort, falling back to the whole value when it fails (no port, bare IPv6)."""
        if host.startswith("["):
            end = host.find("]")
            port = host[end + 2 :]
            return host[1:end] if end > 0 and host[end + 1 : end + 2] == ":" and ":" not in port else host
        return host.split(":")[0] if host.count(":") == 1 else host

    @staticmethod
    def is_local_ip(ip) -> bool:
        """isLocalIP: an address of one of this machine's interfaces (approximated by its hostname's addresses)."""
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None)
        except OSError:
            return False
        return any(ipaddress.ip_address(info[4][0].split("%")[0]) == ip for info in infos)

    def guard(self) -> bool:
        """True when the request may go on; else it has been answered 403 as Ollama does."""
        if self.host_allowed():
            return True
        self.discard_body()
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self._identity_headers()
        self.end_headers()
        return False

    def discard_body(self) -> None:
        """A body the handler does not read: Go's server discards up to 256 KiB of it to keep the connection,
        and closes the connection beyond that (net/http server.go), so it is never read as a request."""
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 256 << 10:
            self.rfile.read(length)
            log("WARN", "discarded an unread request body", method=self.command, path=self.path, bytes=length)
        elif length or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            log("WARN", "unread request body too large or chunked, closing", method=self.command, path=self.path)

    # --- routing
    def do_HEAD(self):
        self.do_GET()

    def do_OPTIONS(self):
        # No CORS here: Ollama answers a preflight with an allowed Origin in gin-contrib/cors (before the
        # Host guard); what remains, an allowed Host's OPTIONS, the guard answers 204 itself.
        if self.guard():  # a refused request's body is discarded by the guard itself
            self.discard_body()
            self.send_response(204)
            self._identity_headers()
            self.end_headers()

    def route(self, routes):
        """The handler for this path (query ignored), or None after answering 404 as Ollama does."""
        path = self.path.split("?")[0]
        model = path.removeprefix("/v1/models/")
        if self.command in ("GET", "HEAD") and model != path and model and "/" not in model:
            return lambda: self.v1_model(model)  # gin's /v1/models/:model (one path segment)
        handler = routes.get(path)
        if handler is None:
            self.error(404, "404 page not found")
        return handler

    def do_GET(self):
        if not self.guard():  # a refused request's body is discarded by the guard itself
            return
        self.discard_body()
        routes = {
            "/": self.root,
            "/api/version": self.version,
            "/api/status": self.cloud_status,
            "/api/tags": self.tags,
            "/api/ps": self.ps,
            "/v1/models": self.v1_models,
            "/standin/ps": self.standin_ps,
            "/standin/stats": self.stats,
        }
        handler = self.route(routes)
        if handler is not None:
            self.recovering(handler)

    def do_POST(self):
        routes = {
            "/api/generate": self.generate,
            "/api/chat": self.chat,
            "/api/show": self.show,
            "/api/pull": self.pull,
            "/api/embed": self.embed,
            "/api/embeddings": self.embeddings,
            "/api/copy": self.copy,
            "/api/create": self.unsupported,
            "/api/push": self.unsupported,
            "/v1/chat/completions": self.v1_chat,
            "/v1/completions": self.v1_completions,
            "/v1/embeddings": self.v1_embeddings,
            "/v1/messages": self.v1_messages,
            "/v1/responses": self.v1_responses,
            "/v1/audio/transcriptions": self.v1_transcriptions,
        }
        if not self.guard():
            return
        handler = self.route(routes)
        if handler is None:
            return
        data = self.body()
        if data is not None:
            self.recovering(handler, data)

    def send_response(self, code, message=None):
        self.answered = True
        super().send_response(code, message)

    def recovering(self, handler, *args):
        """gin's Recovery middleware: a handler that fails answers 500 and the connection stays; one that
        fails after its answer began (a stream) can only end the connection."""
        self.answered = False
        try:
            handler(*args)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:  # whatever went wrong, the client gets an answer
            log("ERROR", "handler failed", path=self.path, error=repr(exc))
            if self.answered:
                self.close_connection = True
            else:
                self.error(500, f"internal error: {exc}")

    def do_DELETE(self):
        if not self.guard():
            return
        if self.path != "/api/delete":
            return self.error(404, "404 page not found")
        data = self.body()
        if data is None:
            return
        # server/routes.go DeleteHandler: 404 with the name as given, else 200 with no body
        name = data.get("model") or data.get("name") or ""
        if not valid_name(name):
            return self.error(400, f"name {dumps(name)} is invalid")
        if not self.store.delete(name):
            return self.error(404, f"model '{name}' not found")
        self.send_empty(200)

    # --- endpoints
    def root(self):
        data = b"Ollama is running"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self._identity_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def version(self):
        self.send_json(200, {"version": VERSION})

    def cloud_status(self):
        """server/routes.go StatusHandler: whether cloud models are off, and by what (envconfig NoCloudSource)."""
        self.send_json(
            200, {"cloud": {"disabled": self.cfg.no_cloud, "source": "env" if self.cfg.no_cloud else "none"}}
        )

    def tags(self):
        models = []
        for name in self.store.names():
            m = self.store.get(name)
            if m is None:  # deleted since the listing
                continue
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": m["modified"].isoformat(),
                    "size": m["size"],
                    "digest": m["digest"],
                    "details": details(m["entry"]),
                }
            )
        self.send_json(200, {"models": models})

    def ps(self):
        """server/routes.go PsHandler: api.ProcessModelResponse fields only, longest time left first."""
        models = []
        for r in sorted(self.sched.ps(), key=lambda r: r.expires, reverse=True):
            remaining = r.expires - time.monotonic()
            expires = (
                datetime(2318, 1, 1, tzinfo=UTC)
                if remaining == float("inf")
                else datetime.now(UTC) + timedelta(seconds=max(0, remaining))
            )
            models.append(
                {
                    "name": r.name,
                    "model": r.name,
                    "size": r.size,
                    "digest": r.model["digest"],
                    "details": details(r.model["entry"]),
                    "expires_at": expires.isoformat(),
                    "size_vram": r.size_vram,
                    "context_length": r.num_ctx,
                }
            )
        self.send_json(200, {"models": models})

    def standin_ps(self):
        """Not Ollama's: who holds what, for tests and the sandbox. The instance, its GPUs, the OLLAMA_* and
        CUDA_VISIBLE_DEVICES environment the process really got (so tests can check the unit delivered it),
        the stand-in's knobs in effect, and per loaded model its GPUs, slots (the parallel it really got),
        context, VRAM per GPU, requests in a slot or waiting for one and its prompt cache (the tokens each slot
        holds, prompts saved in host memory, prompt tokens evaluated and found cached); free_memory: per GPU, what the
        scheduler sees free beside them."""
        with self.sched.lock:
            free = self.sched.free_memory()
            models = [
                {
                    "name": r.name,
                    "gpus": r.gpus,
                    "vram_by_gpu": r.vram_by_gpu,
                    "slots": r.parallel,
                    "context_length": r.num_ctx,
                    "active": r.active,
                    "waiting": r.waiting,
                    "prompt_cache": r.cache.view(),
                }
                for r in self.sched.runners.values()
            ]
        self.send_json(
            200,
            {
                "instance": f"{socket.gethostname()}:{self.cfg.port}",
                "gpus": [g["uuid"] for g in self.cfg.gpus],
                "env": {k: v for k, v in os.environ.items() if k.startswith("OLLAMA_") or k == "CUDA_VISIBLE_DEVICES"},
                "knobs_file": self.cfg.knobs_file,
                "knobs": self.cfg.knobs,
                "free_memory": free,
                "models": models,
            },
        )

    def stats(self):
        """Not Ollama's: queue and slot counts, so tests can wait on state instead of sleeping. pending: requests
        in the scheduler's queue (OLLAMA_MAX_QUEUE bounds it), loading: the model being loaded, active and
        waiting: per loaded model, requests in a slot and waiting for one (no bound)."""
        with self.sched.lock:
            self.send_json(
                200,
                {
                    "pending": len(self.sched.pending),
                    "loading": self.sched.loading,
                    "num_parallel": self.cfg.num_parallel,
                    "max_queue": self.cfg.max_queue,
                    "active": {n: r.active for n, r in self.sched.runners.items()},
                    "waiting": {n: r.waiting for n, r in self.sched.runners.items()},
                },
            )

    def v1_models(self):
        self.send_json(
            200,
            {
                "object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "library"} for n in self.store.names()],
            },
        )

    def v1_model(self, name: str):
        """GET /v1/models/{model}: the show handler behind middleware/openai.go RetrieveMiddleware, answered as
        openai.ToModel (owned_by = the name's namespace) or openai.NewError."""
        m = self.store.get(name)
        if not m:
            error = {"message": f"model '{name}' not found", "type": "not_found_error", "param": None, "code": None}
            return self.send_json(404, {"error": error})
        parts = m["name"].split("/")
        owner = parts[-2] if len(parts) > 1 else "library"
        created = int(m["modified"].timestamp())
        self.send_json(200, {"id": name, "object": "model", "created": created, "owned_by": owner})

    def show(self, data):
        name = data.get("model") or data.get("name") or ""
        m = self.store.get(name)
        if not m:
            return self.error(404, f"model '{name}' not found")
        entry = m["entry"]
        self.send_json(
            200,
            {
                "license": "",
                "modelfile": f"FROM {name}\n",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": details(entry),
                "model_info": entry.get("model_info", {}),
                "capabilities": entry.get("capabilities", ["completion"]),
                "modified_at": m["modified"].isoformat(),
            },
        )

    def pull(self, data):
        """server/routes.go PullHandler: PullModel's progress as NDJSON (its error as a last line once the stream
        has begun), or with "stream": false only the outcome: {"status":"success"} or 500 {"error"}."""
        raw = data.get("model") or data.get("name") or ""
        if not raw.strip():
            return self.error(400, "invalid model name")  # parseNormalizePullModelRef, errtypes
        if not valid_name(raw):
            return self.error(400, f"name {dumps(raw)} is invalid")  # model.ErrUnqualifiedName
        stream = data.get("stream", True)
        if stream:
            self.start_stream("application/x-ndjson")

        def emit(event):
            if stream:
                self.chunk(dumps(event).encode() + b"\n")

        try:
            pull_model(self.cfg, self.store, raw, bool(data.get("insecure")), emit)
        except PullError as exc:
            log("WARN", "pull failed", model=normalise(raw), error=str(exc))
            if not stream:
                return self.error(500, str(exc))
            emit({"error": str(exc)})
            return self.end_stream()
        if stream:
            self.end_stream()
        else:
            self.send_json(200, {"status": "success"})

    def send_empty(self, status: int):
        """What gin sends when a handler writes nothing: the status, no body."""
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self._identity_headers()
        self.end_headers()

    def copy(self, data):
        """server/routes.go CopyHandler: 400 for a name that is not one, 404 `model "x" not found`, else 200
        with no body."""
        source, dest = data.get("source") or "", data.get("destination") or ""
        if not valid_name(source):
            return self.error(400, f"source {dumps(source)} is invalid")
        if not valid_name(dest):
            return self.error(400, f"destination {dumps(dest)} is invalid")
        if not self.store.copy(source, dest):
            return self.error(404, f"model {dumps(source)} not found")
        self.send_empty(200)

    def unsupported(self, data):
        self.error(400, f"{self.path} is not simulated by the Ollama stand-in")

    # --- generation
    def _model(self, data) -> dict | None:
        name = data.get("model") or data.get("name") or ""
        if not name:
            self.error(400, "model is required")
            return None
        m = self.store.get(name)
        if m is None:
            self.error(404, f'model "{name}" not found, try pulling it first')
        return m

    def _keep_alive(self, data) -> float | None:
        if "keep_alive" not in data:
            return None
        value = data["keep_alive"]
        return (
            parse_duration(str(value), self.cfg.keep_alive)
            if not isinstance(value, (int, float))
            else (float("inf") if value < 0 else float(value))
        )

    def _answered_unscheduled(self, m, prompt, keep_alive, options, emit_done, started) -> bool:
        """What server/routes.go GenerateHandler/ChatHandler answer before scheduling a runner; True if answered.
        An empty prompt with keep_alive 0 expires the runner (server/sched.go expireRunner) without scheduling, so
        a model not loaded is not loaded first; this comes before the capability check, so it unloads an embedding
        model too."""
        if prompt is None and keep_alive == 0:
            self.sched.expire(m["name"])
            self.send_json(200, emit_done(m["name"], "", "unload", 0, started, 0, final=True))
        elif "embedding" in m["entry"].get("capabilities", []) and "completion" not in m["entry"]["capabilities"]:
            self.error(400, f'"{m["name"]}" does not support generate')
        elif problem := self.option_error(options):
            self.error(500, problem)  # scheduleRunner's error, answered by handleScheduleError
        else:
            return False
        return True

    def _words(self, data, prompt, options):
        """The answer's words (the same for the same prompt) and its done_reason: "length" when the caller's
        num_predict cut it, else a simulated end of text."""
        n = int(options.get("num_predict") or data.get("max_tokens") or self.cfg.tokens)
        n = self.cfg.tokens if n < 0 else n
        seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:6], 16)
        words = [WORDS[(seed + i) % len(WORDS)] + " " for i in range(n)]
        return words, "length" if options.get("num_predict") or data.get("max_tokens") else "stop"

    def _send_answer(self, m, words, reason, tokens, stream, formats, started, load):
        """The answer, whole or streamed a word at a time; self.context grows with each word sent."""
        emit_token, emit_done, content_type = formats
        if not stream:
            for _ in words[1:]:
                time.sleep(1 / self.cfg.tps)
            self.context = tokens + tokenize("".join(words))
            return self.send_json(
                200, emit_done(m["name"], "".join(words), reason, len(words), started, load, final=True)
            )
        self.start_stream(content_type)
        for i, word in enumerate(words):
            if i:
                time.sleep(1 / self.cfg.tps)
            self.chunk(emit_token(m["name"], word))
            self.context = (self.context or tokens) + tokenize(word)
        self.chunk(emit_done(m["name"], "", reason, len(words), started, load, final=False))
        self.end_stream()

    def _generate(self, data, text_of, emit_token, emit_done, content_type, stream_default=True):
        """Shared by /api/generate, /api/chat and the OpenAI routes."""
        m = self._model(data)
        if m is None:
            return
        prompt, keep_alive, options = text_of(data), self._keep_alive(data), data.get("options") or {}
        started = time.monotonic()
        # what the answer's counts say of the prompt (set once it is evaluated) and its tokens with the answer's
        self.prompt_count, self.prompt_seconds, self.context = 0, 0.0, []
        if self._answered_unscheduled(m, prompt, keep_alive, options, emit_done, started):
            return
        try:
            runner, load = self.sched.acquire(m, options, keep_alive)
        except Busy as exc:
            return self.error(503, str(exc))
        except LoadFailed as exc:
            return self.error(500, str(exc))
        slot, tokens = None, []
        try:
            if prompt is None:  # an empty request only loads
                return self.send_json(200, emit_done(m["name"], "", "load", 0, started, load, final=True))
            words, reason = self._words(data, prompt, options)
            # the prompt cache (standin_cache): only what no slot holds is evaluated; prompt_eval_count counts
            # every prompt token, cached or not (llm/llama_server.go promptEvalCount: cache_n + prompt_n)
            tokens = fit_prompt(prompt_tokens(data), runner.num_ctx)
            slot, cached = runner.cache.take(tokens)
            self.prompt_count, self.prompt_seconds = len(tokens), self.cfg.prompt_seconds(len(tokens) - cached)
            time.sleep(self.prompt_seconds)
            formats = (emit_token, emit_done, content_type)
            self._send_answer(m, words, reason, tokens, data.get("stream", stream_default), formats, started, load)
        except (BrokenPipeError, ConnectionResetError):
            log("INFO", "client went away, generation stopped", model=m["name"])
        finally:
            if slot is not None:
                runner.cache.give_back(slot, self.context or tokens)
            self.sched.release(runner)

    def _done_fields(self, reason, count, started, load):
        total = int((time.monotonic() - started) * 1e9)
        return {
            "done": True,
            "done_reason": reason,
            "total_duration": total,
            "load_duration": int(load * 1e9),
            "prompt_eval_count": self.prompt_count,
            "prompt_eval_duration": int(self.prompt_seconds * 1e9),
            "eval_count": count,
            "eval_duration": int(count / self.cfg.tps * 1e9),
        }

    def generate(self, data):
        def text_of(d):
            return d.get("prompt") or None

        def token(model, t):
            return dumps({"model": model, "created_at": now_iso(), "response": t, "done": False}).encode() + b"\n"

        def done(model, text, reason, count, started, load, final):
            fields = self._done_fields(reason, count, started, load)
            body = {"model": model, "created_at": now_iso(), "response": text}
            body |= {k: fields.pop(k) for k in ("done", "done_reason")}
            if self.context and data.get("raw") is not True:
                # server/routes.go GenerateHandler: the prompt and the answer as tokens (api.GenerateResponse
                # Context), which a client may send back as the next request's `context`
                body["context"] = self.context
            return (body | fields) if final else dumps(body | fields).encode() + b"\n"

        self._generate(data, text_of, token, done, "application/x-ndjson")

    def chat(self, data):
        def text_of(d):
            messages = d.get("messages") or []
            return " ".join(str(m.get("content", "")) for m in messages) or None

        def token(model, t):
            return (
                dumps(
                    {
                        "model": model,
                        "created_at": now_iso(),
                        "message": {"role": "assistant", "content": t},
                        "done": False,
                    }
                ).encode()
                + b"\n"
            )

        def done(model, text, reason, count, started, load, final):
            body = {
                "model": model,
                "created_at": now_iso(),
                "message": {"role": "assistant", "content": text},
                **self._done_fields(reason, count, started, load),
            }
            return body if final else dumps(body).encode() + b"\n"

        self._generate(data, text_of, token, done, "application/x-ndjson")

    def _openai(self, data, chat: bool):
        # openai/openai.go FromChatRequest / FromCompleteRequest build the native request from OpenAI's fields:
        # a client's keep_alive or options never reach the scheduler there (the gateway leaves /v1 unguarded)
        data = {k: v for k, v in data.items() if k not in ("keep_alive", "options")}
        answer = OpenAIAnswer(self, data, chat)
        self._generate(data, answer.text_of, answer.token, answer.done, "text/event-stream", stream_default=False)

    @staticmethod
    def _from_client(data, **fields) -> dict:
        """What Ollama's compatibility middleware (middleware/openai.go, anthropic.go) hands its handlers: the
        request rebuilt from the compatible API's own fields; a native keep_alive or options never gets
        through. FIELDS: the native fields it fills."""
        return {"model": data.get("model"), "stream": bool(data.get("stream")), **fields}

    def v1_messages(self, data):
        """/v1/messages (anthropic/anthropic.go FromMessagesRequest, ToMessagesResponse): text content only;
        a stream as the Messages API's events, one content block."""
        ident = "msg_" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:24]
        text = " ".join(
            m["content"]
            if isinstance(m.get("content"), str)
            else " ".join(str(b.get("text", "")) for b in m["content"])
            for m in data.get("messages") or []
            if isinstance(m, dict) and m.get("content")
        )
        native = self._from_client(data, prompt=text or None, options={"num_predict": data.get("max_tokens")})

        def event(kind, body):
            return f"event: {kind}\ndata: ".encode() + dumps({"type": kind, **body}).encode() + b"\n\n"

        def message(model, content, reason, count):
            stop = {"stop": "end_turn", "length": "max_tokens"}.get(reason, "end_turn")
            return {
                "id": ident, "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "usage": {"input_tokens": self.prompt_count, "output_tokens": count},
            }  # fmt: skip

        started_stream = []

        def token(model, t):
            head = b""
            if not started_stream:
                started_stream.append(True)
                head = event("message_start", {"message": {**message(model, [], "", 0), "stop_reason": None}})
                head += event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            return head + event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}})

        def done(model, text, reason, count, started, load, final):
            if final:
                return message(model, [{"type": "text", "text": text}], reason, count)
            stop = message(model, [], reason, count)["stop_reason"]
            return (
                event("content_block_stop", {"index": 0})
                + event(
                    "message_delta",
                    {
                        "delta": {"stop_reason": stop},
                        "usage": {"input_tokens": self.prompt_count, "output_tokens": count},
                    },
                )
                + event("message_stop", {})
            )

        self._generate(native, lambda d: d["prompt"], token, done, "text/event-stream", stream_default=False)

    def v1_responses(self, data):
        """/v1/responses (openai/responses.go FromResponsesRequest, ToResponse): text input only; a stream as
        the Responses API's events."""
        ident = "resp_" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:24]
        raw = data.get("input")
        text = raw if isinstance(raw, str) else " ".join(
            str(c.get("text", "")) if isinstance(c, dict) else str(c)
            for item in raw or [] if isinstance(item, dict)
            for c in (item.get("content") if isinstance(item.get("content"), list) else [{"text": item.get("content")}])
        )  # fmt: skip
        native = self._from_client(data, prompt=text or None, options={"num_predict": data.get("max_output_tokens")})

        def response(model, text, status, count):
            output = [{
                "type": "message", "id": "msg_" + ident[5:], "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }] if status == "completed" else []  # fmt: skip
            return {
                "id": ident, "object": "response", "created_at": int(time.time()), "status": status, "model": model,
                "output": output, "usage": {"input_tokens": self.prompt_count, "output_tokens": count,
                          "total_tokens": self.prompt_count + count},
            }  # fmt: skip

        def event(kind, body):
            return f"event: {kind}\ndata: ".encode() + dumps({"type": kind, **body}).encode() + b"\n\n"

        started_stream = []

        def token(model, t):
            head = b""
            if not started_stream:
                started_stream.append(True)
                head = event("response.created", {"response": response(model, "", "in_progress", 0)})
            return head + event("response.output_text.delta", {"output_index": 0, "content_index": 0, "delta": t})

        def done(model, text, reason, count, started, load, final):
            if final:
                return response(model, text, "completed", count)
            return event("response.completed", {"response": response(model, text, "completed", count)})

        self._generate(native, lambda d: d["prompt"], token, done, "text/event-stream", stream_default=False)

    def v1_transcriptions(self, form):
        """/v1/audio/transcriptions (middleware/openai.go TranscriptionMiddleware, TranscriptionWriter): a model
        and an audio file as a form; {"text": ...} (response_format json, the default; others not simulated)."""
        if not form.get("model"):
            return self.error(400, "model is required")
        if not form.get("file"):
            return self.error(400, "file is required: http: no such file")
        native = self._from_client({"model": form["model"].decode()}, prompt=f"audio of {len(form['file'])} bytes")

        def done(model, text, reason, count, started, load, final):
            return {"text": text}

        self._generate(native, lambda d: d["prompt"], None, done, "application/json", stream_default=False)

    def v1_chat(self, data):
        self._openai(data, chat=True)

    def v1_completions(self, data):
        self._openai(data, chat=False)

    def _embed(self, data, inputs, answer):
        m = self._model(data)
        if m is None:
            return
        info = m["entry"].get("model_info", {})
        dims = int(info.get(f"{info.get('general.architecture')}.embedding_length", 768))
        options = data.get("options") or {}
        if problem := self.option_error(options):
            return self.error(500, problem)
        started = time.monotonic()
        try:
            runner, load = self.sched.acquire(m, options, self._keep_alive(data))
        except Busy as exc:
            return self.error(503, str(exc))
        except LoadFailed as exc:
            return self.error(500, str(exc))
        try:
            time.sleep(self.cfg.ttft)
            vectors = [embedding(t, dims) for t in inputs]
            self.send_json(200, answer(m["name"], vectors, started, load))
        finally:
            self.sched.release(runner)

    def embed(self, data):
        raw = data.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        self._embed(
            data,
            inputs,
            lambda model, vecs, started, load: {
                "model": model,
                "embeddings": vecs,
                "total_duration": int((time.monotonic() - started) * 1e9),
                "load_duration": int(load * 1e9),
                "prompt_eval_count": sum(len(str(i).split()) for i in inputs),
            },
        )

    def embeddings(self, data):
        self._embed(data, [data.get("prompt", "")], lambda model, vecs, started, load: {"embedding": vecs[0]})

    def v1_embeddings(self, data):
        raw = data.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        self._embed(
            data,
            inputs,
            lambda model, vecs, started, load: {
                "object": "list",
                "model": model,
                "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vecs)],
                "usage": {"prompt_tokens": 8, "total_tokens": 8},
            },
        )


def serve(cfg: Config) -> None:
    store = Store(cfg.models)
    cfg.models.mkdir(parents=True, exist_ok=True)
    handler = type("BoundHandler", (Handler,), {"cfg": cfg, "store": store, "sched": Scheduler(cfg, store)})

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024
        address_family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET

        def server_bind(self):
            # HTTPServer.server_bind resolves its own address (getfqdn): seconds without DNS. Ollama doesn't.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = cfg.host, cfg.port

    httpd = Server((cfg.host, cfg.port), handler)
    log("INFO", f"Listening on {cfg.host}:{cfg.port} (version {VERSION})")
    log(
        "INFO",
        "inference compute",
        gpus=",".join(g["uuid"] for g in cfg.gpus) or "cpu",
        num_parallel=cfg.num_parallel,
        max_queue=cfg.max_queue,
        context_length=cfg.context_length,
    )
    httpd.serve_forever()


class OpenAIAnswer:
    """A chat or text completion as openai/openai.go writes it, whole or as server-sent events; the prompt's count
    is the handler's (set once the prompt is evaluated)."""

    def __init__(self, handler, data, chat: bool):
        self.handler, self.chat = handler, chat
        self.ident = "chatcmpl-" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:8]
        self.obj = "chat.completion" if chat else "text_completion"
        # stream_options.include_usage (middleware/openai.go): a last chunk with no choices and the usage; a
        # completions stream also carries an empty usage on every chunk
        self.include_usage = bool((data.get("stream_options") or {}).get("include_usage"))

    def text_of(self, d):
        if self.chat:
            return " ".join(str(m.get("content", "")) for m in d.get("messages") or []) or None
        return d.get("prompt") or None

    def choice(self, t, reason, stream):
        if not self.chat:
            return {"index": 0, "text": t, "finish_reason": reason}
        return {
            "index": 0,
            "delta" if stream else "message": {"role": "assistant", "content": t},
            "finish_reason": reason,
        }

    def usage(self, count):
        prompt = self.handler.prompt_count
        return {"prompt_tokens": prompt, "completion_tokens": count, "total_tokens": prompt + count}

    def head(self, model, final):
        chunk = "" if final or not self.chat else ".chunk"
        return {"id": self.ident, "object": self.obj + chunk, "created": int(time.time()), "model": model,
                "system_fingerprint": "fp_ollama"}  # fmt: skip

    def token(self, model, t):
        chunk = self.head(model, final=False) | {"choices": [self.choice(t, None, True)]}
        if self.include_usage and not self.chat:
            chunk["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return b"data: " + dumps(chunk).encode() + b"\n\n"

    def done(self, model, text, reason, count, started, load, final):
        reason = "stop" if reason in ("load", "unload") else reason
        body = self.head(model, final) | {"choices": [self.choice(text, reason, not final)]}
        if final:
            return body | {"usage": self.usage(count)}
        if self.include_usage and not self.chat:
            body["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        out = b"data: " + dumps(body).encode() + b"\n\n"
        if self.include_usage:
            out += b"data: " + dumps(body | {"choices": [], "usage": self.usage(count)}).encode() + b"\n\n"
        return out + b"data: [DONE]\n\n"
