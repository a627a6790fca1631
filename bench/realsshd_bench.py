"""Onboarding on real OpenSSH servers: arcfleet vs the asyncssh floor vs ansible-core ``-m raw``.

    .venv/bin/python bench/realsshd_bench.py                    # 100 hosts forks 50, 300 forks 100
    .venv/bin/python bench/realsshd_bench.py --cases 100:50 --json out.json

Needs root and openssh-server (like the real-sshd tests). Reuses tests/realsshd.py: one ``sshd``
per 16 addresses on 127.x, the lab's azcmagent simulator first on the login PATH (a Python
process per call, connect taking ``--latency`` seconds), ``sudo`` through a real sudoers drop-in.
Every tool runs in ONE invocation against the same fleet, the agent state reset in between:

- ``arcfleet``: ``python -m fleet onboard --forks F`` (its own subprocess);
- ``floor``: a bare asyncssh loop, F at a time, running only
  ``sudo -n azcmagent connect --config FILE --verbose`` (FILE placed once, outside the timing):
  the least any asyncssh tool can do (known_hosts parsed once and arcfleet's cipher order, as
  arcfleet does; before 2026-12-03 18:10 UTC asyncssh re-read known_hosts per connection);
- ``ansible``: ansible-core ``all -m raw -f F -a '<the same command>'`` (installed by
  bench/onboard_scale.py into its own venv, /tmp/arcfleet-bench-ansible).

``--agent sh`` replaces the Python simulator with a few lines of ``sh`` (connect sleeps L and
records the resource; show prints the state as JSON): it costs a millisecond instead of ~0.17 s
of CPU per call, so the SSH, sudo and shell costs of each tool are what is measured.

Reported per tool: wall time, ratio to the floor and to ideal (ceil(hosts/forks) x latency),
peak RSS of the tool's whole process tree (psutil, sampled every 50 ms), SSH sessions per host
counted from sshd's own log (``Starting session:`` lines at LogLevel VERBOSE), CPU per host of
the tool's own process tree (client) and of the whole machine during the run (client, sshd,
sudo, shells, agent, and whatever else runs: read it on a quiet machine), the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
# Measure arcfleet as installed: Python keeps its modules' compiled bytecode (pip writes it, and a
# source tree gets it on first import) unless PYTHONDONTWRITEBYTECODE is set, as on some CI and
# sandbox machines, where every run would compile all of arcfleet again (~0.25 s of CPU).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from onboard_scale import (  # noqa: E402
    DEFAULT_ANSIBLE_VENV,
    ansible_env,
    ensure_ansible,
    floor_argv,
)

from tests import realsshd  # noqa: E402
from tests.realsshd import TEST_USER, SshdLab  # noqa: E402

PYTHON = sys.executable
CONFIG = Path("/tmp/arcfleet-bench-connect.json")  # for floor and ansible, placed once


@dataclass
class Row:
    tool: str
    hosts: int
    forks: int
    latency_s: float
    wall_s: float
    ideal_s: float
    peak_rss_mb: float
    sessions_per_host: float
    ok: int
    load_before: float
    client_cpu_ms: float = 0.0
    machine_cpu_ms: float = 0.0
    ratio_floor: float = 0.0
    note: str = ""


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    try:
        procs = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (every process, every core)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Cpu:
    client_s: float = 0.0  # the tool's process tree (rusage of waited-for children)
    machine_s: float = 0.0  # every process on the machine: sshd, sudo, shells, agent, others


LAST_CPU = Cpu()


def measure(argv: list[str], env: dict[str, str] | None = None,
            cwd: Path = REPO) -> tuple[float, float, str, int]:
    """Run ``argv``; wall seconds, peak tree RSS (MB), stdout, exit status. Its CPU is left in
    ``LAST_CPU``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = _busy_cpu_s()
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            peak = max(peak, _tree_rss(root))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.monotonic() - started
    LAST_CPU.machine_s = _busy_cpu_s() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU.client_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stop.set()
    sampler.join()
    if proc.returncode not in (0, 1) or (not out.strip() and err.strip()):
        sys.stderr.write(err[-2000:])
    return wall, peak / 1024 / 1024, out, proc.returncode


def sessions(lab: SshdLab, offsets: dict[Path, int]) -> int:
    count = 0
    for group in lab.groups:
        for log in group.logs:
            with log.open("rb") as handle:
                handle.seek(offsets.get(log, 0))
                count += handle.read().count(b"Starting session:")
    return count


def log_offsets(lab: SshdLab) -> dict[Path, int]:
    return {log: log.stat().st_size for group in lab.groups for log in group.logs
            if log.exists()}


SH_AGENT = r"""#!/bin/sh
# A stand-in azcmagent in sh (bench only): state per dialled address, kept by sudo's env_keep.
addr=$(echo "$SSH_CONNECTION" | cut -d' ' -f3)
state=STATE_DIR/$addr
case "$1" in
show)
  if [ -f "$state" ]; then
    name=$(cat "$state")
    printf '{"status": "Connected", "agentVersion": "1.45.02945.1234", "resourceId": "%s"}\n' \
      "/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.HybridCompute/machines/$name"
  else
    echo '{"status": "Disconnected", "agentVersion": "1.45.02945.1234", "resourceId": ""}'
  fi ;;
connect)
  name=; config=
  while [ $# -gt 0 ]; do
    if [ "$1" = --resource-name ]; then name=$2; fi
    if [ "$1" = --config ]; then config=$2; fi
    shift
  done
  # arcfleet puts the target (resource name included) in the --config file.
  if [ -z "$name" ] && [ -n "$config" ]; then
    name=$(sed -n 's/.*"resource-name": *"\([^"]*\)".*/\1/p' "$config")
  fi
  sleep LATENCY
  echo "$name" >"$state"
  echo "Connected machine to Azure" ;;
version) echo "azcmagent version 1.45.02945.1234" ;;
*) exit 2 ;;
esac
"""


def install_sh_agent(lab: SshdLab, latency: float, work: Path) -> Path:
    state = work / "sh-agent-state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    text = (SH_AGENT.replace("STATE_DIR", str(state)).replace("LATENCY", f"{latency:g}")
            .replace("SUB", realsshd.SUBSCRIPTION_ID).replace("RG", realsshd.RESOURCE_GROUP))
    agent = lab.shim_dir / "azcmagent"
    agent.write_text(text)
    agent.chmod(0o755)
    return state


def run_case(lab: SshdLab, hosts: int, forks: int, latency: float, tools: list[str],
             work: Path, sh_state: Path | None) -> list[Row]:
    addresses = realsshd.addresses(f"127.81.{hosts // 100}.1", hosts)
    lab.set_scenario({"default": {"scenario": "slow", "latency_s": latency}})
    group = lab.serve(addresses, log_level="VERBOSE")
    names = {f"h{i:04d}": (a, group.port) for i, a in enumerate(addresses, 1)}
    # The floor and ansible wait as long as a handshake takes; so does arcfleet here (60 s).
    inventory = lab.write_inventory(work / f"inv-{hosts}", names, connect_timeout_s=60)
    ideal = math.ceil(hosts / forks) * latency
    command = f"sudo -n azcmagent connect --config {CONFIG} --verbose"
    rows: list[Row] = []
    for tool in tools:  # compile every arcfleet tree once, outside the timing (see REPO above)
        if tool.startswith("arcfleet"):
            tree = Path(tool.split(":", 1)[1]) if ":" in tool else REPO
            subprocess.run([PYTHON, "-m", "compileall", "-q", str(tree / "fleet")], check=True)
    for tool in tools:
        lab.reset_hosts(addresses)
        if sh_state is not None:
            for path in sh_state.iterdir():
                path.unlink()
        _clean_tmp()
        time.sleep(2)  # let the previous tool's sshd children exit
        load = os.getloadavg()[0]
        offsets = log_offsets(lab)
        note = ""
        if tool.startswith("arcfleet"):
            # "arcfleet:DIR" runs the arcfleet source tree at DIR (an A/B in one run);
            # "arcfleet-no-azure-check" leaves out the Azure preflight (its share of the wall).
            tree = Path(tool.split(":", 1)[1]) if ":" in tool else REPO
            extra = ["--no-azure-check"] if tool.startswith("arcfleet-no-azure-check") else []
            state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
            wall, rss, out, status = measure(
                [PYTHON, "-m", "fleet", "onboard", "-i", str(inventory), "--forks", str(forks),
                 "--connect-rate", "0", "--state-dir", str(state), "--json", *extra], cwd=tree)
            categories = Counter(json.loads(line).get("category") for line in out.splitlines()
                                 if line.startswith("{"))
            ok = categories.get("connected", 0)
            note = f"exit {status} " + ", ".join(f"{k}: {v}" for k, v in categories.items())
        elif tool == "floor":
            wall, rss, out, status = measure(floor_argv(
                names, forks, TEST_USER, lab.client_key_file, lab.known_hosts, command))
            ok = int(out.strip() or 0)
        else:
            ansible = ensure_ansible(DEFAULT_ANSIBLE_VENV)
            home = Path(tempfile.mkdtemp(prefix="ansible-", dir=work))
            lines = ["[fleet]"] + [
                f"{n} ansible_host={a} ansible_port={p}" for n, (a, p) in names.items()]
            lines += ["", "[fleet:vars]", f"ansible_user={TEST_USER}",
                      f"ansible_ssh_private_key_file={lab.client_key_file}"]
            (home / "hosts.ini").write_text("\n".join(lines) + "\n")
            (home / "ansible.cfg").write_text(
                "[defaults]\nhost_key_checking = True\ngathering = explicit\n"
                f"forks = {forks}\n[ssh_connection]\n"
                f"ssh_args = -o UserKnownHostsFile={lab.known_hosts} -o ControlMaster=no\n")
            wall, rss, out, status = measure(
                [str(ansible), "all", "-i", str(home / "hosts.ini"), "-m", "raw", "-f",
                 str(forks), "-a", command], env=ansible_env(home), cwd=home)
            ok = out.count("| CHANGED") + out.count("| SUCCESS")
            note = f"exit {status}"
        count = sessions(lab, offsets)
        rows.append(Row(tool, hosts, forks, latency, round(wall, 2), ideal, round(rss, 1),
                        round(count / hosts, 2), ok, round(load, 2),
                        client_cpu_ms=round(LAST_CPU.client_s * 1000 / hosts, 1),
                        machine_cpu_ms=round(LAST_CPU.machine_s * 1000 / hosts, 1), note=note))
        print(json.dumps(asdict(rows[-1])), file=sys.stderr, flush=True)
    floor = next((r.wall_s for r in rows if r.tool == "floor"), 0.0)
    for row in rows:
        row.ratio_floor = round(row.wall_s / floor, 2) if floor else 0.0
    group.stop()
    return rows


def _clean_tmp() -> None:
    for path in Path("/tmp").glob("arcfleet.????????"):
        shutil.rmtree(path, ignore_errors=True)


def _azure_on_closed_loopback_port() -> None:
    """Benchmarks send nothing off the machine: arcfleet's Azure preflight (this inventory names
    no fake Azure) is pointed at a loopback port where nothing listens, as tests/conftest.py does,
    so its checks end "not done" at once instead of asking the real Entra ID."""
    from fleet.azure.clouds import ENDPOINTS_ENV

    if os.environ.get(ENDPOINTS_ENV):
        return
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{probe.getsockname()[1]}"
    path = Path(tempfile.mkdtemp(prefix="arcfleet-bench-azure-")) / "endpoints.json"
    path.write_text(json.dumps({"authority_host": url, "resource_manager": url}), encoding="utf-8")
    os.environ[ENDPOINTS_ENV] = str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="100:50,300:100", help="HOSTS:FORKS,...")
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--tools", default="floor,arcfleet,ansible",
                        help="in order; arcfleet:DIR runs the source tree at DIR (an A/B)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--agent", choices=("python", "sh"), default="python",
                        help="the lab's Python simulator, or a cheap sh stand-in")
    args = parser.parse_args()
    reason = realsshd.unavailable_reason()
    if reason:
        raise SystemExit(reason)
    _azure_on_closed_loopback_port()
    lab = SshdLab.create()
    if lab.shim_problem:
        raise SystemExit(lab.shim_problem)
    work = Path(tempfile.mkdtemp(prefix="realsshd-bench-"))
    work.chmod(0o755)
    sh_state = install_sh_agent(lab, args.latency, work) if args.agent == "sh" else None
    rows: list[Row] = []
    try:
        CONFIG.write_text(json.dumps({
            "service-principal-id": realsshd.CLIENT_ID,
            "service-principal-secret": realsshd.SP_SECRET,
            "tenant-id": realsshd.TENANT_ID, "subscription-id": realsshd.SUBSCRIPTION_ID,
            "resource-group": realsshd.RESOURCE_GROUP, "location": realsshd.LOCATION}))
        CONFIG.chmod(0o600)
        for case in args.cases.split(","):
            hosts, forks = (int(x) for x in case.split(":"))
            rows += run_case(lab, hosts, forks, args.latency, args.tools.split(","), work,
                             sh_state)
    finally:
        CONFIG.unlink(missing_ok=True)
        lab.close()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    print(f"agent: {args.agent}")
    print("| tool | hosts | forks | L (s) | wall (s) | x floor | x ideal | peak RSS (MB) "
          "| SSH sessions/host | connected | client CPU (ms/host) | machine CPU (ms/host) "
          "| load before |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.tool} | {r.hosts} | {r.forks} | {r.latency_s:g} | {r.wall_s:.2f} | "
              f"{r.ratio_floor:.2f} | {r.wall_s / r.ideal_s:.2f} | {r.peak_rss_mb:.0f} | "
              f"{r.sessions_per_host:g} | {r.ok}/{r.hosts} | {r.client_cpu_ms:.0f} | "
              f"{r.machine_cpu_ms:.0f} | {r.load_before:.1f} |")


if __name__ == "__main__":
    main()
