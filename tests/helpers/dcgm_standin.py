#!/usr/bin/python3
"""Stand-in for NVIDIA's dcgm-exporter on a test host (tests only; never shipped).

Serves /metrics on :9400 with dcgm-exporter's series names and labels (DCGM_FI_DEV_FB_USED in MiB,
DCGM_FI_DEV_GPU_UTIL in %, DCGM_FI_DEV_GPU_TEMP in °C; labels gpu, UUID, device, modelName, Hostname) for
the GPUs the host's nvidia-smi reports (the simulated driver's), so the dashboard's joins on the GPU UUID run
against a real Prometheus. Utilisation and temperature are fixed values: nothing here measures a GPU.
Standard library only: it runs with the test host's python3.
"""

import socket
import subprocess
from http.server import BaseHTTPRequestHandler, HTTPServer

FIELDS = "index,uuid,name,memory.total,memory.free"


def exposition():
    rows = subprocess.run(
        ["nvidia-smi", f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    series = {"DCGM_FI_DEV_FB_USED": [], "DCGM_FI_DEV_GPU_UTIL": [], "DCGM_FI_DEV_GPU_TEMP": []}
    for row in rows.strip().splitlines():
        index, uuid, name, total, free = (field.strip() for field in row.split(","))
        labels = (
            f'gpu="{index}",UUID="{uuid}",device="nvidia{index}",modelName="{name}",Hostname="{socket.gethostname()}"'
        )
        series["DCGM_FI_DEV_FB_USED"].append(f"DCGM_FI_DEV_FB_USED{{{labels}}} {int(total) - int(free)}")
        series["DCGM_FI_DEV_GPU_UTIL"].append(f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} 0")
        series["DCGM_FI_DEV_GPU_TEMP"].append(f"DCGM_FI_DEV_GPU_TEMP{{{labels}}} 40")
    lines = []
    for name, samples in series.items():
        lines += [f"# HELP {name} {name} (stand-in).", f"# TYPE {name} gauge", *samples]
    return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = exposition().encode() if self.path == "/metrics" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    HTTPServer(("0.0.0.0", 9400), Handler).serve_forever()
