"""The gateway's view of the plan: a pinned upstream allows the connections Ollama has slots for."""

import json

import pytest
from ansible.errors import AnsibleFilterError
from ollama_gateway import (
    ollama_bind_address,
    ollama_gateway_backends,
    ollama_gateway_fleet,
    ollama_gateway_routes,
    ollama_gateway_vip_link,
    ollama_remote_gateways,
)


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


def two_instances():
    pinned = host_vars("gpu1", [{"model": "llama3.1:8b", "slots": 4, "context": 8192}])
    spare = dict(pinned["ollama_plan"][0], name="spare", port=11436, models=[], fit=[])
    pinned["ollama_plan"].append(spare)
    return ollama_gateway_backends([pinned], gateway="gpu1")


def test_fleet_names_routes_planned_contexts_and_every_upstream():
    fleet = ollama_gateway_fleet(two_instances())
    (upstream,) = fleet["routes"].values()
    assert list(fleet["routes"]) == ["llama3.1:8b"] and upstream.startswith("ollama_pinned_")
    assert fleet["contexts"] == {"llama3.1:8b": 8192}
    assert sorted(fleet["upstreams"]) == ["ollama_all", upstream]
    assert [s["port"] for s in fleet["upstreams"]["ollama_all"]] == [11435, 11436]
    assert (fleet["unpinned"], fleet["context_policy"]) == ("reject", "clamp")


def test_unpinned_models_go_only_to_instances_that_pin_nothing():
    fleet = ollama_gateway_fleet(two_instances(), unpinned=["gpu1/spare"])
    assert fleet["unpinned"] == "ollama_on_demand"
    assert [s["instance"] for s in fleet["upstreams"]["ollama_on_demand"]] == ["spare"]
    with pytest.raises(AnsibleFilterError, match="'gpu1/mixed' pins llama3.1:8b; a model loaded on demand"):
        ollama_gateway_fleet(two_instances(), unpinned=["gpu1/mixed"])
    with pytest.raises(AnsibleFilterError, match="no instance 'gpu9/spare'; instances are: gpu1/mixed, gpu1/spare"):
        ollama_gateway_fleet(two_instances(), unpinned=["gpu9/spare"])
    with pytest.raises(AnsibleFilterError, match="ollama_gateway_unpinned_models: 'everywhere' is neither"):
        ollama_gateway_fleet(two_instances(), unpinned="everywhere")


def test_an_unknown_context_policy_is_named():
    with pytest.raises(AnsibleFilterError, match="ollama_gateway_context_policy: 'truncate' is not one of: clamp"):
        ollama_gateway_fleet(two_instances(), context_policy="truncate")


def test_an_upstream_keeps_its_name_when_a_model_is_added_elsewhere():
    """The router reads fleet.json before nginx reloads the upstreams: a positional name would send a model to
    another model's instances in between."""
    before = ollama_gateway_routes(two_instances())["routes"]
    fits = [{"model": "aaa:1b", "slots": 1, "context": 4096}, {"model": "llama3.1:8b", "slots": 4, "context": 8192}]
    grown = host_vars("gpu1", fits)
    grown["ollama_plan"].append(dict(grown["ollama_plan"][0], name="spare", port=11436, models=[], fit=[]))
    after = ollama_gateway_routes(ollama_gateway_backends([grown], gateway="gpu1"))["routes"]
    assert after["llama3.1:8b"] == before["llama3.1:8b"]


def _route(name, address, source=None, rc=0, stderr=""):
    stdout = json.dumps([{"dst": address, "dev": "br0", "prefsrc": source, "flags": []}]) if rc == 0 else ""
    return {"item": {"name": name, "address": address}, "rc": rc, "stdout": stdout, "stderr": stderr}


def test_auto_binds_to_loopback_when_every_gateway_is_this_host():
    hostvars = {"gpu1": {"ansible_host": "10.0.0.11"}}
    assert ollama_remote_gateways(["gpu1"], "gpu1", hostvars) == []
    assert ollama_bind_address("auto", "gpu1", []) == "127.0.0.1"


def test_auto_binds_to_the_source_address_of_the_route_to_remote_gateways():
    hostvars = {"gw1": {"ansible_host": "10.0.0.2"}, "gw2": {"ansible_host": "localhost"}, "gpu1": {}}
    remote = ollama_remote_gateways(["gw1", "gw2", "gpu1"], "gpu1", hostvars)
    assert remote == [{"name": "gw1", "address": "10.0.0.2"}, {"name": "gw2", "address": "127.0.0.1"}]
    routes = [_route("gw1", "10.0.0.2", "10.0.0.11"), _route("gw3", "10.0.0.3", "10.0.0.11")]
    assert ollama_bind_address("auto", "gpu1", routes) == "10.0.0.11"
    assert ollama_bind_address("10.9.9.9", "gpu1", routes) == "10.9.9.9"  # the operator's word wins


def test_auto_names_the_host_and_gateway_it_cannot_decide_for():
    with pytest.raises(AnsibleFilterError, match=r"host gpu1, field ollama_bind_address: auto finds the gateways on "
                       r"different networks \(10.0.0.11 towards gw1; 10.1.0.11 towards gw2\)"):  # fmt: skip
        ollama_bind_address(
            "auto", "gpu1", [_route("gw1", "10.0.0.2", "10.0.0.11"), _route("gw2", "10.1.0.2", "10.1.0.11")]
        )
    with pytest.raises(
        AnsibleFilterError, match=r"auto found no route to gateway gw1 \(10.0.0.2\): Network is unreachable"
    ):
        ollama_bind_address("auto", "gpu1", [_route("gw1", "10.0.0.2", rc=2, stderr="Network is unreachable")])
    with pytest.raises(
        AnsibleFilterError,
        match=r"field ollama_bind_address: needs the address of gateway gw1, and gw1.invalid does not resolve",
    ):
        ollama_remote_gateways(["gw1"], "gpu1", {"gw1": {"ansible_host": "gw1.invalid"}})


def test_the_shared_address_goes_on_the_interface_in_its_network_even_on_its_holder():
    addresses = [
        {"ifname": "lo", "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": "mgmt0", "addr_info": [{"local": "192.168.1.5", "prefixlen": 24}]},
        # the holder: keepalived added the VIP beside the host's own address
        {
            "ifname": "eth1",
            "addr_info": [{"local": "10.0.0.5", "prefixlen": 24}, {"local": "10.0.0.30", "prefixlen": 24}],
        },
    ]
    assert ollama_gateway_vip_link(addresses, "10.0.0.30/24", "gw1") == {"dev": "eth1", "address": "10.0.0.5"}
    with pytest.raises(
        AnsibleFilterError,
        match=r"host gw1, field ollama_gateway_vip: no interface of gw1 has an address in 10.9.0.0/24",
    ):
        ollama_gateway_vip_link(addresses, "10.9.0.30/24", "gw1")


def spread(models_by_instance):
    """Backends of one host whose instances pin MODELS_BY_INSTANCE ({instance: [model, ...]})."""
    host = host_vars("gpu1", [])
    template = host["ollama_plan"].pop()
    for n, (name, models) in enumerate(models_by_instance.items()):
        fits = [{"model": m, "slots": 2} for m in models]
        host["ollama_plan"].append(dict(template, name=name, port=11435 + n, models=models, fit=fits))
    return ollama_gateway_backends([host], gateway="gpu1")


def test_a_model_on_more_than_one_instance_gets_an_upstream_that_keeps_conversations_on_one():
    backends = spread({"a": ["llama3.1:8b", "qwen3:0.6b"], "b": ["llama3.1:8b"], "c": ["nomic-embed-text:latest"]})
    fleet = ollama_gateway_fleet(backends)
    # only llama3.1:8b has a choice of instance; its affine upstream mirrors its least_conn one at its slots
    assert list(fleet["affinity"]) == ["llama3.1:8b"]
    affine = fleet["affinity"]["llama3.1:8b"]
    assert affine == fleet["routes"]["llama3.1:8b"] + "_affine"
    assert fleet["affine_upstreams"] == {affine: fleet["upstreams"][fleet["routes"]["llama3.1:8b"]]}
    assert [(s["instance"], s["max_conns"]) for s in fleet["affine_upstreams"][affine]] == [("a", 2), ("b", 2)]


def test_one_model_spelled_two_ways_on_two_hosts_is_one_route():
    """Hosts may pin one model under two spellings (Ollama compares names ignoring case): the router reads one
    route for it, over both hosts, under the first host's spelling."""
    one = host_vars("gpu1", [{"model": "qwen3:0.6b", "slots": 2, "context": 4096}])
    other = host_vars("gpu2", [{"model": "Qwen3:0.6B", "slots": 2, "context": 8192}])
    one["ollama_plan"][0]["address"] = other["ollama_plan"][0]["address"] = "0.0.0.0"
    fleet = ollama_gateway_fleet(ollama_gateway_backends([one, other], gateway="gpu1"))
    assert list(fleet["routes"]) == ["qwen3:0.6b"] and fleet["contexts"] == {"qwen3:0.6b": 4096}
    assert [s["host"] for s in fleet["upstreams"][fleet["routes"]["qwen3:0.6b"]]] == ["gpu1", "gpu2"]
    assert list(ollama_gateway_fleet(fleet["instances"], affinity_exclude=["QWEN3:0.6B"])["affinity"]) == []


def test_affinity_turns_off_fleet_wide_or_per_model_and_an_unknown_model_is_named():
    backends = spread({"a": ["llama3.1:8b", "qwen3:0.6b"], "b": ["llama3.1:8b", "qwen3:0.6b"]})
    assert len(ollama_gateway_fleet(backends)["affinity"]) == 2
    off = ollama_gateway_fleet(backends, affinity=False)
    assert off["affinity"] == {} and off["affine_upstreams"] == {}
    some = ollama_gateway_fleet(backends, affinity_exclude=["qwen3:0.6b"])
    assert list(some["affinity"]) == ["llama3.1:8b"]
    with pytest.raises(AnsibleFilterError, match="ollama_gateway_affinity_exclude: gemma3:1b not pinned.*llama3.1:8b"):
        ollama_gateway_fleet(backends, affinity_exclude=["gemma3:1b"])
    with pytest.raises(AnsibleFilterError, match="field ollama_gateway_affinity: 'yes' is not true or false"):
        ollama_gateway_fleet(backends, affinity="yes")
