#!/usr/bin/env python3
"""Prints the fault suite's results (.cache/faults/results.json, written by `molecule test -s faults`)
as the Markdown table docs/reliability.md shows."""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / ".cache" / "faults" / "results.json"


def main():
    results = json.loads(RESULTS.read_text())
    print("| case | what happened | requests under load | ok | failed | cut mid-stream | hung |")
    print("|---|---|---|---|---|---|---|")
    for case, r in results.items():
        print(f"| {case} | {r['happened']} | {r['requests']} | {r['ok']} | {r['failed']} | {r['cut']} | {r['hung']} |")


if __name__ == "__main__":
    main()
