#!/bin/sh
# Plans on a real GPU machine without systemd (a device lent to a session): gpu_facts by NVML and by
# nvidia-smi (tests/device/real_gpu_check.py's part 1), then playbooks/plan.yml run locally on the
# inventories of tests/device/real-gpu-plan/, the published plan written as JSON. Python packages come
# from wheels in .device-wheels/pyXY (ansible-core, jinja2, nvidia-ml-py and their dependencies).
#   sh tests/device/real_gpu_plan.sh OUT
set -u
OUT=$(realpath "${1:-real-gpu-plan}")
mkdir -p "$OUT"
V=$(python3 -c 'import sys; print("%d%d" % sys.version_info[:2])')
SITE=/tmp/real-gpu-plan-site
rm -rf "$SITE" && mkdir -p "$SITE"
for w in .device-wheels/py"$V"/*.whl; do python3 -m zipfile -e "$w" "$SITE"; done
export PYTHONPATH="$SITE" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_NOCOLOR=1
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "tests/device")
import real_gpu_check as check
out = Path(sys.argv[1])
facts = {source: check.gpu_facts(out, source) for source in ("nvml", "nvidia-smi")}
print(json.dumps({s: {k: f.get(k) for k in ("source", "driver_version", "reason", "msg")} for s, f in facts.items()}))
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1
cd tests/device/real-gpu-plan
for run in "trio fail" "trio adjust" "four fail"; do
  set -- $run
  PLAN_JSON="$OUT/plan-$1-$2.json" python3 -m ansible playbook -i inventory.yml dump.yml -e @"$1.yml" \
    -e ollama_fit_policy="$2" > "$OUT/plan-$1-$2.txt" 2>&1
  echo "plan $1 $2: rc $?"
done
