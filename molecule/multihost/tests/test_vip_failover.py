"""Two gateways share one address (ollama_gateway_vip, keepalived): under steady load through it, the holder's
nginx stops, then the holder loses power; each time the address moves, new requests succeed, the requests lost
are counted and bounded in time, and the gateway that comes back does not take the address back.

Runs last in the scenario (after test_operations.py, whose uninstall and redeploy restart keepalived on both, so
either may hold the address now) and leaves both gateways up."""

import json
import subprocess
import sys
import time
from pathlib import Path

from helpers.fleet import host
from helpers.load import Load
from helpers.waiting import wait_until

REPO = Path(__file__).resolve().parents[3]

VIP = "10.213.0.30"
URL = f"https://{VIP}:11434"
CA = str(REPO / ".cache/artifacts/tls/gateway.crt")
USER = "olt-test-user-key-0001"
GATEWAYS = ["olt-mh-gw", "olt-mh-gw2"]
HARNESS = REPO / "tests" / "harness" / "nspawn.py"
# A client that meets a refused connection waits this long before it tries again (a tight loop would count
# the same outage thousands of times).
RETRY = 0.1
# After the address moves, ARP caches learn the new holder from keepalived's gratuitous ARP.
SETTLE = 0.5


def holds_vip(name):
    return f" {VIP}/" in host(name).check_output("ip -o -4 addr show")


def holder_and_other():
    """(the gateway holding the address, the other), once exactly one holds it: keepalived restarted by an
    earlier deploy takes a few adverts to elect one."""

    def holders():
        held = [name for name in GATEWAYS if holds_vip(name)]
        return held if len(held) == 1 else None

    (holder,) = wait_until(holders, 20, f"{VIP} held by exactly one of {GATEWAYS}")
    return holder, next(name for name in GATEWAYS if name != holder)


def watch_for_vip(name):
    """Start a watcher on NAME that writes the moment (epoch seconds) the address appears there: the test
    hosts share this machine's clock, and the watcher sees the move without the controller's SSH delays."""
    host(name).check_output(
        "rm -f /run/olt-vip-moved; systemd-run --unit=olt-vip-watch --collect sh -c "
        f"'until ip -o -4 addr show | grep -q \" {VIP}/\"; do sleep 0.01; done; date +%s.%N > /run/olt-vip-moved'"
    )


def moved_at(name, timeout=30):
    """When the shared address arrived on NAME, as its watcher wrote it."""
    moved = wait_until(
        lambda: host(name).run("cat /run/olt-vip-moved").stdout.strip(), timeout, f"{VIP} on {name}", 0.2
    )
    return float(moved)


def lost(load, since=None, until=None):
    return sum(load.count(kind, since=since, until=until) for kind in ("failed", "cut", "hung"))


def record(case, counts):
    path = REPO / ".cache" / "day2" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[case] = counts
    path.write_text(json.dumps(results, indent=2))


def load():
    # timeout: a request whose gateway vanished gets no answer; it hangs until the client gives up
    return Load(URL, "llama3.1:8b", workers=6, key=USER, cafile=CA, timeout=10, pause_after_failure=RETRY)


def harness(*args):
    subprocess.run([sys.executable, str(HARNESS), *args], check=True, capture_output=True, timeout=120)


def fail_over(case, fault, recover):
    """Under steady load through the shared address: FAULT(holder), wait until the other gateway holds the
    address, RECOVER(holder), and count. Asserts the promises; returns the gateway that failed. FAULT returns
    the moment (epoch seconds, on the host: the hosts share this machine's clock) the fault happened, or None
    when it ran here; the move is timed from it, not from before the controller's SSH round trip."""
    holder, other = holder_and_other()
    watch_for_vip(other)
    with load() as running:
        time.sleep(3)
        fault_at, fault_mono = time.time(), time.monotonic()
        happened = fault(holder) or fault_at
        arrived = moved_at(other)
        moved = arrived - happened
        settled = fault_mono + (arrived - fault_at) + SETTLE
        time.sleep(max(0.0, settled - time.monotonic()) + 4)
        returned = time.monotonic()
        recover(holder)  # with nopreempt the address stays where it went
        time.sleep(6)
    counts = {
        "requests": len(running.outcomes),
        "moved_s": round(moved, 2),
        # in flight through the lost gateway when it failed: at most one per client
        "in_flight_lost": lost(running, until=fault_mono),
        # sent before the address moved, each client retrying every RETRY s
        "lost_during_move": lost(running, since=fault_mono, until=settled),
        "ok_after_move": running.count("ok", since=settled),
        "ok_after_return": running.count("ok", since=returned),
        "lost_after_move": lost(running, since=settled),
    }
    record(case, counts)
    assert moved <= 3.0, f"the address took {moved:.2f} s to move"
    assert counts["lost_after_move"] == 0, "every request sent after the move succeeds"
    assert counts["in_flight_lost"] <= 6, "only the requests in flight through the lost gateway"
    assert counts["ok_after_return"] > 10, "the fleet kept answering while the lost gateway came back"
    assert holder_and_other() == (other, holder), "the returning gateway took the address back"
    return holder


def test_one_gateway_holds_the_address_and_both_run_keepalived():
    holder_and_other()
    for name in GATEWAYS:
        assert host(name).service("keepalived").is_running


def test_nginx_stopping_on_the_holder_moves_the_address_and_its_return_takes_nothing_back():
    fail_over(
        "VIP: nginx stopped on the holder",
        lambda gateway: float(host(gateway).check_output("date +%s.%N; systemctl stop nginx").split()[0]),
        lambda gateway: host(gateway).check_output("systemctl start nginx"),
    )


def test_power_loss_of_the_holder_moves_the_address_and_its_return_takes_nothing_back():
    lost_gateway = fail_over(
        "VIP: holder powered off",
        lambda gateway: harness("power-cut", gateway),
        back_up,
    )
    assert host(lost_gateway).service("keepalived").is_running and host(lost_gateway).service("nginx").is_running


def back_up(gateway):
    """Boot it again and wait until its keepalived and nginx run (the harness returns once SSH answers): only
    then can the test see whether it takes the address back."""
    harness("boot", gateway)
    running = "systemctl is-active keepalived nginx"
    wait_until(lambda: host(gateway).run(running).rc == 0, 60, f"keepalived and nginx running on {gateway}")
