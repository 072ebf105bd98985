"""One JSON request, as the read-only modules make them to Ollama instances and the gateway on the host itself."""

import json
import urllib.error
import urllib.request


def call(url, timeout=10, body=None, context=None):
    """GET URL, or POST BODY to it as JSON: (status, its answer's JSON), None for an answer that is not JSON. An HTTP
    error is its status, not an exception; one that did not answer at all (refused, timed out) raises, and the caller
    says which instance or gateway that was."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, None
    try:
        return status, json.loads(text)
    except ValueError:
        return status, None
