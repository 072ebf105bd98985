"""Conformance: the official `ollama` and `openai` Python clients (PyPI, pinned in requirements-dev.txt) against
the deployed gateway, every endpoint users touch, as users call them. The test subnet only: no proxy."""

import asyncio
import sys
from pathlib import Path

import httpx
import ollama
import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from helpers.ollama_client import call  # noqa: E402

GATEWAY = "http://10.213.0.11:11434"
ADMIN = "olt-test-admin-key-0001"
PINNED = {"llama3.1:8b", "llama3.3:70b", "qwen3:0.6b"}
EMBED = "nomic-embed-text:latest"  # pinned nowhere: pulled, used and deleted by this module
# server/routes.go PsHandler (api.ProcessModelResponse): nothing else, no topology of ours
PS_FIELDS = {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"}


@pytest.fixture(scope="module")
def client():
    return ollama.Client(host=GATEWAY, trust_env=False)


@pytest.fixture(scope="module")
def admin():
    return ollama.Client(host=GATEWAY, trust_env=False, headers={"Authorization": f"Bearer {ADMIN}"})


@pytest.fixture(scope="module")
def api():
    return openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key="unused", http_client=httpx.Client(trust_env=False))


@pytest.fixture(scope="module")
def embedding_model(host, admin, client):
    """An unpinned embedding model, pulled through the gateway with the admin key; afterwards unloaded from
    every instance that loaded it (the others hold only their pinned model) and deleted."""
    progress = [p.status for p in admin.pull(EMBED, stream=True)]
    assert progress[-1] == "success"
    yield EMBED
    for port in (11435, 11436, 11437):
        host.check_output(
            f'curl -sf http://127.0.0.1:{port}/api/generate -d \'{{"model": "{EMBED}", "keep_alive": 0}}\''
        )
    admin.delete(EMBED)
    assert EMBED not in {m.model for m in client.list().models}


def test_ollama_client_list_show_ps(client):
    assert PINNED <= {m.model for m in client.list().models}
    shown = client.show("llama3.1:8b")
    assert shown.modelinfo["general.architecture"] == "llama" and "completion" in shown.capabilities
    loaded = client.ps().models
    assert loaded and {m.model for m in loaded} <= PINNED
    assert all(m.size_vram == m.size and m.context_length > 0 for m in loaded)
    raw = call(f"{GATEWAY}/api/ps").json()["models"]
    assert all(set(m) == PS_FIELDS for m in raw), raw


def test_ollama_client_generate_and_chat_streamed_or_not(client):
    assert client.generate(model="qwen3:0.6b", prompt="hi", options={"num_predict": 2}).done
    parts = list(client.generate(model="qwen3:0.6b", prompt="hi", stream=True, options={"num_predict": 3}))
    assert parts[-1].done and sum(1 for p in parts if p.response) == 3
    answer = client.chat(model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2})
    assert answer.message.role == "assistant" and answer.message.content
    streamed = list(client.chat(model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert streamed[-1].done and "".join(p.message.content for p in streamed)


def test_ollama_async_client_streams(client):
    async def chat():
        async_client = ollama.AsyncClient(host=GATEWAY, trust_env=False)
        stream = await async_client.chat(
            model="qwen3:0.6b", messages=[{"role": "user", "content": "hi"}], stream=True, options={"num_predict": 4}
        )
        return [part async for part in stream]

    parts = asyncio.run(chat())
    assert parts[-1].done and len([p for p in parts if p.message.content]) == 4


def test_ollama_client_embed(client, embedding_model):
    vectors = client.embed(model=embedding_model, input=["one", "two"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) > 0 and vectors[0] != vectors[1]
    assert len(client.embeddings(model=embedding_model, prompt="one").embedding) == len(vectors[0])  # legacy API


def test_ollama_client_management_needs_the_admin_key(client):
    with pytest.raises(ollama.ResponseError) as refused:
        client.pull("qwen3:0.6b")
    assert refused.value.status_code == 403
    with pytest.raises(ollama.ResponseError) as refused:
        client.delete("qwen3:0.6b")
    assert refused.value.status_code == 403


def test_openai_models(api):
    assert PINNED <= {m.id for m in api.models.list()}
    assert api.models.retrieve("llama3.3:70b").id == "llama3.3:70b"  # GET /v1/models/{model}
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("not-pulled:1b")


def test_openai_chat_completions_and_embeddings(api, embedding_model):
    chat = api.chat.completions.create(model="qwen3:0.6b", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert chat.choices[0].message.content and chat.usage.completion_tokens == 2
    stream = api.chat.completions.create(
        model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    completion = api.completions.create(model="qwen3:0.6b", prompt="hi", max_tokens=2)
    assert completion.choices[0].text
    vectors = api.embeddings.create(model=embedding_model, input=["one", "two"]).data
    assert [v.index for v in vectors] == [0, 1] and len(vectors[0].embedding) > 0
