"""The version ollama.fleet reports (issue 29) has one source, galaxy.yml: the installed collection reads it from the
MANIFEST.json that ansible-galaxy writes from it, this repository from galaxy.yml itself."""

import json

import pytest
from ansible.errors import AnsibleLookupError
from ansible_collections.ollama.fleet.plugins.lookup.ollama_fleet_version import LookupModule, collection_version
from helpers.collection import galaxy_version


def test_this_repository_reports_galaxy_yml_s_version():
    assert LookupModule().run([]) == [galaxy_version()]


def test_an_installed_collection_reports_its_manifest_s_version(tmp_path):
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"collection_info": {"version": "2.3.4"}}))
    (tmp_path / "galaxy.yml").write_text("version: 9.9.9\n")  # the manifest is what was built and installed
    assert collection_version(tmp_path) == "2.3.4"


def test_a_tree_without_either_is_named(tmp_path):
    with pytest.raises(AnsibleLookupError, match=f"{tmp_path} has neither MANIFEST.json nor galaxy.yml"):
        collection_version(tmp_path)
