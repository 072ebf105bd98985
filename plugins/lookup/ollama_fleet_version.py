"""The version of ollama.fleet that runs the play: one source, galaxy.yml, which the built collection carries as
MANIFEST.json."""

import json
from pathlib import Path

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: ollama_fleet_version
short_description: The version of the collection ollama.fleet that runs the play
description:
  - Returns the version of this collection, as one string in a list. Installed with ansible-galaxy, a collection
    carries its version in its MANIFEST.json; this repository, used as the collection through its collections/
    link, has it in galaxy.yml. Both come from galaxy.yml's C(version), so a release changes it in one place.
  - playbooks/status.yml and playbooks/plan.yml show it, so an operator reading their output knows which release of
    the toolkit answered.
options: {}
"""

EXAMPLES = r"""
- name: Name the toolkit
  ansible.builtin.debug:
    msg: "ollama.fleet {{ lookup('ollama.fleet.ollama_fleet_version') }}"
"""

RETURN = r"""
_raw:
  description: The collection's version, for example C(1.0.0).
  type: list
  elements: str
"""

# plugins/lookup/THIS.py: the collection's root is two directories up, here and installed alike.
ROOT = Path(__file__).resolve().parents[2]


def collection_version(root=ROOT):
    manifest, galaxy = root / "MANIFEST.json", root / "galaxy.yml"
    if manifest.is_file():
        return json.loads(manifest.read_text())["collection_info"]["version"]
    if galaxy.is_file():
        return str(yaml.safe_load(galaxy.read_text())["version"])
    raise AnsibleLookupError(f"ollama_fleet_version: {root} has neither MANIFEST.json nor galaxy.yml")


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [collection_version()]
