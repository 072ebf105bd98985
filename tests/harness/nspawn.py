#!/usr/bin/env python3
"""Boot Debian 12 test hosts as systemd-nspawn containers, without Docker.

Used by the molecule create/destroy playbooks, the sandbox and the fault suite.

  nspawn.py rootfs                       build (once) and print the cached root
  nspawn.py up NAME ADDRESS [--bridge B] [--pubkey FILE]
  nspawn.py down NAME                    stop one host and remove everything of it
  nspawn.py reboot NAME                  clean poweroff, then boot again on the same disk
  nspawn.py down-all                     stop every host and remove the bridge
  nspawn.py list                         running hosts, one JSON object a line

Each host: systemd as PID 1 (--boot --register=no), an overlay of the cached root
(nothing written to the cache), a static address on a bridge this tool creates,
SSH as root with the scenario's key. State lives in STATE_DIR/NAME (pid, address).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

CACHE_DIR = Path(os.environ.get("OLT_CACHE_DIR", "/var/cache/ollama-toolkit"))
STATE_DIR = Path(os.environ.get("OLT_STATE_DIR", "/run/ollama-toolkit-hosts"))
MIRROR = os.environ.get("OLT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
# The test subnet: fixed and documented in docs/testing.md. Nothing else is ever addressed.
BRIDGE = "olt-br0"
BRIDGE_CIDR = "10.213.0.1/24"
# What every test host has without reaching a mirror: sshd, Python for Ansible,
# nginx and njs for the gateway role, zstd for .tar.zst release archives, nftables for the
# instance firewall on hosts whose instances listen beyond loopback.
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "python3-venv",
    "iproute2",
    "procps",
    "ca-certificates",
    "curl",
    "zstd",
    "acl",
    "nginx-light",
    "libnginx-mod-http-js",
    "less",
    "nftables",
    # the gateways' shared address (ollama_gateway_vip)
    "keepalived",
    # the local model registry (ollama_registry)
    "docker-registry",
    # the gateway's per-request metrics (ollama-gateway-requests.service) and its request log's rotation
    "mtail",
    "logrotate",
]


def log(msg: str) -> None:
    print(f"nspawn: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kw)


def rootfs_path() -> Path:
    key = hashlib.sha256(" ".join([SUITE, MIRROR, *PACKAGES]).encode()).hexdigest()[:12]
    return CACHE_DIR / f"rootfs-{SUITE}-{key}"


def build_rootfs() -> Path:
    """debootstrap once; later calls return the cached root at once."""
    root = rootfs_path()
    if (root / "etc/os-release").exists():
        return root
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"debootstrap {SUITE} into {tmp} (once; cached afterwards)")
    run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp), MIRROR],
        stdout=subprocess.DEVNULL,
    )
    # Each host gets its own SSH host keys and machine-id at boot, not the cache's.
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tmp / "etc/machine-id").write_text("")
    (tmp / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
    wants = tmp / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    net_unit = wants / "systemd-networkd.service"
    if not net_unit.exists():
        net_unit.symlink_to("/lib/systemd/system/systemd-networkd.service")
    # Installed on every host for the registry role, but a server runs it only where that role enables it
    # (the package's own config.yml asks for an htpasswd file that does not exist: it would fail at boot).
    (wants / "docker-registry.service").unlink(missing_ok=True)
    # Nothing waits for a network that is configured statically and at once.
    (tmp / "etc/systemd/system/systemd-networkd-wait-online.service").symlink_to("/dev/null")
    run(["chroot", str(tmp), "apt-get", "clean"])
    tmp.rename(root)
    return root


def ensure_bridge(bridge: str) -> None:
    if Path(f"/sys/class/net/{bridge}").exists():
        return
    run(["ip", "link", "add", bridge, "type", "bridge"])
    run(["ip", "addr", "add", BRIDGE_CIDR, "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def host_dir(name: str) -> Path:
    return STATE_DIR / name


def up(name: str, address: str, bridge: str, pubkey: Path) -> dict:
    root = build_rootfs()
    state = host_dir(name)
    if (state / "pid").exists() and _alive(int((state / "pid").read_text())):
        log(f"{name} already running")
        return json.loads((state / "host.json").read_text())
    down(name)
    ensure_bridge(bridge)
    upper, work, merged = state / "upper", state / "work", state / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    # An overlay keeps the cached root read-only and makes a host cost seconds, not a copy.
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={root},upperdir={upper},workdir={work}", str(merged)])
    _personalise(merged, name, address, pubkey)
    info = {"name": name, "address": address.split("/")[0], "bridge": bridge, "root": str(merged)}
    return _boot(state, info)


def _boot(state: Path, info: dict) -> dict:
    log_file = open(state / "console.log", "a")
    # --keep-unit with --register=no: nspawn then needs no system bus, which matters on
    # CI machines whose PID 1 is not systemd (it would fail "Failed to open system bus").
    proc = subprocess.Popen(
        [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--machine={info['name']}",
            f"--directory={info['root']}",
            f"--network-bridge={info['bridge']}",
            "--console=passive",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (state / "pid").write_text(str(proc.pid))
    info = dict(info, pid=proc.pid)
    (state / "host.json").write_text(json.dumps(info))
    _wait_for_ssh(info["address"], proc, state / "console.log")
    return info


def reboot(name: str, timeout: float = 60) -> dict:
    """Power the host off cleanly and boot it again on the same disk, as a server reboots."""
    state = host_dir(name)
    info = json.loads((state / "host.json").read_text())
    _stop(info["pid"], name, timeout)
    shutil.rmtree(f"/run/systemd/nspawn/propagate/{name}", ignore_errors=True)
    return _boot(state, info)


def power_cut(name: str) -> None:
    """The host vanishes at once, as on a power loss: the container's PID 1 is killed (the kernel then kills
    everything in its PID namespace, and its network goes with it), then nspawn. Killing nspawn alone leaves
    the container running. Its disk stays for boot()."""
    state = host_dir(name)
    pid = int((state / "pid").read_text())
    if _alive(pid):
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        for child in children:
            os.kill(int(child), signal.SIGKILL)
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    shutil.rmtree(f"/run/systemd/nspawn/propagate/{name}", ignore_errors=True)


def boot(name: str) -> dict:
    """Boot a host that is off (after power_cut) on the same disk; returns once SSH answers."""
    state = host_dir(name)
    return _boot(state, json.loads((state / "host.json").read_text()))


def _stop(pid: int, name: str, timeout: float) -> None:
    # SIGTERM to systemd-nspawn asks the container's systemd for a clean poweroff.
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            log(f"{name}: no clean poweroff in {timeout}s, killing")
            os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)


def _personalise(merged: Path, name: str, address: str, pubkey: Path) -> None:
    (merged / "etc/hostname").write_text(name + "\n")
    # debootstrap writes no /etc/hosts and copies this machine's resolver: a host would wait on (and
    # send packets towards) a DNS server outside the test subnet. Names resolve locally, nothing else.
    (merged / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost\n")
    resolv = merged / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text("# test host: no DNS server; names come from /etc/hosts\n")
    if "/" not in address:
        address += "/24"
    # No gateway: a test host reaches the test subnet and nothing beyond it.
    (merged / "etc/systemd/network/10-host0.network").write_text(
        f"[Match]\nName=host0\n\n[Network]\nAddress={address}\nLinkLocalAddressing=no\n"
    )
    ssh = merged / "root/.ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(pubkey.read_text())
    (ssh / "authorized_keys").chmod(0o600)
    run(["ssh-keygen", "-q", "-A", "-f", str(merged)])


def _wait_for_ssh(address: str, proc: subprocess.Popen, console: Path, timeout: float = 90) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"container exited with {proc.returncode}:\n{console.read_text()[-3000:]}")
        try:
            with socket.create_connection((address, 22), timeout=1) as s:
                if s.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"no SSH on {address} after {timeout}s:\n{console.read_text()[-3000:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def down(name: str, timeout: float = 60) -> None:
    state = host_dir(name)
    if not state.exists():
        return
    pid_file = state / "pid"
    if pid_file.exists():
        _stop(int(pid_file.read_text()), name, timeout)
    # nspawn leaves its mount-propagation directory behind when the host has no systemd.
    shutil.rmtree(f"/run/systemd/nspawn/propagate/{name}", ignore_errors=True)
    merged = state / "merged"
    if os.path.ismount(merged):
        run(["umount", "--recursive", str(merged)])
    shutil.rmtree(state)
    if not list_hosts():  # the last host takes the bridge with it: nothing is left behind
        remove_bridge(BRIDGE)


def remove_bridge(bridge: str) -> None:
    if Path(f"/sys/class/net/{bridge}").exists():
        run(["ip", "link", "delete", bridge])


def down_all(bridge: str) -> None:
    if STATE_DIR.exists():
        for state in sorted(STATE_DIR.iterdir()):
            down(state.name)
    remove_bridge(bridge)


def list_hosts() -> list[dict]:
    if not STATE_DIR.exists():
        return []
    return [
        json.loads((d / "host.json").read_text()) for d in sorted(STATE_DIR.iterdir()) if (d / "host.json").exists()
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("rootfs")
    u = sub.add_parser("up")
    u.add_argument("name")
    u.add_argument("address")
    u.add_argument("--bridge", default=BRIDGE)
    u.add_argument("--pubkey", type=Path, required=True)
    d = sub.add_parser("down")
    d.add_argument("name")
    r = sub.add_parser("reboot")
    r.add_argument("name")
    sub.add_parser("power-cut").add_argument("name")
    sub.add_parser("boot").add_argument("name")
    a = sub.add_parser("down-all")
    a.add_argument("--bridge", default=BRIDGE)
    sub.add_parser("list")
    args = p.parse_args()
    if args.cmd == "rootfs":
        print(build_rootfs())
    elif args.cmd == "up":
        print(json.dumps(up(args.name, args.address, args.bridge, args.pubkey)))
    elif args.cmd == "down":
        down(args.name)
    elif args.cmd == "reboot":
        print(json.dumps(reboot(args.name)))
    elif args.cmd == "power-cut":
        power_cut(args.name)
    elif args.cmd == "boot":
        print(json.dumps(boot(args.name)))
    elif args.cmd == "down-all":
        down_all(args.bridge)
    else:
        for h in list_hosts():
            print(json.dumps(h))


if __name__ == "__main__":
    main()
