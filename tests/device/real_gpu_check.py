#!/usr/bin/env python3
"""What the toolkit assumes of a real NVIDIA host, checked on one (run by hand, as root, on a GPU machine).

CI has no GPU: gpu_facts and the instance's hardening are tested there against the simulated driver
(tests/gpu_sim). This script checks the same two things against a real driver and writes what it saw
into OUT (default ./real-gpu-check), for tests/unit/fixtures/real-driver/:

1. gpu_facts, run as the module it is (NVML and the nvidia-smi fallback), and nvidia-smi's raw output
   (the --query-gpu CSV gpu_facts asks for, -L, -q) so the parser is unit-tested on real text.
2. A CUDA probe (ctypes on libcuda.so.1: cuInit, cuDeviceGetCount, a context and a 64 MiB allocation)
   run in transient units with the [Service] settings of roles/ollama/templates/ollama@.service.j2 and
   the device allow-list instance-devices.conf.j2 renders: the instance's own GPU, another instance's
   GPU only, the fallback list, and CUDA_VISIBLE_DEVICES by UUID. Which GPUs each one sees is the
   answer to "can an instance use its GPUs, and only those?".

Needs: python3 with jinja2 and nvidia-ml-py, ansible-core importable (PYTHONPATH), and systemd: this
host's, or a booted container's (boot_probe_host.sh sets OLLAMA_PROBE_ENTER, the command that enters it,
and OLLAMA_PROBE_ROOT, its root directory seen from here).
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import jinja2

REPO = Path(__file__).resolve().parents[2]
ENTER = shlex.split(os.environ.get("OLLAMA_PROBE_ENTER", ""))
PROBE_ROOT = Path(os.environ.get("OLLAMA_PROBE_ROOT", "/"))
PROBE_SCRIPT = Path("/usr/local/lib/ollama-probe/probe.py")  # not under /tmp (PrivateTmp) nor /root (ProtectHome)
ROLE = REPO / "roles" / "ollama"

# the probe each transient unit runs: stdout is one JSON line
PROBE = r"""
import ctypes, json, os
out = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
out.update({k: status.get(k, "").strip() for k in ("Uid", "NoNewPrivs", "Seccomp", "CapEff")})
out["open"] = {}  # which NVIDIA nodes the device cgroup lets it open
for node in sorted(n for n in os.listdir("/dev") if n.startswith("nvidia")):
    try:
        os.close(os.open("/dev/" + node, os.O_RDWR)); out["open"][node] = "ok"
    except OSError as exc:
        out["open"][node] = exc.strerror
try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError as exc:
    print(json.dumps({**out, "error": str(exc)})); raise SystemExit
def call(name, *args):
    return getattr(cuda, name)(*args)
out["cuInit"] = call("cuInit", 0)
count = ctypes.c_int(0)
out["cuDeviceGetCount"] = call("cuDeviceGetCount", ctypes.byref(count))
out["devices"] = []
for ordinal in range(count.value):
    dev = ctypes.c_int(0)
    call("cuDeviceGet", ctypes.byref(dev), ordinal)
    name = ctypes.create_string_buffer(256)
    call("cuDeviceGetName", name, 256, dev)
    uuid = (ctypes.c_ubyte * 16)()
    call("cuDeviceGetUuid", uuid, dev)
    hexs = bytes(uuid).hex()
    out["devices"].append({"name": name.value.decode(), "uuid": "GPU-%s-%s-%s-%s-%s" % (
        hexs[:8], hexs[8:12], hexs[12:16], hexs[16:20], hexs[20:])})
if count.value:
    ctx, ptr = ctypes.c_void_p(), ctypes.c_uint64()
    dev = ctypes.c_int(0); call("cuDeviceGet", ctypes.byref(dev), 0)
    out["cuCtxCreate"] = call("cuCtxCreate_v2", ctypes.byref(ctx), 0, dev)
    out["cuMemAlloc_64MiB"] = call("cuMemAlloc_v2", ctypes.byref(ptr), ctypes.c_size_t(64 << 20))
    out["cuMemsetD8"] = call("cuMemsetD8_v2", ptr, 7, ctypes.c_size_t(64 << 20))
    out["cuCtxSynchronize"] = call("cuCtxSynchronize")
    call("cuMemFree_v2", ptr); call("cuCtxDestroy_v2", ctx)
print(json.dumps(out))
"""

# [Service] settings that name this host's paths or the instance's command, not its confinement
NOT_CONFINEMENT = {"Type", "EnvironmentFile", "ExecStart", "Restart", "RestartSec", "Environment",
                   "WorkingDirectory", "ReadWritePaths"}  # fmt: skip


def sh(*argv, **kw):
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    except FileNotFoundError as exc:
        return {"argv": list(argv), "rc": 127, "stdout": "", "stderr": str(exc)}
    return {"argv": list(argv), "rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr}


def render(name, **variables):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"), undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda text: "# " + text
    return env.get_template(name).render(ansible_managed="rendered by tests/device/real_gpu_check.py", **variables)


def service_settings(unit_text):
    """The [Service] key=value pairs of a rendered unit, in order (repeated keys kept)."""
    section, pairs = None, []
    for line in unit_text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            pairs.append((key, value))
    return pairs


def gpu_facts(out, source):
    """gpu_facts run as Ansible runs a module: its file, its arguments as JSON, its module_utils importable."""
    args = out / f"gpu_facts-{source}.args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"source": source}}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "collections"), os.environ.get("PYTHONPATH", "")]),
    }
    run = sh(sys.executable, str(REPO / "plugins" / "modules" / "gpu_facts.py"), str(args), env=env)
    args.unlink()
    try:
        result = json.loads(run["stdout"])
    except ValueError:
        result = {"failed": True, "raw": run}
    (out / f"gpu_facts-{source}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def probe(out, label, confinement, extra_env=None, user="ollama"):
    script = PROBE_ROOT / PROBE_SCRIPT.relative_to("/")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(PROBE)
    script.chmod(0o644)
    props = [f"--property={key}={value}" for key, value in confinement]
    env = [f"--setenv={k}={v}" for k, v in (extra_env or {}).items()]
    run = sh(*ENTER, "systemd-run", "--wait", "--pipe", "--quiet", "--collect", f"--unit=ollama-probe-{label}",
             f"--property=User={user}", *props, *env, "/usr/bin/python3", str(PROBE_SCRIPT))  # fmt: skip
    try:
        seen = json.loads(run["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        seen = {"error": "no JSON from the probe"}
    record = {"case": label, "seen": seen, "rc": run["rc"], "stderr": run["stderr"][-2000:]}
    print(json.dumps(record))
    return record


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "real-gpu-check").resolve()
    out.mkdir(parents=True, exist_ok=True)
    host = {name: sh(*argv) for name, argv in {
        "uname": ["uname", "-a"], "pid1": ["cat", "/proc/1/comm"], "systemd": ["systemctl", "--version"],
        "devices": ["sh", "-c", "ls -l /dev/nvidia* /dev/dri 2>&1; grep -i nvidia /proc/devices"],
        "driver": ["cat", "/proc/driver/nvidia/version"],
        "cgroup": ["stat", "-fc", "%T", "/sys/fs/cgroup"],
        "os": ["cat", "/etc/os-release"],
        "systemd_binaries": ["sh", "-c", "ls -l /lib/systemd/systemd /usr/bin/systemd-run /usr/bin/systemd-nspawn 2>&1"],
        "libcuda": ["sh", "-c", "ldconfig -p | grep -E 'libcuda|libnvidia-ml'"],
        "nvidia_devices_script": ["sh", str(ROLE / "files" / "ollama-nvidia-devices")],
    }.items()}  # fmt: skip
    (out / "host.json").write_text(json.dumps(host, indent=2) + "\n")

    # 1. discovery, and nvidia-smi's own text for the parser's fixtures
    sys.path.insert(0, str(REPO / "collections"))
    from ansible_collections.ollama.fleet.plugins.module_utils.gpu_inventory import QUERY_FIELDS

    smi = {"query.csv": ["nvidia-smi", f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv,noheader,nounits"],
           "list.txt": ["nvidia-smi", "-L"], "query.txt": ["nvidia-smi", "-q"], "banner.txt": ["nvidia-smi"]}  # fmt: skip
    for name, argv in smi.items():
        (out / f"nvidia-smi-{name}").write_text(sh(*argv)["stdout"])
    facts = {source: gpu_facts(out, source) for source in ("nvml", "nvidia-smi", "auto")}
    print(json.dumps({s: {k: f.get(k) for k in ("source", "driver_version", "cuda_version", "reason", "msg")}
                      for s, f in facts.items()}))  # fmt: skip
    gpus = facts["nvml"].get("gpus") or facts["nvidia-smi"].get("gpus") or []

    # 2. the CUDA probe inside the ollama@ unit's confinement
    if sh(*ENTER, "id", "ollama")["rc"] != 0:
        sh(*ENTER, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "ollama")
    unit = service_settings(render("ollama@.service.j2", ollama_user="ollama", ollama_group="ollama",
                                   ollama_config_dir="/etc/ollama", ollama_bin_link="/usr/local/bin/ollama",
                                   ollama_home="/var/lib/ollama", ollama_models_dir="/var/lib/ollama/models"))  # fmt: skip
    confinement = [(k, v) for k, v in unit if k not in NOT_CONFINEMENT | {"User"}]

    def drop_in(nodes):
        instance = {"name": "probe", "gpu_label": "probe", "device_nodes": nodes}
        return service_settings(render("instance-devices.conf.j2", __instance=instance))

    direct = sh(sys.executable, "-c", PROBE)
    cases = [{"case": "direct-no-unit", "seen": json.loads((direct["stdout"].strip() or "{}").splitlines()[-1]),
              "rc": direct["rc"], "stderr": direct["stderr"][-2000:]}]  # fmt: skip
    print(json.dumps(cases[0]))
    if gpus:
        own = gpus[0]
        other = max(g["minor_number"] or 0 for g in gpus) + 1  # a GPU node this instance was not given
        cases.append(probe(out, "unconfined-root", [], user="root"))
        cases.append(probe(out, "own-gpu", confinement + drop_in([f"/dev/nvidia{own['minor_number']}"])))
        cases.append(probe(out, "own-gpu-by-uuid", confinement + drop_in([f"/dev/nvidia{own['minor_number']}"]),
                           {"CUDA_VISIBLE_DEVICES": own["uuid"]}))  # fmt: skip
        cases.append(probe(out, "other-gpu-only", confinement + drop_in([f"/dev/nvidia{other}"])))
        cases.append(probe(out, "minor-unknown-fallback", confinement + drop_in([])))
        cases.append(probe(out, "no-gpu-node", confinement))
    (out / "cuda-probe.json").write_text(json.dumps({"confinement": confinement, "cases": cases}, indent=2) + "\n")


if __name__ == "__main__":
    main()
