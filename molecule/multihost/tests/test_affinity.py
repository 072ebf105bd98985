"""Conversations stay where their prompt is cached (issue 26): llama3.1:8b is pinned on four instances of two
hosts. Through either gateway, with the official clients, a conversation's turns go to one instance and its later
turns evaluate only their new tokens; a full or drained instance passes its conversations on, and gets them back;
when every instance is full, least_conn's queue takes the request; a client can turn it off per request."""

import json
import threading
import uuid
from pathlib import Path

import httpx
import ollama
import openai
from helpers.fleet import host
from helpers.ollama_client import burst, call
from helpers.waiting import wait_until

REPO = Path(__file__).resolve().parents[3]

CA = str(REPO / ".cache/artifacts/tls/gateway.crt")
USER = "olt-test-user-key-0001"
GATEWAYS = {"olt-mh-gw": "https://10.213.0.23:11434", "olt-mh-gw2": "https://10.213.0.24:11434"}
REQUEST_LOG = "/var/log/nginx/ollama-gateway-requests.log"
MODEL = "llama3.1:8b"
SYSTEM = "You are the ship's engineer. Answer in short, plain sentences, and name the part you mean. " * 6


class Seen:
    """The instance that answered each response (X-Ollama-Instance), through an httpx event hook."""

    def __init__(self):
        self.instances = []

    def __call__(self, response: httpx.Response):
        if response.request.url.path != "/api/version":
            self.instances.append(response.headers.get("x-ollama-instance"))


def clients(seen: Seen) -> dict:
    hooks = {"response": [seen]}
    return {
        gw: (
            ollama.Client(
                host=url, verify=CA, trust_env=False, headers={"Authorization": f"Bearer {USER}"}, event_hooks=hooks
            ),  # fmt: skip
            openai.OpenAI(
                base_url=f"{url}/v1",
                api_key=USER,
                http_client=httpx.Client(verify=CA, trust_env=False, event_hooks=hooks),
            ),
        )  # fmt: skip
        for gw, url in GATEWAYS.items()
    }


def test_a_conversation_stays_on_one_instance_through_either_gateway_with_the_official_clients():
    """Five turns each, every other one through the other gateway: native chat, OpenAI chat and completions, and
    /api/generate with the `context` each answer returns. The later turns of the native chat took less prompt time than its
    first (only their new tokens were evaluated, as Ollama's prompt cache does on the instance that has them)."""
    seen = Seen()
    by_gateway = clients(seen)
    order = [by_gateway[gw] for gw in ["olt-mh-gw", "olt-mh-gw2"] * 3][:5]
    topic = uuid.uuid4().hex  # a conversation no earlier run had
    native = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"About {topic}: where is it?"}]
    prompt_times = []
    for native_client, _ in order:
        answer = native_client.chat(model=MODEL, messages=native, options={"num_predict": 4})
        prompt_times.append(answer.prompt_eval_duration)
        native += [{"role": "assistant", "content": answer.message.content}, {"role": "user", "content": "and then?"}]
    assert len(set(seen.instances)) == 1, seen.instances
    assert max(prompt_times[1:]) < prompt_times[0], prompt_times

    seen.instances.clear()
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"About {topic}: what is it made of?"}]
    for _, api in order:
        answer = api.chat.completions.create(model=MODEL, messages=chat, max_tokens=4)
        chat += [{"role": "assistant", "content": answer.choices[0].message.content}, {"role": "user", "content": "more"}]  # fmt: skip
    assert len(set(seen.instances)) == 1, seen.instances

    seen.instances.clear()
    text = f"A log of {topic}. " * 20  # a prompt that grows by each answer, longer than the 256 bytes keyed
    for _, api in order:
        answer = api.completions.create(model=MODEL, prompt=text, max_tokens=4)
        text += answer.choices[0].text + " Next entry."
    assert len(set(seen.instances)) == 1, seen.instances

    seen.instances.clear()
    context = None
    for native_client, _ in order:
        answer = native_client.generate(
            model=MODEL, prompt=f"Tell me about {topic}. " * 20, context=context, options={"num_predict": 4}
        )
        context = answer.context
    # the first turn is keyed by its prompt, the next ones by the context it returned: one move at most
    assert len(set(seen.instances[1:])) == 1, seen.instances


def affine_servers() -> list[dict]:
    fleet = json.loads(host("olt-mh-gw").check_output("cat /etc/nginx/ollama-gateway/fleet.json"))
    return fleet["affine_upstreams"][fleet["affinity"][MODEL]]


def turn(messages: list[dict], gateway: str = "olt-mh-gw", tokens: int = 2, headers: dict | None = None, model=MODEL):
    body = {"model": model, "messages": messages, "stream": False, "options": {"num_predict": tokens}}
    return call(f"{GATEWAYS[gateway]}/api/chat", body, key=USER, cafile=CA, headers=headers)


def held(server: dict) -> int:
    """Requests the instance has in a slot, as the gateway host sees it (only gateways reach the instances)."""
    stats = host("olt-mh-gw").check_output(f"curl -sf http://{server['address']}:{server['port']}/standin/stats")
    return json.loads(stats)["active"].get(MODEL, 0)


def test_a_full_or_drained_instance_passes_its_conversations_on_and_gets_them_back():
    servers = affine_servers()
    by_name = {f"{s['host']}:{s['port']}": s for s in servers}
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Q {uuid.uuid4().hex}"}]
    first = turn(messages)
    assert first.status == 200
    home = by_name[first.headers["x-ollama-instance"]]
    # the model spelled as Ollama also reads it, and a model that is no string: the same instance, and a 400
    for spelling in ("LLAMA3.1:8B", "registry.ollama.ai/library/llama3.1:8b"):
        again = turn(messages, model=spelling)
        assert again.status == 200 and again.headers["x-ollama-instance"] == first.headers["x-ollama-instance"]
    assert turn(messages, model=["llama3.1:8b"]).status == 400

    # its instance full (the conversation's own long turns fill its slots): the next turn goes on, and is answered
    # 1000 tokens at the stand-in's 50/s: 20 s, far longer than the wait below and the next turn on a slow machine
    long = [threading.Thread(target=turn, args=(messages,), kwargs={"tokens": 1000}) for _ in range(home["max_conns"])]
    for t in long:
        t.start()
    wait_until(lambda: held(home) == home["max_conns"], 15, "the conversation's instance full")
    passed = turn(messages)
    assert passed.status == 200 and passed.headers["x-ollama-instance"] != first.headers["x-ollama-instance"]
    for t in long:
        t.join(60)

    # drained on both gateways: both send it to the same other instance; back home once the mark is lifted (the
    # drain tool reloads nginx, whose new workers take the next connections: waited for)
    drain = f"/usr/local/sbin/ollama-gateway-drain {home['host']}/{home['instance']}"
    answered_by = lambda: {turn(messages, gw).headers["x-ollama-instance"] for gw in GATEWAYS}  # noqa: E731
    for gw in GATEWAYS:
        host(gw).check_output(f"{drain} on --reason manual")
    try:
        wait_until(lambda: first.headers["x-ollama-instance"] not in answered_by(), 15, "the drained instance left")
        moved = answered_by()
        assert len(moved) == 1, moved  # the same neighbour on the ring through either gateway
    finally:
        for gw in GATEWAYS:
            host(gw).check_output(f"{drain} off --reason manual")
    wait_until(lambda: answered_by() == {first.headers["x-ollama-instance"]}, 15, "the conversation back home")

    # every slot of every instance taken by one conversation, and one more turn: least_conn's queue takes it
    slots = sum(s["max_conns"] for s in servers)
    body = {"model": MODEL, "messages": messages, "stream": False, "options": {"num_predict": 150}}
    answers = burst(f"{GATEWAYS['olt-mh-gw']}/api/chat", [body] * (slots + 1), key=USER, cafile=CA)
    assert [a.status for a in answers] == [200] * (slots + 1)
    assert {a.headers["x-ollama-instance"] for a in answers} == set(by_name)
    # nginx writes a request's line once its answer is sent: waited for
    wait_until(lambda: "overflow" in [line["affinity"] for line in chats_logged(slots + 1)], 15, "the overflow logged")
    routes = sorted(line["affinity"] for line in chats_logged(slots + 1))
    assert routes.count("overflow") >= 1 and set(routes) <= {"affine", "overflow"}, routes


def chats_logged(n: int) -> list[dict]:
    """The last N /api/chat lines of the first gateway's request log."""
    lines = host("olt-mh-gw").check_output(f"tail -n {n + 50} {REQUEST_LOG}").splitlines()
    return [entry for entry in map(json.loads, lines) if entry["path"] == "/api/chat"][-n:]


def test_a_client_turns_affinity_off_for_a_request():
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Q {uuid.uuid4().hex}"}]
    assert turn(messages).status == 200
    assert turn(messages, headers={"X-Ollama-Affinity": "off"}).status == 200
    # through the same upstream, which counts the model's slots, without the conversation's key
    wait_until(lambda: [line["affinity"] for line in chats_logged(2)] == ["affine", "balanced"], 15, "both logged")
