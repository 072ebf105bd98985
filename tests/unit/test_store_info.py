"""ollama_store_info: the store and its models' metadata in one call, shaped as the uri loops it replaces."""

import http.server
import importlib.util
import json
import socket
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("ollama_store_info", REPO / "plugins/modules/ollama_store_info.py")
store_info = importlib.util.module_from_spec(spec)
spec.loader.exec_module(store_info)

TAGS = {"models": [{"name": "Qwen3:0.6b", "size": 523}, {"name": "llama3.1:8b", "size": 4920}]}


@pytest.fixture
def instance():
    """An instance that lists TAGS and shows llama3.1:8b; it records every request it gets."""
    asked = []

    class Ollama(http.server.BaseHTTPRequestHandler):
        def answer(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def do_GET(self):  # noqa: N802 - http.server's name
            asked.append(("GET", self.path, None))
            self.answer(200, TAGS)

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append(("POST", self.path, body["model"]))
            if body["model"] == "llama3.1:8b":
                self.answer(200, {"model_info": {"general.architecture": "llama"}})
            else:
                self.answer(404, {"error": f"model '{body['model']}' not found"})

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ollama) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_port}", asked
        server.shutdown()


def unused_url():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{unused.getsockname()[1]}"


def test_the_first_instance_that_answers_lists_the_store(instance):
    url, asked = instance
    assert store_info.read_tags([unused_url(), url, unused_url()], 5) == (url, TAGS)
    assert asked == [("GET", "/api/tags", None)]  # the store is shared: one answer is enough


def test_no_instance_running_is_an_empty_store():
    assert store_info.read_tags([unused_url()], 5) == ("", {"models": []})


def test_only_models_the_store_holds_are_shown_by_ollamas_names(instance):
    url, asked = instance
    models = [{"model": "llama3.1:8b", "key": "a"}, {"model": "qwen3:0.6b", "key": "b"}, {"model": "gone:1b"}]
    results = store_info.read_shows(url, TAGS, models, 5)
    # qwen3:0.6b is the store's Qwen3:0.6b (Ollama ignores case); gone:1b is not asked for
    assert [r["item"] for r in results] == models[:2]
    assert [(r["status"], r["json"]) for r in results] == [
        (200, {"model_info": {"general.architecture": "llama"}}),
        (404, None),
    ]
    assert [a[2] for a in asked] == ["llama3.1:8b", "qwen3:0.6b"]
