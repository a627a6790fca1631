"""Onboarding at scale against the lab: arcfleet vs ansible-core ``-m raw`` vs a sequential loop.

Every measurement gets a fresh lab (``python -m fleet lab up``) in its own process, so the lab's
CPU is not charged to the tool and every host starts disconnected. The lab simulates a connect
latency of L seconds: ``azcmagent connect`` sleeps L s on the host. The ideal wall time at a given
forks is ceil(N / forks) x L; the ratio to it is what arcfleet's own overhead costs.

    /work/venv/bin/python bench/onboard_scale.py --quick            # the cases the targets need
    /work/venv/bin/python bench/onboard_scale.py --full             # 3 N x 2 L x 3 forks
    /work/venv/bin/python bench/onboard_scale.py --hosts 500 --latency 2 --forks 100 \\
        --tools arcfleet                                             # one case

Tools:
- ``arcfleet``: ``python -m fleet onboard -i <lab inventory> --forks F --connect-rate 0 --json``
  (``--connect-rate 0``: the playbook's default pacing, 5 connects/s, protects ARM and is meant
  to be slower than this). Peak RSS and CPU come from ``wait4`` on the process, exactly.
- ``ansible``: ansible-core in its own virtual environment (created on first use, not a project
  dependency), ``ansible all -m raw -a 'sudo -n azcmagent connect --config ... --verbose ...'``
  with the same forks over OpenSSH. The config file is put on every lab host beforehand (arcfleet
  uploads it over SFTP inside the measured time, so this favours ansible). Memory is the peak of
  the summed RSS and PSS of ansible and all its processes, sampled with psutil.
- ``sequential``: a loop that runs ``ssh host 'sudo -n azcmagent connect ...'`` one host after
  another, the floor most hand-written scripts reach. It is measured on ``--sequential-sample``
  hosts and projected linearly to N (it is N x the per-host time by construction).

Results go to stdout as a table and, with ``--json FILE``, as JSON for ``bench/run_all.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import psutil  # type: ignore[import-untyped,unused-ignore]
import yaml

REPO = Path(__file__).resolve().parents[1]
# Measure arcfleet as installed: Python keeps its modules' compiled bytecode (pip writes it, and a
# source tree gets it on first import) unless PYTHONDONTWRITEBYTECODE is set, as on some CI and
# sandbox machines, where every run would compile all of arcfleet again (~0.25 s of CPU).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
PYTHON = sys.executable
ANSIBLE_CORE = "ansible-core==2.19.14"
DEFAULT_ANSIBLE_VENV = Path(tempfile.gettempdir()) / "arcfleet-bench-ansible"
CONFIG_ON_HOST = "/tmp/arcbench/connect.json"
SUBNETS = ["127.66", "127.67", "127.68", "127.69"]  # rotated: one fresh range per lab

# The cases the targets of issues 5 and 9 need (N, L, forks, tools). Forks 200 at every N gives
# the plot its lines; 500/100 is issue 5's case; 1000/500 checks open files and 1,000 listeners.
QUICK = [
    (100, 2.0, 200, ("arcfleet", "ansible", "sequential")),
    (500, 2.0, 200, ("arcfleet", "ansible", "sequential")),
    (1000, 2.0, 200, ("arcfleet", "ansible", "sequential")),
    (500, 2.0, 100, ("arcfleet",)),
    (1000, 2.0, 500, ("arcfleet",)),
]


@dataclass
class Result:
    tool: str
    hosts: int
    latency_s: float
    forks: int
    wall_s: float
    ideal_s: float
    ok_hosts: int
    cpu_s: float  # the tool's user+sys, its children included
    peak_rss_mb: float  # arcfleet: the process; ansible: peak sum over its processes
    peak_pss_mb: float | None = None  # ansible only: peak sum of PSS (shared pages split)
    peak_procs: int = 1
    lab_cpu_s: float = 0.0
    load_before: float = 0.0  # 1-minute load average when the run started (noise indicator)
    measured_hosts: int = 0  # sequential: how many hosts were really run
    command: str = ""
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.wall_s / self.ideal_s

    @property
    def cpu_ms_per_host(self) -> float:
        return 1000 * self.cpu_s / max(1, self.hosts)  # sequential: cpu_s is projected too


def ideal_s(hosts: int, forks: int, latency_s: float) -> float:
    return math.ceil(hosts / forks) * latency_s


# ---- the lab ------------------------------------------------------------------------------


@dataclass
class Lab:
    work_dir: Path
    process: subprocess.Popen[bytes]
    inventory: Path
    port: int
    addresses: dict[str, str] = field(default_factory=dict)  # host name -> address

    @property
    def key_file(self) -> Path:
        return self.work_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.work_dir / "known_hosts"

    def cpu_s(self) -> float:
        try:
            times = psutil.Process(self.process.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)


_subnet_turn = 0


@contextlib.contextmanager
def lab(hosts: int, latency_s: float, scratch: Path) -> Iterator[Lab]:
    """A fresh lab of ``hosts`` Linux hosts in its own process; SIGTERM at the end."""
    global _subnet_turn
    subnet = SUBNETS[_subnet_turn % len(SUBNETS)]
    _subnet_turn += 1
    work = Path(tempfile.mkdtemp(prefix="lab-", dir=scratch))
    inventory = work / "inventory.yaml"
    log = (work / "lab.log").open("wb")
    command = [PYTHON, "-m", "fleet", "lab", "up", "--hosts", str(hosts), "--latency",
               str(latency_s), "--scenario", "success", "--work-dir", str(work), "--subnet",
               subnet, "--port", "0"]
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "lab: serving" not in (work / "lab.log").read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lab did not start: {(work / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.1)
        body = yaml.safe_load(inventory.read_text(encoding="utf-8"))
        addresses = {name: spec["address"] for name, spec in body["hosts"].items()}
        port = next(iter(body["hosts"].values()))["port"]
        yield Lab(work, process, inventory, port, addresses)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def place_config(lab_: Lab) -> None:
    """Put the connect --config file on every lab host (for the OpenSSH-based peers)."""
    secret = (lab_.work_dir / "sp_secret").read_text(encoding="utf-8").strip()
    azure = yaml.safe_load(lab_.inventory.read_text(encoding="utf-8"))["defaults"]["azure"]
    body = json.dumps({
        "service-principal-id": azure["service_principal"]["client_id"],
        "service-principal-secret": secret,
        "tenant-id": azure["tenant_id"],
        "subscription-id": azure["subscription_id"],
        "resource-group": azure["resource_group"],
        "location": azure["location"],
    }).encode()
    for name in lab_.addresses:
        path = lab_.work_dir / "hosts" / name / CONFIG_ON_HOST.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)


def connect_command(name: str) -> str:
    # What arcfleet runs, with the config file already in place.
    return (f"sudo -n azcmagent connect --config {CONFIG_ON_HOST} --verbose "
            f"--resource-name {name} --cloud AzureCloud")


# ---- measuring a process --------------------------------------------------------------------


class TreeSampler:
    """Peak summed RSS/PSS and process count of a process and all its descendants, plus any
    extra processes ``extra`` finds (ssh multiplex masters leave the tree)."""

    def __init__(self, pid: int, interval_s: float = 0.5, pss_every: int = 4) -> None:
        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.pss_every = pss_every
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        turn = 0
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = pss = 0
            with_pss = turn % self.pss_every == 0
            for proc in procs:
                try:
                    if with_pss:
                        info = proc.memory_full_info()
                        rss += info.rss
                        pss += info.pss
                    else:
                        rss += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(procs))
            turn += 1
            self._stop.wait(self.interval_s)


@dataclass
class Finished:
    wall_s: float
    status: int
    cpu_s: float
    max_rss_kb: int
    stdout: str
    stderr: str = ""


def run_measured(command: list[str], *, env: dict[str, str] | None = None,
                 sampler: bool = False, cwd: Path = REPO,
                 stdin: IO[bytes] | None = None) -> tuple[Finished, TreeSampler | None]:
    """Run ``command``; wall time, and the exact CPU and peak RSS of it (``wait4``).
    ``stdin``: a file to feed it (a secret goes there, never in argv); else nothing."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL if stdin is None else stdin)
        tree: TreeSampler | None = TreeSampler(process.pid) if sampler else None
        with tree if tree is not None else contextlib.nullcontext():
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode("utf-8", "replace")
        errors = err.read().decode("utf-8", "replace")
    return Finished(wall, process.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                    text, errors), tree


# ---- the tools ----------------------------------------------------------------------------


def run_arcfleet(lab_: Lab, hosts: int, latency_s: float, forks: int, scratch: Path) -> Result:
    state = Path(tempfile.mkdtemp(prefix="state-", dir=scratch))
    command = [PYTHON, "-m", "fleet", "onboard", "-i", str(lab_.inventory), "--forks",
               str(forks), "--connect-rate", "0", "--state-dir", str(state), "--json"]
    load = os.getloadavg()[0]
    lab_before = lab_.cpu_s()
    done, _ = run_measured(command)
    lab_cpu = lab_.cpu_s() - lab_before
    shutil.rmtree(state, ignore_errors=True)
    ok = sum(1 for line in done.stdout.splitlines()
             if line.startswith("{") and json.loads(line).get("category") == "connected")
    return Result("arcfleet", hosts, latency_s, forks, done.wall_s,
                  ideal_s(hosts, forks, latency_s), ok, done.cpu_s, done.max_rss_kb / 1024,
                  lab_cpu_s=lab_cpu, load_before=load,
                  command="python -m fleet onboard -i <lab>/inventory.yaml "
                          f"--forks {forks} --connect-rate 0 --state-dir <tmp> --json",
                  note="" if done.status == 0 else f"exit {done.status}")


# The least any asyncssh client can do: one session per host, `forks` at a time, running only
# one command (its config placed beforehand); known_hosts parsed once and the same cipher
# preference as arcfleet; no inventory, no store, no report, no Azure preflight. The lab's
# benchmarks and bench/realsshd_bench.py run it (see floor_argv).
ASYNCSSH_FLOOR = r"""
import asyncio, sys, asyncssh
targets, forks, user, key, known, template, ciphers = sys.argv[1:8]
async def one(sem, name, addr, port, keys, trusted):
    async with sem:
        async with asyncssh.connect(addr, int(port), username=user, client_keys=keys,
                                    known_hosts=trusted, config=None, agent_path=None,
                                    encryption_algs=ciphers.split(","),
                                    compression_algs=["none"]) as conn:
            result = await conn.run(template.replace("NAME", name))
            return result.exit_status == 0
async def main():
    keys = asyncssh.load_keypairs([key])
    # Parsed once, as arcfleet does: given a path, asyncssh re-reads it for every connection.
    trusted = asyncssh.read_known_hosts(known)
    sem = asyncio.Semaphore(int(forks))
    hosts = []
    for target in targets.split(","):
        name, _, where = target.partition("=")
        addr, _, port = where.rpartition(":")
        hosts.append((name, addr, port))
    done = await asyncio.gather(*(one(sem, n, a, p, keys, trusted) for n, a, p in hosts))
    print(sum(done))
asyncio.run(main())
"""


def floor_argv(targets: dict[str, tuple[str, int]], forks: int, user: str, key: Path,
               known: Path, template: str) -> list[str]:
    """The command that runs ASYNCSSH_FLOOR over ``targets`` (name -> (address, port));
    ``NAME`` in ``template`` becomes each host's name."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from fleet.transport.ssh import ENCRYPTION_ALGS

    hosts = ",".join(f"{name}={address}:{port}" for name, (address, port) in targets.items())
    return [PYTHON, "-c", ASYNCSSH_FLOOR, hosts, str(forks), user, str(key), str(known),
            template, ",".join(ENCRYPTION_ALGS)]


def run_floor(lab_: Lab, hosts: int, latency_s: float, forks: int, scratch: Path) -> Result:
    """The asyncssh floor (ASYNCSSH_FLOOR) against ``lab_``: what the lab and the machine allow
    any asyncssh tool at this size, measured like arcfleet."""
    place_config(lab_)
    targets = {name: (address, lab_.port) for name, address in lab_.addresses.items()}
    command = floor_argv(targets, forks, "arc", lab_.key_file, lab_.known_hosts,
                         connect_command("NAME"))
    load = os.getloadavg()[0]
    lab_before = lab_.cpu_s()
    done, _ = run_measured(command)
    lab_cpu = lab_.cpu_s() - lab_before
    ok = int(done.stdout.strip() or 0)
    return Result("floor", hosts, latency_s, forks, done.wall_s,
                  ideal_s(hosts, forks, latency_s), ok, done.cpu_s, done.max_rss_kb / 1024,
                  lab_cpu_s=lab_cpu, load_before=load,
                  command=f"asyncssh loop, forks {forks}: {connect_command('<name>')}",
                  note="" if done.status == 0 else f"exit {done.status}")


def ensure_ansible(venv: Path) -> Path:
    ansible = venv / "bin" / "ansible"
    if not ansible.exists():
        print(f"creating {venv} with {ANSIBLE_CORE} (once)", file=sys.stderr)
        base = getattr(sys, "_base_executable", PYTHON)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", ANSIBLE_CORE], check=True)
    return ansible


def ansible_env(home: Path) -> dict[str, str]:
    """Keep ansible out of ~/.ansible: config, home, temp dirs all under ``home``."""
    for sub in ("home", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return {**os.environ, "ANSIBLE_CONFIG": str(home / "ansible.cfg"),
            "ANSIBLE_HOME": str(home / "home"), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": "/tmp", "ANSIBLE_NOCOLOR": "1"}


def ansible_version(venv: Path, scratch: Path) -> str:
    ansible = ensure_ansible(venv)
    home = Path(tempfile.mkdtemp(prefix="ansible-", dir=scratch))
    env = ansible_env(home)
    (home / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    text = subprocess.run([str(ansible), "--version"], env=env, capture_output=True,
                          text=True).stdout
    shutil.rmtree(home, ignore_errors=True)
    return text.splitlines()[0] if text else "ansible (unknown version)"


def run_ansible(lab_: Lab, hosts: int, latency_s: float, forks: int, scratch: Path,
                venv: Path) -> Result:
    ansible = ensure_ansible(venv)
    place_config(lab_)
    home = Path(tempfile.mkdtemp(prefix="ansible-", dir=scratch))
    inventory = home / "hosts.ini"
    lines = ["[lab]"]
    lines += [f"{name} ansible_host={address}" for name, address in lab_.addresses.items()]
    lines += ["", "[lab:vars]", f"ansible_port={lab_.port}", "ansible_user=arc",
              f"ansible_ssh_private_key_file={lab_.key_file}"]
    inventory.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # One command per host: an SSH multiplex master would only add a process per host, so it is
    # off. Host keys are checked against the lab's known_hosts, as arcfleet does. Same cipher
    # preference as arcfleet (AES-GCM first), no compression.
    ssh_args = ("-o ControlMaster=no -o StrictHostKeyChecking=yes "
                f"-o UserKnownHostsFile={lab_.known_hosts} -o LogLevel=ERROR "
                "-o Ciphers=aes256-gcm@openssh.com,aes128-gcm@openssh.com,"
                "chacha20-poly1305@openssh.com")
    (home / "ansible.cfg").write_text(
        "[defaults]\n"
        f"inventory = {inventory}\n"
        "host_key_checking = True\n"
        "gathering = explicit\n"
        "stdout_callback = minimal\n"
        "retry_files_enabled = False\n"
        "timeout = 30\n"
        f"forks = {forks}\n"
        "[ssh_connection]\n"
        f"ssh_args = {ssh_args}\n"
        f"control_path_dir = {home / 'cp'}\n",
        encoding="utf-8")
    env = ansible_env(home)
    command = [str(ansible), "all", "-m", "raw", "-f", str(forks), "-a",
               connect_command("{{ inventory_hostname }}")]
    load = os.getloadavg()[0]
    lab_before = lab_.cpu_s()
    done, tree = run_measured(command, env=env, sampler=True, cwd=home)
    lab_cpu = lab_.cpu_s() - lab_before
    _kill_leftovers(home)
    shutil.rmtree(home, ignore_errors=True)
    ok = sum(1 for line in done.stdout.splitlines() if "| CHANGED | rc=0" in line)
    assert tree is not None
    return Result("ansible", hosts, latency_s, forks, done.wall_s,
                  ideal_s(hosts, forks, latency_s), ok, done.cpu_s, tree.peak_rss / 2**20,
                  peak_pss_mb=tree.peak_pss / 2**20, peak_procs=tree.peak_procs,
                  lab_cpu_s=lab_cpu, load_before=load,
                  command=f"ansible all -m raw -f {forks} -a '{command[-1]}'",
                  note="" if done.status == 0 else f"exit {done.status}")


def _kill_leftovers(home: Path) -> None:
    """End ssh processes that still name our ansible directory (multiplex masters), by PID."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(home) in cmdline and proc.pid != os.getpid():
            with contextlib.suppress(psutil.Error):
                proc.terminate()


@dataclass
class LoopSample:
    """The sequential loop measured on a few hosts: per-host figures to project from."""

    hosts: int
    wall_s: float
    cpu_s: float
    ok: int
    lab_cpu_s: float
    load: float


def measure_sequential(lab_: Lab) -> LoopSample:
    """``for host in ...; do ssh host 'sudo -n azcmagent connect ...'; done`` over the lab."""
    place_config(lab_)
    load = os.getloadavg()[0]
    lab_before = lab_.cpu_s()
    started = time.perf_counter()
    cpu = 0.0
    ok = 0
    for name, address in lab_.addresses.items():
        command = ["ssh", "-i", str(lab_.key_file), "-p", str(lab_.port), "-o", "BatchMode=yes",
                   "-o", "StrictHostKeyChecking=yes", "-o",
                   f"UserKnownHostsFile={lab_.known_hosts}", "-o", "LogLevel=ERROR",
                   f"arc@{address}", connect_command(name)]
        done, _ = run_measured(command)
        cpu += done.cpu_s
        ok += done.status == 0
    return LoopSample(len(lab_.addresses), time.perf_counter() - started, cpu, ok,
                      lab_.cpu_s() - lab_before, load)


def project_sequential(sample: LoopSample, hosts: int, latency_s: float) -> Result:
    """The loop's figures for ``hosts``: N x the measured per-host time, by construction."""
    scale = hosts / sample.hosts
    return Result("sequential", hosts, latency_s, 1, sample.wall_s * scale, hosts * latency_s,
                  round(sample.ok * scale), sample.cpu_s * scale, 0.0,
                  lab_cpu_s=sample.lab_cpu_s * scale, load_before=sample.load,
                  measured_hosts=sample.hosts,
                  command="for h in ...; do ssh -i <lab key> -p <port> arc@$h "
                          f"'{connect_command('$h')}'; done",
                  note=(f"measured on {sample.hosts} hosts ({sample.wall_s:.1f} s), "
                        f"projected to {hosts}" if sample.hosts < hosts else ""))


# ---- the matrix ---------------------------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        print(f"warning: open files limit {target} < {needed}; raise `ulimit -n`",
              file=sys.stderr)


def machine() -> dict[str, object]:
    freq = psutil.cpu_freq()
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import asyncssh
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "cpu_mhz": round(freq.current) if freq else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "asyncssh": asyncssh.__version__,
        "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "arcfleet_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                          capture_output=True, text=True).stdout.strip(),
    }


def cases(args: argparse.Namespace) -> list[tuple[int, float, int, tuple[str, ...]]]:
    tools = tuple(args.tools.split(","))
    if args.quick:
        return [(n, lat, f, tuple(t for t in ts if t in tools)) for n, lat, f, ts in QUICK]
    if args.full:
        matrix = [(n, lat, f, tools) for lat in (2.0, 5.0) for n in (100, 500, 1000)
                  for f in (50, 200, 500)]
        return [*matrix, (500, 2.0, 100, ("arcfleet",))]  # issue 5's case
    return [(args.hosts, args.latency, args.forks, tools)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the cases the targets need")
    mode.add_argument("--full", action="store_true", help="N 100/500/1000 x L 2/5 x forks "
                                                          "50/200/500")
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--forks", type=int, default=100)
    parser.add_argument("--tools", default="arcfleet,ansible,sequential")
    parser.add_argument("--sequential-sample", type=int, default=10,
                        help="hosts the sequential loop really runs (projected to N)")
    parser.add_argument("--ansible-venv", type=Path, default=DEFAULT_ANSIBLE_VENV)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    plan = cases(args)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    clock = time.monotonic()
    raise_fd_limit(max(n for n, *_ in plan) * 4 + 1024)
    info = machine()
    if any("ansible" in tools for *_, tools in plan):
        info["ansible"] = ansible_version(args.ansible_venv, Path(tempfile.gettempdir()))
    results: list[Result] = []
    loops: dict[float, LoopSample] = {}  # one sequential sample per latency
    with tempfile.TemporaryDirectory(prefix="arcfleet-bench-") as tmp:
        scratch = Path(tmp)
        for hosts, latency, forks, tools in plan:
            for tool in tools:
                if tool == "sequential":
                    if any(r.tool == "sequential" and r.hosts == hosts and r.latency_s == latency
                           for r in results):
                        continue  # forks do not matter to a loop
                    if latency not in loops:
                        with lab(args.sequential_sample, latency, scratch) as lab_:
                            loops[latency] = measure_sequential(lab_)
                    result = project_sequential(loops[latency], hosts, latency)
                else:
                    with lab(hosts, latency, scratch) as lab_:
                        if tool == "arcfleet":
                            result = run_arcfleet(lab_, hosts, latency, forks, scratch)
                        elif tool == "ansible":
                            result = run_ansible(lab_, hosts, latency, forks, scratch,
                                                 args.ansible_venv)
                        else:
                            raise SystemExit(f"unknown tool {tool!r}")
                results.append(result)
                print(row(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "mode": "quick" if args.quick else "full" if args.full else "one",
            "started_utc": started, "minutes": round((time.monotonic() - clock) / 60, 1),
            "results": [{**asdict(r), "ratio": r.ratio, "cpu_ms_per_host": r.cpu_ms_per_host}
                        for r in results]}, indent=2), encoding="utf-8")


def row(r: Result) -> str:
    memory = f"{r.peak_rss_mb:7.0f} MB"
    if r.peak_pss_mb is not None:
        memory += f" (PSS {r.peak_pss_mb:.0f} MB, {r.peak_procs} procs)"
    return (f"{r.tool:10s} N={r.hosts:<5d} L={r.latency_s:g}s forks={r.forks:<4d} "
            f"wall {r.wall_s:7.2f} s  ideal {r.ideal_s:6.1f} s  ratio {r.ratio:5.2f}  "
            f"ok {r.ok_hosts}/{r.hosts}  cpu {r.cpu_ms_per_host:6.1f} ms/host  "
            f"lab cpu {r.lab_cpu_s:5.1f} s  rss {memory}  load {r.load_before:.1f}"
            + (f"  [{r.note}]" if r.note else ""))


if __name__ == "__main__":
    main()
