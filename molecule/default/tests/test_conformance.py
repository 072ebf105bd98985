"""Conformance: the official `ollama` and `openai` Python clients (PyPI, pinned in requirements-dev.txt) against
the deployed gateway, every endpoint users touch, as users call them. The test subnet only: no proxy."""

import asyncio
import http.client

import httpx
import ollama
import openai
import pytest
from helpers.ollama_client import call

GATEWAY = "http://10.213.0.11:11434"
ADMIN = "olt-test-admin-key-0001"
PINNED = {"llama3.1:8b", "llama3.3:70b", "qwen3:0.6b"}
EMBED = "nomic-embed-text:latest"  # pinned nowhere (here: in the store of no host either)
# server/routes.go PsHandler (api.ProcessModelResponse), plus the gateway's ollama_fleet, which clients ignore
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


def test_ollama_client_list_show_ps(client):
    assert PINNED <= {m.model for m in client.list().models}
    shown = client.show("llama3.1:8b")
    assert shown.modelinfo["general.architecture"] == "llama" and "completion" in shown.capabilities
    loaded = client.ps().models
    assert loaded and {m.model for m in loaded} <= PINNED
    assert all(m.size_vram == m.size and m.context_length > 0 for m in loaded)
    raw = call(f"{GATEWAY}/api/ps").json()["models"]
    assert all(set(m) == PS_FIELDS | {"ollama_fleet"} for m in raw), raw


def test_ollama_ps_through_the_gateway_is_the_whole_fleet_every_time(client):
    """`OLLAMA_HOST=gateway ollama ps` once showed whichever instance least_conn picked: a different single
    model on every call. Now every instance's models, the same on every call, each with where it runs."""
    for name in PINNED:  # each pinned model loaded (the warm-up did; a request makes sure)
        assert client.generate(model=name, prompt="hi", options={"num_predict": 1}).done
    calls = [client.ps().models for _ in range(5)]
    assert [sorted(m.model for m in models) for models in calls] == [sorted(PINNED)] * 5
    seen = [[(m.model, m.size_vram, m.context_length) for m in models] for models in calls]
    assert all(s == seen[0] for s in seen)
    raw = call(f"{GATEWAY}/api/ps").json()["models"]
    where = {m["name"]: (m["ollama_fleet"]["instance"], len(m["ollama_fleet"]["gpus"])) for m in raw}
    assert where == {"llama3.1:8b": ("small", 2), "llama3.3:70b": ("large", 5), "qwen3:0.6b": ("solo", 1)}
    listed = call(f"{GATEWAY}/api/tags").json()["models"]
    assert [m["name"] for m in listed] == sorted(PINNED)
    assert all(m["ollama_fleet"]["hosts"] == ["olt-default-gpu1"] for m in listed)


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


def test_a_model_pinned_nowhere_is_refused_naming_what_is_served(client, api):
    """ollama_gateway_unpinned_models: reject (the default): it would load on an instance and evict a pinned
    model. The on-demand routing is tested in the multihost scenario, which has an instance pinning nothing."""
    served = "this gateway serves llama3.1:8b, llama3.3:70b, qwen3:0.6b"
    for ask in (lambda: client.embed(model=EMBED, input=["one"]), lambda: client.generate(model="mistral:7b")):
        with pytest.raises(ollama.ResponseError) as refused:
            ask()
        assert refused.value.status_code == 404 and served in refused.value.error
    with pytest.raises(openai.NotFoundError) as refused:
        api.embeddings.create(model=EMBED, input=["one"])
    assert served in str(refused.value)


def test_ollama_client_management_is_refused_even_with_the_admin_key(client, admin):
    for who in (client, admin):
        for manage in (who.pull, who.delete):
            with pytest.raises(ollama.ResponseError) as refused:
                manage("qwen3:0.6b")
            assert refused.value.status_code == 403 and "site.yml" in refused.value.error


def test_openai_models(api):
    assert PINNED <= {m.id for m in api.models.list()}
    assert api.models.retrieve("llama3.3:70b").id == "llama3.3:70b"  # GET /v1/models/{model}
    assert api.models.retrieve("llama3.3:70b").created > 1_700_000_000  # the store's time, not 0
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("not-pulled:1b")


def test_openai_chat_completions(api):
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


def test_openai_responses_and_anthropic_messages_reach_the_pinned_instance(api):
    """/v1/responses and /v1/messages, which Ollama 0.33 serves, answered 404 at the gateway (issue 23)."""
    raw = api.responses.with_raw_response.create(model="llama3.3:70b", input="hi", max_output_tokens=2)
    assert raw.headers["x-ollama-instance"] == "olt-default-gpu1:11436" and raw.parse().output_text
    ask = {"model": "qwen3:0.6b", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    answer = call(f"{GATEWAY}/v1/messages", ask)
    assert answer.status == 200 and answer.headers["x-ollama-instance"] == "olt-default-gpu1:11437"
    assert answer.json()["type"] == "message" and answer.json()["content"][0]["text"]
    # an Anthropic client reads errors in Anthropic's shape (anthropic/anthropic.go NewError)
    missing = call(f"{GATEWAY}/v1/messages", {**ask, "model": "mistral:7b"})
    assert missing.status == 404 and missing.json()["type"] == "error"
    assert (
        missing.json()["error"]["type"] == "not_found_error"
        and "this gateway serves" in missing.json()["error"]["message"]
    )
    assert call(f"{GATEWAY}/api/status").json() == {"cloud": {"disabled": False, "source": "none"}}


def test_audio_transcriptions_go_where_the_forms_model_is_pinned(api):
    """A multipart form: the router reads its first "model" field, as Go's FormValue does, wherever the audio
    file stands in it."""
    audio = ("clip.wav", b"RIFF" + b"\0" * 2_000_000, "audio/wav")
    raw = api.audio.transcriptions.with_raw_response.create(model="llama3.3:70b", file=audio)
    assert raw.headers["x-ollama-instance"] == "olt-default-gpu1:11436" and raw.parse().text
    body = (
        b'--b0\r\nContent-Disposition: form-data; name="file"; filename="model"\r\n\r\nRIFF\r\n'
        b'--b0\r\nContent-Disposition: form-data; name="model"\r\n\r\nqwen3:0.6b\r\n'
        b'--b0\r\nContent-Disposition: form-data; name="model"\r\n\r\nllama3.3:70b\r\n--b0--\r\n'
    )
    conn = http.client.HTTPConnection("10.213.0.11", 11434, timeout=30)
    conn.request(
        "POST", "/v1/audio/transcriptions", body=body, headers={"Content-Type": "multipart/form-data; boundary=b0"}
    )
    answer = conn.getresponse()
    answer.read()
    conn.close()
    assert answer.status == 200 and answer.getheader("X-Ollama-Instance") == "olt-default-gpu1:11437"
