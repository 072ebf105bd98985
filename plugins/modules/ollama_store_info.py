#!/usr/bin/python
"""Read a host's shared model store, and Ollama's metadata of the models it holds, in one call (issue 28)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ollama_store_info
short_description: Read the shared store's models and their Ollama metadata through the first instance that answers
description:
  - Asks each of I(urls) in turn for C(/api/tags) until one answers with a model list (the store is shared by every
    instance of the host), then asks that instance for C(/api/show) of each of I(models) the store holds.
  - One module call where a loop of C(ansible.builtin.uri) tasks made one call per instance tried and per model; the
    answers have the shape of that loop's results, which the plan's filters read.
  - Never changes anything; runs in check mode as well. An instance or a model that does not answer is left out,
    not an error (on a first deploy no instance runs yet).
options:
  urls:
    description: Base URLs of instances of the host, in the order to try them.
    type: list
    elements: str
    required: true
  models:
    description:
      - Model sources (each with at least C(model), the name as the plan pins it) whose C(/api/show) to read where the
        store holds them, names compared as Ollama compares them.
    type: list
    elements: dict
    default: []
  timeout:
    description: Seconds each request may take.
    type: int
    default: 5
"""

EXAMPLES = r"""
- name: Read the store and the metadata of its pinned models
  ollama.fleet.ollama_store_info:
    urls: [http://127.0.0.1:11434, http://127.0.0.1:11435]
    models: [{model: llama3.1:8b}]
  register: __ollama_store
"""

RETURN = r"""
url:
  description: The instance that answered C(/api/tags); empty where none did.
  type: str
  returned: always
tags:
  description: >-
    Its C(/api/tags) answer; C({"models": []}) where none answered.
  type: dict
  returned: always
results:
  description:
    - >-
      Per model the store holds, C(item) (the input), C(status) and C(json) of its C(/api/show), or C(status) -1
      and C(msg) where it did not answer: the shape of an C(ansible.builtin.uri) loop's results.
  type: list
  elements: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ollama.fleet.plugins.module_utils.http_json import call
from ansible_collections.ollama.fleet.plugins.module_utils.model_names import key


def read_tags(urls, timeout):
    """The first of URLS whose /api/tags lists models, and that list."""
    for url in urls:
        try:
            status, answer = call(url + "/api/tags", timeout)
        except Exception:  # noqa: BLE001, S112 - not running yet, or not Ollama: try the next instance
            continue
        if status == 200 and isinstance(answer, dict) and isinstance(answer.get("models"), list):
            return url, answer
    return "", {"models": []}


def read_shows(url, tags, models, timeout):
    stored = set()
    for model in tags["models"]:
        try:
            stored.add(key(model["name"]))
        except Exception:  # noqa: BLE001, S112 - a name Ollama lists that is not one we pin is none of ours
            continue
    results = []
    for model in models:
        if key(model["model"]) not in stored:
            continue
        result = {"item": model}
        try:
            status, answer = call(url + "/api/show", timeout, {"model": model["model"]})
            result.update(status=status, json=answer)
        except Exception as error:  # noqa: BLE001 - a read that failed is a missing answer, not a traceback
            result.update(status=-1, msg=str(error) or type(error).__name__)
        results.append(result)
    return results


def main():
    module = AnsibleModule(
        argument_spec={
            "urls": {"type": "list", "elements": "str", "required": True},
            "models": {"type": "list", "elements": "dict", "default": []},
            "timeout": {"type": "int", "default": 5},
        },
        supports_check_mode=True,
    )
    p = module.params
    url, tags = read_tags(p["urls"], p["timeout"])
    results = read_shows(url, tags, p["models"], p["timeout"]) if url else []
    module.exit_json(changed=False, url=url, tags=tags, results=results)


if __name__ == "__main__":
    main()
