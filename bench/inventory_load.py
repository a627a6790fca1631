"""Bench: wall-clock time of `arcfleet inventory show --json` on a 5,000-host Ansible INI file.

Target: under 2 s for the whole process (interpreter start, imports, parse, resolve, validate,
JSON output). Prints the best and median of a few runs and the ratio to the target.

    /work/venv/bin/python bench/inventory_load.py [--hosts 5000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 2.0
REPO = Path(__file__).resolve().parents[1]
# Measure arcfleet as installed: Python keeps its modules' compiled bytecode (pip writes it, and a
# source tree gets it on first import) unless PYTHONDONTWRITEBYTECODE is set, as on some CI and
# sandbox machines, where every run would compile all of arcfleet again (~0.25 s of CPU).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def generate(path: Path, hosts: int) -> None:
    lines = [
        "[all:vars]",
        "arc_tenant_id=11111111-2222-3333-4444-555555555555",
        "arc_subscription_id=66666666-7777-8888-9999-000000000000",
        "arc_resource_group=rg-arc",
        "arc_location=westeurope",
        "arc_sp_client_id=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "arc_sp_secret_env=ARC_SP_SECRET",
        "arc_tags=env=bench,owner=ops",
        "ansible_user=arc",
        "ansible_become=true",
        "",
    ]
    per_group = 250
    for group in range(hosts // per_group + (1 if hosts % per_group else 0)):
        lines.append(f"[dc{group:02d}]")
        for index in range(group * per_group, min(hosts, (group + 1) * per_group)):
            octets = f"10.{index // 65536}.{index // 256 % 256}.{index % 256}"
            lines.append(f"srv{index:05d}.example.com ansible_host={octets} "
                         f"arc_tags=rack=r{index % 40}")
        lines.append(f"[dc{group:02d}:vars]")
        lines.append(f"arc_tags=dc=dc{group:02d}")
        lines.append("")
    lines.append("[linux:children]")
    lines.extend(f"dc{group:02d}" for group in range(hosts // per_group))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "hosts.ini"
        generate(inventory, args.hosts)
        command = [sys.executable, "-m", "fleet", "inventory", "show", "-i", str(inventory),
                   "--json"]
        timings: list[float] = []
        for _ in range(args.runs):
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
            timings.append(time.perf_counter() - started)
            if result.returncode != 0:
                sys.exit(f"arcfleet failed ({result.returncode}): {result.stderr[:2000]}")
            count = len(json.loads(result.stdout)["hosts"])
            if count != args.hosts:
                sys.exit(f"expected {args.hosts} hosts, got {count}")
    best, median = min(timings), statistics.median(timings)
    print(f"inventory show --json, {args.hosts} hosts (Ansible INI), {args.runs} runs: "
          f"best {best:.3f} s, median {median:.3f} s; target {TARGET_S:.1f} s, "
          f"median/target = {median / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
