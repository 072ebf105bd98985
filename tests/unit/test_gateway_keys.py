"""ollama_gateway_keys: API keys with names and limits of their own, the old plain strings still taken."""

import hashlib

import pytest
from ansible.errors import AnsibleFilterError
from ollama_keys import ollama_gateway_key_errors, ollama_gateway_keys

PLAIN, TEAM, ADMIN = "olt-test-user-key-0001", "olt-test-team-key-0002", "olt-test-admin-key-0001"


def test_a_plain_key_keeps_working_named_by_a_hash_that_tells_nothing_of_it():
    (key,) = ollama_gateway_keys([PLAIN])
    assert key == {
        "name": "key-" + hashlib.sha256(PLAIN.encode()).hexdigest()[:8],
        "key": PLAIN,
        "admin": False,
        "connections": None,
        "rate": None,
    }


def test_named_keys_with_limits_and_admin_keys():
    keys = ollama_gateway_keys(
        [PLAIN, {"name": "team-a", "key": TEAM, "connections": 2, "rate": "5r/s"}], [{"name": "ops", "key": ADMIN}]
    )
    assert [(k["name"], k["admin"], k["connections"], k["rate"]) for k in keys] == [
        (keys[0]["name"], False, None, None),
        ("team-a", False, 2, "5r/s"),
        ("ops", True, None, None),
    ]


def test_a_key_in_both_lists_is_one_admin_key():
    (key,) = ollama_gateway_keys([ADMIN], [ADMIN])
    assert key["admin"] is True


@pytest.mark.parametrize(
    ("api_keys", "expected"),
    [
        ([{"key": TEAM, "team": "a"}], "field ollama_gateway_api_keys[0]: unknown field 'team'; valid: name, key"),
        (["short"], "field ollama_gateway_api_keys[0]: key (5 characters) is not 16+ characters of A-Z"),
        ([{"name": "team a", "key": TEAM}], "name 'team a' is not 1-64 characters of A-Z a-z 0-9 . _ -"),
        ([{"key": TEAM, "connections": 0}], "connections must be an integer from 1 up, got 0"),
        ([{"key": TEAM, "rate": "fast"}], "rate 'fast' is not like 10r/s or 600r/m"),
        ([TEAM, TEAM], "field ollama_gateway_api_keys[1]: the key of key-"),
        ([{"name": "a", "key": TEAM}, {"name": "a", "key": PLAIN}], "key name 'a' given to more than one key"),
        ([42], "field ollama_gateway_api_keys[0]: a key is a string or {name: team-a"),
    ],
)
def test_bad_keys_are_named_by_host_field_and_entry_never_by_secret(api_keys, expected):
    errors = ollama_gateway_key_errors(api_keys, [], "gw1")
    assert any(e.startswith("host gw1") and expected in e for e in errors), errors
    assert not any(TEAM in e or PLAIN in e for e in errors)
    with pytest.raises(AnsibleFilterError, match="A key is a string or"):
        ollama_gateway_keys(api_keys, [], "gw1")


def test_admin_keys_given_as_one_string_are_named_as_such_not_split_into_characters():
    errors = ollama_gateway_key_errors([TEAM], PLAIN, "gw1")
    assert errors == ["host gw1, field ollama_gateway_admin_keys: a list of keys, got str"]
