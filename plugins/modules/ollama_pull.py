#!/usr/bin/python
"""Pull one model into a host's Ollama store through an instance's API, with progress in a file."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ollama_pull
short_description: Pull a model through a running Ollama instance, reporting progress while it runs
description:
  - Posts /api/pull (streamed) to the instance and writes what it reports (bytes done, total, rate) to
    I(progress_file) about every second, so a play that runs this module with C(async) can print progress while
    a 40 GB pull runs (Ansible shows a task's result only when it ends).
  - When I(source) is another name (the model as a local registry serves it), copies it to I(model) and deletes
    I(source) afterwards (/api/copy, /api/delete), so clients keep using the usual name; the blobs are shared.
  - Ollama verifies every blob's sha256 while it pulls; this module returns the manifest digest the store holds.
options:
  url:
    description: Base URL of an instance of the host (the store is shared by all of them).
    type: str
    required: true
  model:
    description: The name clients use, for example C(llama3.1:8b).
    type: str
    required: true
  source:
    description: The name to pull, for example C(registry.local:5000/library/llama3.1:8b); default I(model).
    type: str
  insecure:
    description: Plain HTTP to the registry (Ollama's --insecure).
    type: bool
    default: false
  progress_file:
    description: JSON progress, replaced about every second; C(done) is true once the pull ended.
    type: path
    required: true
  timeout:
    description: Seconds without a byte from the instance before the pull counts as failed.
    type: int
    default: 300
"""

EXAMPLES = r"""
- name: Pull llama3.1:8b through the first instance, progress in a file
  ollama_pull:
    url: http://127.0.0.1:11434
    model: llama3.1:8b
    progress_file: /run/ollama-pull.json
  async: 7200
  poll: 0
"""

RETURN = r"""
digest:
  description: The manifest digest (hex) of I(model) in the store after the pull.
  type: str
  returned: success
bytes:
  description: Size of the model's blobs.
  type: int
  returned: success
seconds:
  description: How long the pull took.
  type: float
  returned: success
"""

import json
import os
import time
import urllib.error
import urllib.request
from collections import deque

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ollama.fleet.plugins.module_utils.model_names import key


def call(url, path, body=None, method=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=timeout)


class Progress:
    """What the pull reported so far, written atomically for the play's progress task to read."""

    def __init__(self, path, model, source):
        self.path, self.started = path, time.monotonic()
        self.state = {"model": model, "source": source, "status": "starting", "completed": 0, "total": 0, "rate": 0}
        self.layers = {}
        self.window = deque(maxlen=30)  # (seconds, bytes) samples: the rate over the last ~30 s
        self.written = 0.0
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def update(self, line):
        if "digest" in line and line.get("total"):
            self.layers[line["digest"]] = (line.get("completed", 0), line["total"])
        self.state["status"] = line.get("status", self.state["status"])
        self.state["completed"] = sum(done for done, _ in self.layers.values())
        self.state["total"] = sum(total for _, total in self.layers.values())
        if time.monotonic() - self.written >= 1:
            self.write()

    def write(self, **final):
        now = time.monotonic()
        self.window.append((now, self.state["completed"]))
        (t0, b0), (t1, b1) = self.window[0], self.window[-1]
        self.state.update(rate=int((b1 - b0) / (t1 - t0)) if t1 > t0 else 0, elapsed=round(now - self.started, 1))
        self.state.update({"done": False, **final})
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
        os.replace(tmp, self.path)
        self.written = now


def pull(module, progress):
    p = module.params
    body = {"model": p["source"], "insecure": p["insecure"], "stream": True}
    with call(p["url"], "/api/pull", body, timeout=p["timeout"]) as response:
        for raw in response:
            if not raw.strip():
                continue
            line = json.loads(raw)
            if "error" in line:
                raise RuntimeError(line["error"])
            progress.update(line)
            if line.get("status") == "success":
                return
    raise RuntimeError("the instance ended the pull without reporting success")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            model=dict(type="str", required=True),
            source=dict(type="str"),
            insecure=dict(type="bool", default=False),
            progress_file=dict(type="path", required=True),
            timeout=dict(type="int", default=300),
        ),
    )
    p = module.params
    p["source"] = p["source"] or p["model"]
    progress = Progress(p["progress_file"], p["model"], p["source"])
    where = f"pulling {p['source']} through {p['url']}"
    hint = (
        f" (the fleet's registry serves only what it was loaded with: is {p['model']} in ollama_registry_models?)"
        if p["source"] != p["model"]
        else ""
    )
    try:
        pull(module, progress)
        if p["source"] != p["model"]:
            call(p["url"], "/api/copy", {"source": p["source"], "destination": p["model"]}).close()
            call(p["url"], "/api/delete", {"model": p["source"]}, method="DELETE").close()
        with call(p["url"], "/api/tags") as response:
            # the store names a model as first pulled; Ollama finds it by any spelling (model_names.key)
            stored = {key(m["name"]): m for m in json.load(response)["models"]}
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace").strip()
        progress.write(done=True, error=f"HTTP {e.code}: {detail}")
        module.fail_json(msg=f"{where}: HTTP {e.code} from {e.url}: {detail}")
    except (OSError, ValueError, RuntimeError) as e:
        progress.write(done=True, error=str(e))
        module.fail_json(msg=f"{where}: {e}{hint}")
    entry = stored.get(key(p["model"]))
    if entry is None:
        progress.write(done=True, error="not in the store after the pull")
        module.fail_json(msg=f"{where}: the pull succeeded but {p['model']} is not in /api/tags")
    progress.write(done=True, status="success")
    module.exit_json(
        changed=True, digest=entry.get("digest", ""), bytes=entry.get("size", 0), seconds=progress.state["elapsed"]
    )


if __name__ == "__main__":
    main()
