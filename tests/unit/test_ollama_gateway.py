"""The gateway's view of the plan: a pinned upstream allows the connections Ollama has slots for."""

from ollama_gateway import ollama_gateway_backends, ollama_gateway_routes


def host_vars(name, fits, num_parallel=4):
    return {
        "inventory_hostname": name,
        "ansible_host": "10.0.0.1",
        "ollama_plan": [
            {
                "name": "mixed",
                "address": "127.0.0.1",
                "port": 11435,
                "settings": {"num_parallel": num_parallel},
                "models": [f["model"] for f in fits],
                "fit": fits,
                "gpu_label": "GPU 0",
                "gpus": [{"index": 0, "uuid": "GPU-0"}],
            }
        ],
    }


def test_an_embedding_model_gets_one_connection_per_instance_its_neighbour_four():
    fits = [{"model": "llama3.1:8b", "slots": 4}, {"model": "nomic-embed-text:latest", "slots": 1}]
    backends = ollama_gateway_backends([host_vars("gpu1", fits)], gateway="gpu1")
    assert backends[0]["max_conns"] == 4 and backends[0]["slots"] == {"llama3.1:8b": 4, "nomic-embed-text:latest": 1}
    routing = ollama_gateway_routes(backends)
    conns = {m: [b["max_conns"] for b in routing["upstreams"][u]] for m, u in routing["routes"].items()}
    assert conns == {"llama3.1:8b": [4], "nomic-embed-text:latest": [1]}
    # same instance, different slots: two upstreams, each with its own limit
    assert len(routing["upstreams"]) == 2


def test_models_the_plan_could_not_judge_use_the_instances_parallel():
    fits = [{"model": "mystery:1b", "status": "unknown"}]
    routing = ollama_gateway_routes(ollama_gateway_backends([host_vars("gpu1", fits, 2)], gateway="gpu1"))
    assert [b["max_conns"] for b in routing["upstreams"][routing["routes"]["mystery:1b"]]] == [2]
