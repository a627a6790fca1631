"""What the one host script costs the host itself, next to the floor's single command (issue 15).

    .venv/bin/python bench/host_script_cost.py [--runs 200] [--sudo]

No SSH and no network: on this machine, as root, it runs ``--runs`` times each

- ``floor``: ``azcmagent connect --config FILE --verbose``, the only command the asyncssh floor
  and ansible-core ``-m raw`` send in ``bench/realsshd_bench.py``;
- ``script``: arcfleet's Linux host script (:func:`fleet.azcm.script_linux.build`, gated, as
  ``onboard`` sends it) under ``sh -c``, with ``go`` and the config on its stdin: the whole
  success path (private directory, ``show --json``, timer, config, connect, cleanup, verify);

with ``bench/realsshd_bench.py``'s ``sh`` stand-in for ``azcmagent`` (connect takes no time, a
fresh state each run so every run connects), and ``--sudo`` puts ``sudo -n`` in front of both.

Reported per run: CPU of the command's whole process tree (this process is a child subreaper,
so the script's detached timer is counted too), processes created (the kernel's fork counter in
/proc/stat, so read it on a quiet machine) and wall time. On real sshd every one of these runs
once per host next to the session's own cost (sshd's fork, key exchange, the login shell, sudo),
which both tools pay.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from realsshd_bench import SH_AGENT  # noqa: E402

from fleet.azcm.commands import ScriptMode, ScriptParams  # noqa: E402
from fleet.azcm.script_linux import build  # noqa: E402
from fleet.engine import frames  # noqa: E402
from fleet.inventory.model import AzureTarget, OsFamily, ResolvedHost, Transport  # noqa: E402

HOST = ResolvedHost(name="bench-01", address="127.0.0.1", port=22, transport=Transport.SSH,
                    os=OsFamily.LINUX, azure=AzureTarget(resource_name="bench-01"))
CONFIG = b'{"resource-name": "bench-01", "service-principal-secret": "not-a-secret"}\n'
PR_SET_CHILD_SUBREAPER = 36


def forks_so_far() -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    raise RuntimeError("no processes line in /proc/stat")


def reap_orphans(deadline_s: float = 5.0) -> None:
    """Wait for the orphans given to this subreaper (the script's timer ends with it)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.005)


def measure(name: str, argv: list[str], stdin: bytes, runs: int, env: dict[str, str],
            check: bytes, net: int) -> tuple[str, float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    forks = forks_so_far()
    start = time.perf_counter()
    for turn in range(runs):
        # A new dialled address each run (10.<net>.x.y): a fresh agent state, so every run
        # connects.
        run_env = {**env, "SSH_CONNECTION": f"10.0.0.1 1 10.{net}.{turn // 250}.{turn % 250} 22"}
        done = subprocess.run(argv, input=stdin, env=run_env, capture_output=True, check=False)
        if check not in done.stdout:
            sys.exit(f"{name}: unexpected output (exit {done.returncode}):\n"
                     f"{done.stdout[-2000:]!r}\n{done.stderr[-2000:]!r}")
        reap_orphans()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Minus this process's own fork per run (subprocess), which is not the command's.
    processes = (forks_so_far() - forks - runs) / runs
    return name, cpu / runs * 1000, processes, wall / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--sudo", action="store_true", help="put sudo -n in front of both")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: the script's elevation check wants uid 0 (as sudo gives it)")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    with tempfile.TemporaryDirectory(prefix="arcfleet-script-cost-") as work:
        bin_dir = Path(work, "bin")
        state = Path(work, "state")
        bin_dir.mkdir()
        state.mkdir()
        agent = bin_dir / "azcmagent"
        agent.write_text(SH_AGENT.replace("STATE_DIR", str(state)).replace("LATENCY", "0"))
        agent.chmod(0o755)
        config = Path(work, "connect.json")
        config.write_bytes(CONFIG)
        # --preserve-env keeps PATH over sudo's secure_path, so the script's `command -v`
        # finds the stand-in (and SSH_CONNECTION, its state's key); the floor names its path.
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C"}
        sudo = ["sudo", "-n", "--preserve-env=SSH_CONNECTION,PATH"] if args.sudo else []
        boundary = frames.new_boundary()
        params = ScriptParams(boundary, ScriptMode.CONNECT, 65536, 65536, cleanup_after_s=600,
                              gate=True)
        script = build(params, HOST)
        rows = [
            measure("floor", [*sudo, str(agent), "connect", "--config", str(config),
                              "--verbose"], b"", args.runs, env, b"Connected machine", 1),
            measure("script", [*sudo, "sh", "-c", script], b"go\n" + CONFIG, args.runs, env,
                    f"{boundary} step verify 0".encode(), 2),
        ]
    print(f"{args.runs} runs each{', under sudo -n' if args.sudo else ''}, "
          f"load before {os.getloadavg()[0]:.1f}")
    print("| command | CPU (ms/run) | processes/run | wall (ms/run) |")
    print("|---|---:|---:|---:|")
    for name, cpu_ms, processes, wall_ms in rows:
        print(f"| {name} | {cpu_ms:.1f} | {processes:.1f} | {wall_ms:.1f} |")


if __name__ == "__main__":
    main()
