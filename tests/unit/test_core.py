"""The shared core's small rules (plugins/module_utils): listen addresses, GiB and tables. Model names have
their own table, tests/model_names.json (test_model_names.py)."""

import pytest
from ansible_collections.ollama.fleet.plugins.module_utils import addresses, report


@pytest.mark.parametrize(
    ("address", "local", "wildcard", "loopback"),
    [
        ("0.0.0.0", "127.0.0.1", True, False),
        ("", "127.0.0.1", True, False),
        ("*", "127.0.0.1", True, False),
        ("::", "[::1]", True, False),  # nginx's [::] is IPv6 only (ipv6only=on): its loopback is ::1
        ("[::]", "[::1]", True, False),
        ("127.0.0.1", "127.0.0.1", False, True),
        ("::1", "[::1]", False, True),
        ("localhost", "localhost", False, True),
        ("10.0.0.5", "10.0.0.5", False, False),
        ("fd00::5", "[fd00::5]", False, False),
    ],
)
def test_where_a_host_reaches_its_own_listener(address, local, wildcard, loopback):
    assert addresses.local_address(address) == local
    assert (addresses.is_wildcard(address), addresses.is_loopback(address)) == (wildcard, loopback)
    assert addresses.local_url(address, 11435) == f"http://{local}:11435"


def test_gib_and_tables_read_alike_everywhere():
    assert [report.gib(v) for v in (0, 2**30, 51539607552, 1.5 * 2**30)] == ["0.0", "1.0", "48.0", "1.5"]
    rows = [("instance", "GPUs", "models"), ("small", "0-1", "llama3.1:8b"), ("large", "2-6", "")]
    assert report.text_table(rows) == ["instance  GPUs  models", "small     0-1   llama3.1:8b", "large     2-6"]
