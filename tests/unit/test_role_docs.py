"""Every role variable is declared, defaulted and documented alike (README drift is a bug)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "defaults/main.yml").exists())


def readme_table(role: str) -> dict[str, str]:
    """The variables table of the role's README: name → default as written."""
    text = (REPO / f"roles/{role}/README.md").read_text()
    section = text.split("\n## Variables\n", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    # a | inside a cell is written \| (GitHub's tables)
    return {name: value.replace("\\|", "|") for name, value in re.findall(r"^\| `(\w+)` \| `(.*?)` \|", section, re.M)}


def test_each_roles_readme_is_generated_from_its_argument_specs():
    sys.path.insert(0, str(REPO / "tests/helpers"))
    import role_readme  # noqa: PLC0415 - a helper script, importable only from its directory

    for role in role_readme.ROLES:
        written = (REPO / f"roles/{role}/README.md").read_text()
        assert written == role_readme.readme(role), f"roles/{role}/README.md is stale: run make role-docs"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_argument_specs_and_readme_list_the_same_variables(role):
    defaults = yaml.safe_load((REPO / f"roles/{role}/defaults/main.yml").read_text())
    specs = yaml.safe_load((REPO / f"roles/{role}/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options), "defaults/main.yml and meta/argument_specs.yml disagree"
    table = readme_table(role)
    assert set(table) == set(defaults), "README variables table and defaults/main.yml disagree"
    for name, value in defaults.items():
        assert yaml.safe_load(table[name]) == value, f"README shows another default for {name}"


SPEC_ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta/argument_specs.yml").exists())


@pytest.mark.parametrize("role", SPEC_ROLES)
def test_every_entry_point_takes_its_options_from_main_and_ansible_doc_shows_it(role):
    """An option is written once, under main; the other entry points name it by YAML alias (issue 29)."""
    path = REPO / f"roles/{role}/meta/argument_specs.yml"
    text = path.read_text()
    specs = yaml.safe_load(text)["argument_specs"]
    main = specs.get("main", {}).get("options", {})
    for entry, spec in specs.items():
        for name in spec.get("options", {}) if entry != "main" else ():
            if name in main:
                assert re.search(rf"^      {name}: \*{name}$", text, re.M), f"{entry}: {name} is a copy, not *{name}"
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "-t", "role", "-r", str(REPO / "roles"), role, "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    )  # fmt: skip
    entry_points = json.loads(shown.stdout)[role]["entry_points"]
    assert set(entry_points) == set(specs)
    for entry, spec in specs.items():
        assert entry_points[entry]["short_description"] == spec["short_description"]
        assert entry_points[entry].get("options", {}) == spec.get("options", {}), entry


def test_sources_are_cited_not_a_document_the_repository_lacks():
    """What the code relies on from outside is cited by its source (file, version, issue): no notes file that only
    its developers have (issue 29)."""
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    absent = "FACTS" + ".md"  # spelled apart so that this file does not cite it
    citing = [
        name for name in tracked if (REPO / name).is_file() and absent in (REPO / name).read_text(errors="replace")
    ]
    assert citing == []
