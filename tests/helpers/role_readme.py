"""Each role's README.md, generated from its meta/argument_specs.yml (descriptions, entry points) and
defaults/main.yml (defaults): the argument specs are the one place a role variable is described (issue 29).

    .venv/bin/python tests/helpers/role_readme.py        (make role-docs; tests/unit/test_role_docs.py checks it)
"""

import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent.name for p in (REPO / "roles").glob("*/meta/argument_specs.yml"))


def cell(text):
    """TEXT in a Markdown table cell: one line, a | written \\| (GitHub's tables)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def paragraphs(description):
    return description if isinstance(description, list) else [description] if description else []


def readme(role):
    """The README of ROLE, as text."""
    specs = yaml.safe_load((REPO / f"roles/{role}/meta/argument_specs.yml").read_text())["argument_specs"]
    defaults_file = REPO / f"roles/{role}/defaults/main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    main = specs.get("main", {})
    lines = [
        f"# Role `{role}`",
        "",
        "<!-- Generated from meta/argument_specs.yml and defaults/main.yml by `make role-docs`: edit those. -->",
        "",
        main.get("short_description", ""),
        "",
    ]
    for paragraph in paragraphs(main.get("description")):
        lines += [" ".join(paragraph.split()), ""]
    lines += ["## Entry points", "", "| entry point | what it does | its variables |", "|---|---|---|"]
    for entry, spec in specs.items():
        names = ", ".join(f"`{name}`" for name in spec.get("options", {})) or "none"
        if entry != "main" and set(spec.get("options", {})) <= set(main.get("options", {})):
            names = f"{len(spec.get('options', {}))} of main's" if spec.get("options") else "none"
        lines.append(f"| `{entry}` | {cell(spec.get('short_description', ''))} | {names} |")
    lines += [""]
    own = {entry: spec for entry, spec in specs.items() if spec.get("options")}
    for entry, spec in own.items():
        if entry != "main" and set(spec["options"]) <= set(main.get("options", {})):
            continue  # main's table says it
        lines += [f"## Variables{'' if entry == 'main' else f' of `{entry}`'}", ""]
        lines += ["| variable | default | meaning |", "|---|---|---|"]
        for name, option in spec["options"].items():
            default = (
                f"`{cell(json.dumps(defaults[name]))}`"
                if name in defaults
                else "required"
                if option.get("required")
                else ""
            )
            meaning = cell(" ".join(paragraphs(option.get("description"))))
            if option.get("choices"):
                meaning += f" One of {', '.join(f'`{c}`' for c in option['choices'])}."
            lines.append(f"| `{name}` | {default} | {meaning} |")
        lines += [""]
    return "\n".join(lines)


def main():
    for role in ROLES:
        (REPO / f"roles/{role}/README.md").write_text(readme(role))


if __name__ == "__main__":
    main()
