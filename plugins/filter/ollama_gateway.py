"""The gateway's view of the fleet: every instance as the gateway reaches it, and model routes."""

import hashlib
import ipaddress
import json
import socket

from ansible.errors import AnsibleFilterError
from ansible_collections.ollama.fleet.plugins.module_utils import addresses, model_names


def model_key(name):
    """A model's identity to Ollama (model_names.key); None for a name that is none (no pinned model has it)."""
    try:
        return model_names.key(name)
    except model_names.InvalidModelName:
        return None


def ollama_remote_gateways(gateways, host, hostvars, field="ollama_bind_address"):
    """The gateways on other hosts than `host`, as [{name, address}]: their ansible_host, a name resolved here
    (ip route get and keepalived's unicast peers take addresses only). `field` is the setting that needs them,
    for the error."""
    remote = []
    for name in gateways:
        if name == host:
            continue
        address = hostvars[name].get("ansible_host", name)
        try:
            ipaddress.ip_address(address)
        except ValueError:
            try:
                address = socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP)[0][4][0]
            except OSError as exc:
                raise AnsibleFilterError(
                    f"host {host}, field {field}: needs the address of gateway {name}, and {address} does not "
                    f"resolve ({exc}); give {name} an ansible_host address"
                ) from None
        remote.append({"name": name, "address": address})
    return remote


def ollama_gateway_vip_link(addresses, vip, host):
    """Where keepalived carries the shared address `vip` ("10.0.0.30/24") on `host`: the interface with an address
    of its own in the VIP's network, and that address (VRRP's unicast source). `addresses`: `ip -json -4 addr show`.
    Not a route lookup: on the holder the VIP is local, and its route would name the loopback."""
    network = ipaddress.ip_interface(vip).network
    shared = str(ipaddress.ip_interface(vip).ip)
    for link in addresses:
        for address in link.get("addr_info", []):
            own = ipaddress.ip_interface(f"{address['local']}/{address['prefixlen']}")
            if own.network == network and str(own.ip) != shared:
                return {"dev": link["ifname"], "address": str(own.ip)}
    raise AnsibleFilterError(
        f"host {host}, field ollama_gateway_vip: no interface of {host} has an address in {network}; the shared "
        "address must be on a network all gateways are on (VRRP moves it between neighbours)"
    )


def ollama_bind_address(setting, host, routes):
    """The address the instances of `host` listen on: `setting`, or for `auto` loopback when no gateway is on
    another host, else the source address of this host's route to the gateways (`routes`: the results of
    `ip -json route get GATEWAY`, one per remote gateway)."""
    if setting != "auto":
        return setting
    where = f"host {host}, field ollama_bind_address"
    sources = {}
    for result in routes:
        if result.get("skipped"):
            continue
        gateway = result["item"]
        if result.get("rc") != 0:
            raise AnsibleFilterError(
                f"{where}: auto found no route to gateway {gateway['name']} ({gateway['address']}): "
                f"{result.get('stderr', '').strip()}; set ollama_bind_address to {host}'s address on the gateways' network"
            )
        source = (json.loads(result["stdout"]) or [{}])[0].get("prefsrc")
        if not source:
            raise AnsibleFilterError(f"{where}: auto found no source address towards gateway {gateway['name']}")
        sources.setdefault(source, []).append(gateway["name"])
    if not sources:
        return "127.0.0.1"
    if len(sources) > 1:
        seen = "; ".join(f"{address} towards {', '.join(names)}" for address, names in sorted(sources.items()))
        raise AnsibleFilterError(
            f"{where}: auto finds the gateways on different networks ({seen}) and instances listen on one address; "
            "set ollama_bind_address (0.0.0.0: every address, the firewall still admits only the gateways)"
        )
    return next(iter(sources))


def ollama_gateway_address(address, host, gateway, ansible_host):
    """The address gateway `gateway` uses for an instance of `host` listening on `address`: a wildcard
    means loopback on the same host, else the host's ansible_host. The drain tool names instances so."""
    if addresses.is_wildcard(address):
        return "127.0.0.1" if host == gateway else ansible_host
    return address


def ollama_gateway_backends(hosts, gateway):
    backends = []
    for hv in hosts:
        host = hv.get("inventory_hostname")
        plan = hv.get("ollama_plan")
        if plan is None:
            raise AnsibleFilterError(
                f"gateway {gateway}: host {host} has no instance plan in this run; run site.yml on the GPU hosts "
                "together with the gateway (a --limit to the gateway alone cannot see the instances)"
            )
        for instance in plan:
            address = instance["address"]
            if addresses.is_loopback(address) and host != gateway:
                raise AnsibleFilterError(
                    f"host {host}, instance '{instance['name']}', field ollama_bind_address: the instance listens on "
                    f"{address}, which gateway {gateway} cannot reach; set it to an address of {host} on the gateway's "
                    f"network (e.g. {hv.get('ansible_host', host)})"
                )
            address = ollama_gateway_address(address, host, gateway, hv.get("ansible_host", host))
            backends.append(
                {
                    "host": host,
                    "instance": instance["name"],
                    "address": address,
                    "port": instance["port"],
                    "max_conns": int(instance["settings"].get("num_parallel", 1)),
                    "models": list(instance.get("models", [])),
                    # what Ollama gives each pinned model (1 for embedding and single-slot models)
                    "slots": {f["model"]: f["slots"] for f in instance.get("fit", []) if "slots" in f},
                    # the context each pinned model runs at (what a client may not change)
                    "contexts": {f["model"]: f["context"] for f in instance.get("fit", []) if f.get("context")},
                    "gpu_label": instance.get("gpu_label", ""),
                    "gpus": [{"index": g.get("index"), "uuid": g.get("uuid")} for g in instance.get("gpus", [])],
                }
            )
    if not backends:
        raise AnsibleFilterError(
            f"gateway {gateway}: no Ollama instance to balance; is the group ollama_gateway_backend_group names empty?"
        )
    return _one_spelling(backends)


def _one_spelling(backends):
    """BACKENDS with each model under one name fleet-wide, the first host's: hosts may spell one model
    otherwise (Qwen3:0.6B, qwen3:0.6b), and the router, the routes and the metrics know it by one name."""
    first = {}
    for backend in backends:
        for model in backend["models"]:
            first.setdefault(model_key(model), model)
    for backend in backends:
        name = {model: first[model_key(model)] for model in backend["models"]}
        backend["models"] = [name[model] for model in backend["models"]]
        for field in ("slots", "contexts"):
            backend[field] = {name.get(model, model): value for model, value in backend[field].items()}
    return backends


def ollama_gateway_routes(backends):
    """{"upstreams": {name: [backend, …]}, "routes": {model: name}}: one upstream per distinct set of
    instances (with the model's slots on each) that pin a model; a model pinned nowhere has no route (the router
    refuses it, or sends it to the on-demand instances, as fleet.json's unpinned policy says). A pinned upstream's max_conns is the slots Ollama gives that model, not the instance's
    num_parallel: an embedding model has one whatever OLLAMA_NUM_PARALLEL says."""
    by_model = {}
    for backend in backends:
        for model in backend["models"]:
            slots = backend.get("slots", {}).get(model, backend["max_conns"])
            by_model.setdefault(model, []).append(dict(backend, max_conns=slots))
    upstreams, routes, names = {}, {}, {}
    for model in sorted(by_model):
        key = tuple((b["host"], b["instance"], b["max_conns"]) for b in by_model[model])
        if key not in names:
            # named by its members, not by position: a model added elsewhere renames no upstream, so a
            # router reading a newer fleet.json than nginx has loaded never sends a model to another's
            # instances (an unknown name fails with 502 until the reload instead)
            names[key] = "ollama_pinned_" + hashlib.sha256(repr(key).encode()).hexdigest()[:10]
            upstreams[names[key]] = by_model[model]
        routes[model] = names[key]
    return {"upstreams": upstreams, "routes": routes}


def ollama_gateway_affinity(routing, enabled=True, exclude=()):
    """{"upstreams": {affine name: the pinned upstream it mirrors}, "routes": {model: affine name}}: the models
    whose conversations the router keeps on one instance, those pinned on more than one. ENABLED false: none
    (ollama_gateway_affinity); EXCLUDE: pinned models that keep least_conn alone (ollama_gateway_affinity_exclude)."""
    if not isinstance(enabled, bool):
        raise AnsibleFilterError(f"field ollama_gateway_affinity: {enabled!r} is not true or false")
    if isinstance(exclude, str) or not all(isinstance(m, str) for m in exclude):
        raise AnsibleFilterError(f"field ollama_gateway_affinity_exclude: {exclude!r} is not a list of model names")
    pinned = {model_key(model): model for model in routing["routes"]}
    unknown = sorted(model for model in exclude if model_key(model) not in pinned)
    if unknown:
        raise AnsibleFilterError(
            f"field ollama_gateway_affinity_exclude: {', '.join(unknown)} not pinned by any instance; pinned models "
            f"are: {', '.join(sorted(routing['routes']))}"
        )
    exclude = {model_key(model) for model in exclude}
    upstreams, routes = {}, {}
    for model, name in sorted(routing["routes"].items()):
        if enabled and model_key(model) not in exclude and len(routing["upstreams"][name]) > 1:
            upstreams[f"{name}_affine"] = name
            routes[model] = f"{name}_affine"
    return {"upstreams": upstreams, "routes": routes}


def on_demand_backends(backends, unpinned):
    """The instances named for models pinned nowhere ("HOST/INSTANCE"), each checked to pin nothing: an
    on-demand model loaded beside a pinned one could evict it."""
    if unpinned == "reject":
        return []
    if not isinstance(unpinned, list) or not unpinned:
        raise AnsibleFilterError(
            f"field ollama_gateway_unpinned_models: {unpinned!r} is neither 'reject' nor a list of HOST/INSTANCE "
            "names of instances that pin no model"
        )
    by_name = {f"{b['host']}/{b['instance']}": b for b in backends}
    chosen = []
    for name in unpinned:
        backend = by_name.get(name)
        if backend is None:
            raise AnsibleFilterError(
                f"field ollama_gateway_unpinned_models: no instance {name!r}; instances are: {', '.join(sorted(by_name))}"
            )
        if backend["models"]:
            raise AnsibleFilterError(
                f"field ollama_gateway_unpinned_models: instance {name!r} pins {', '.join(backend['models'])}; a model "
                "loaded on demand beside them could evict them. Name instances with models: []"
            )
        chosen.append(backend)
    return chosen


def ollama_gateway_fleet(
    backends,
    unpinned="reject",
    context_policy="clamp",
    drained_dir="",
    stub_status="",
    request_limit=0,
    gateway="",
    request_metrics="",
    affinity=True,
    affinity_exclude=(),
    up=None,
):
    """The gateway's one data file (fleet.json): what the router, the health checker and the drain tool
    (which renders the upstreams from it) read. Pinned models: upstream, planned context per instance, and
    for models pinned on more than one instance (unless AFFINITY is off or the model is in AFFINITY_EXCLUDE)
    an upstream that keeps a conversation on one instance (affine_upstreams, affinity: model to its name)."""
    if context_policy not in ("clamp", "reject"):
        raise AnsibleFilterError(
            f"field ollama_gateway_context_policy: {context_policy!r} is not one of: clamp, reject"
        )
    routing = ollama_gateway_routes(backends)
    affine = ollama_gateway_affinity(routing, affinity, affinity_exclude)
    upstreams = {"ollama_all": backends, **routing["upstreams"]}
    on_demand = on_demand_backends(backends, unpinned)
    if on_demand:
        upstreams["ollama_on_demand"] = on_demand
    contexts = {}
    for backend in backends:
        for model, context in backend.get("contexts", {}).items():
            contexts[model] = min(context, contexts.get(model, context))
    server_keys = ("host", "instance", "address", "port", "max_conns", "gpu_label")
    servers = {name: [{k: b[k] for k in server_keys} for b in members] for name, members in sorted(upstreams.items())}
    return {
        "instances": backends,
        "upstreams": servers,
        "routes": routing["routes"],
        # the same instances as the model's upstream, hashed by conversation (ollama-gateway-drain renders them)
        "affine_upstreams": {name: servers[base] for name, base in sorted(affine["upstreams"].items())},
        "affinity": affine["routes"],
        "contexts": contexts,
        "unpinned": "ollama_on_demand" if on_demand else "reject",
        "context_policy": context_policy,
        "drained_dir": drained_dir,
        # when an instance is up, for the router's /healthz, the metrics and the health checker alike
        "up": up or {"path": "/api/version", "timeout": 2, "fails": 2, "interval": 3},
        "stub_status": stub_status,
        # where mtail serves the per-request metrics it reads from the request log ("" for none)
        "request_metrics": request_metrics,
        "request_limit": request_limit,
        "gateway": gateway,
    }


def ollama_gateway_connections(ss_lines, process="nginx"):
    """{"ADDRESS:PORT": n}: established connections `process` holds, by peer, from `ss -Htnp state established`
    lines (Recv-Q, Send-Q, local, peer, process)."""
    counts = {}
    for line in ss_lines:
        fields = line.split()
        if len(fields) >= 5 and f'"{process}"' in fields[4]:
            peer = fields[3].replace("[", "").replace("]", "")
            counts[peer] = counts.get(peer, 0) + 1
    return counts


class FilterModule:
    def filters(self):
        return {
            "ollama_gateway_backends": ollama_gateway_backends,
            "ollama_gateway_routes": ollama_gateway_routes,
            "ollama_gateway_fleet": ollama_gateway_fleet,
            "ollama_gateway_address": ollama_gateway_address,
            "ollama_gateway_connections": ollama_gateway_connections,
            "ollama_remote_gateways": ollama_remote_gateways,
            "ollama_bind_address": ollama_bind_address,
            "ollama_gateway_vip_link": ollama_gateway_vip_link,
        }
