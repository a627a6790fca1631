"""Shared helpers for the engine acceptance tests: the real CLI in a subprocess against a lab.

Every helper reads the lab's own records (commands, SFTP writes, agent calls, files) on the lab's
loop through :meth:`LabFleet.call`; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from fleet.lab.fleet import LabFleet
from fleet.lab.host import ConnectCall, LabHost, SftpWrite
from fleet.lab.scenario import Scenario, ScenarioPlan
from fleet.lab.winrm_server import LabWinrmServer
from fleet.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SSH_SUBNET = "127.60"  # this suite's SSH labs
WINRM_SUBNET = "127.61"  # this suite's WinRM and mixed labs

# Fast, realistic policy: short backoff so retries take milliseconds, short deadlines.
FAST_PLAYBOOK: dict[str, Any] = {
    "name": "e2e",
    "description": "acceptance tests: fast retries, short deadlines",
    "mode": "onboard",
    "attempts": 4,
    "backoff": {"initial_s": 0.05, "max_s": 0.2, "multiplier": 2},
    "deadlines": {"connect_timeout_s": 5, "command_s": 15, "agent_connect_s": 20, "host_s": 90},
    "remediations": ["restart_agent_service", "wait_for_himds"],
    "breaker": {"threshold": 3},
    "pacing": {"forks": 50, "connect_rate_per_s": 0, "connect_burst": 100},
}

# Tags no shell may interpret: quotes are refused by validation (azcmagent cannot take them).
HOSTILE_TAGS = {
    "owner name": "Jane $HOME `id` Doe",
    "cost;center": "a && b || c; d | e",
    "$(whoami)": "`reboot` $((1+1)) \\n *?[x]",
    "plain": "x",
}

# Every field --json promises on each line.
JSON_FIELDS = ("host", "address", "transport", "status", "category", "azcm_code", "exit_code",
               "fix")


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def write_playbook(path: Path, **overrides: Any) -> Path:
    """A playbook file: :data:`FAST_PLAYBOOK` with ``overrides`` merged in (nested dicts too)."""
    path.write_text(yaml.safe_dump(_merge(FAST_PLAYBOOK, overrides), sort_keys=False),
                    encoding="utf-8")
    return path


def edit_inventory(lab: LabFleet, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the lab's inventory (same folder, so its relative file references hold),
    changed by ``edit``."""
    body = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    edit(body)
    path = lab.inventory_path.with_name(name)
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    state_dir: Path

    @property
    def outcomes(self) -> dict[str, dict[str, Any]]:
        """host -> its ``--json`` line (each stdout line must be one JSON object, each host
        printed once)."""
        result: dict[str, dict[str, Any]] = {}
        for line in self.stdout.splitlines():
            body = json.loads(line)
            assert isinstance(body, dict), line
            assert body["host"] not in result, f"{body['host']} printed twice: {self.stdout}"
            result[body["host"]] = body
        return result

    def category(self, host: str) -> str:
        return str(self.outcomes[host]["category"])

    def run_id(self) -> str:
        with RunStore.open(self.state_dir, create=False) as store:
            run_id = store.latest_run_id(root_only=False)
        assert run_id is not None
        return run_id

    def run_folder(self) -> Path:
        with RunStore.open(self.state_dir, create=False) as store:
            return store.run_folder(self.run_id())

    def describe(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr[-4000:]}"


def cli_argv(command: str, inventory: Path, state_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fleet", command, "-i", str(inventory), "--state-dir",
            str(state_dir), "--json", "--connect-rate", "0", *extra]


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The default ~/.ssh/known_hosts must never be the developer's own.
    env["HOME"] = str(tmp_path / "home")
    env.pop("PYTHONPATH", None)
    return env


def run_cli(
    lab: LabFleet,
    tmp_path: Path,
    *extra: str,
    command: str = "onboard",
    inventory: Path | None = None,
    playbook: Path | str | None = None,
    state_dir: Path | None = None,
    timeout: float = 180,
) -> CliResult:
    """``python -m fleet COMMAND -i INV --json --connect-rate 0 ...`` from the worktree root."""
    state = state_dir or tmp_path / "state"
    if command == "rerun":  # the run to repeat says which inventory
        argv = [sys.executable, "-m", "fleet", "rerun", "--state-dir", str(state), "--json",
                *extra]
    else:
        argv = cli_argv(command, inventory or lab.inventory_path, state, *extra)
    if playbook is not None:
        argv += ["--playbook", str(playbook)]
    proc = subprocess.run(argv, cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return CliResult(proc.returncode, proc.stdout, proc.stderr, state)


def interrupt_run(lab: LabFleet, tmp_path: Path, playbook: Path, *,
                  in_flight: int) -> CliResult:
    """Start an onboard run, send SIGINT (Ctrl-C) once ``in_flight`` hosts are inside
    ``azcmagent connect``, and wait for the CLI to end."""
    state = tmp_path / "state"
    proc = subprocess.Popen(
        cli_argv("onboard", lab.inventory_path, state, "--playbook", str(playbook)),
        cwd=ROOT, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)

    def inside_connect(host: LabHost) -> bool:
        # Running now, and the last command the host received (over WinRM: the decoded
        # script) is the agent's connect.
        last = host.commands[-1] if host.commands else ""
        return bool(host.running) and " connect " in last and "--config" in last

    def in_agent() -> int:
        return lab.call(lambda: sum(inside_connect(h) for h in lab.hosts.values()))

    try:
        started = wait_until(lambda: in_agent() >= in_flight, 30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert started, f"{in_flight} connects never started"
    return CliResult(proc.returncode, out, err, state)


def assert_interrupted(result: CliResult, hosts: int) -> None:
    """Exit 130; every host (in flight or never started) recorded ``interrupted``, in the
    ``--json`` lines and in the store, whose run is marked interrupted."""
    assert result.returncode == 130, result.describe()
    assert {o["category"] for o in result.outcomes.values()} == {"interrupted"}
    assert len(result.outcomes) == hosts
    with RunStore.open(result.state_dir, create=False) as store:
        record = store.get_run(result.run_id())
        assert record is not None and record.status == "interrupted"
        final = store.final_outcomes(record.root_run_id)
    assert len(final) == hosts
    assert {row.category for row in final.values()} == {"interrupted"}


# ---- reading the lab ------------------------------------------------------------------------


def commands(lab: LabFleet, name: str) -> list[str]:
    host = lab.hosts[name]
    return lab.call(lambda: list(host.commands))


def connect_calls(lab: LabFleet, name: str) -> list[ConnectCall]:
    host = lab.hosts[name]
    return lab.call(lambda: list(host.connect_calls))


def sftp_writes(lab: LabFleet, name: str) -> list[SftpWrite]:
    host = lab.hosts[name]
    return lab.call(lambda: list(host.sftp_writes))


def running(lab: LabFleet, name: str) -> list[str]:
    host = lab.hosts[name]
    return lab.call(lambda: [r.command for r in host.running.values()])


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate`` (the lab settles a cancelled task on its own loop)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def winrm_server(lab: LabFleet) -> LabWinrmServer:
    assert lab.winrm is not None
    return cast(LabWinrmServer, lab.winrm)


def config_leftovers(host: LabHost) -> list[Path]:
    """Private config directories still on the host's filesystem (Linux /tmp, Windows Temp)."""
    left = list((host.fs_root / "tmp").glob("arcfleet.*"))
    win_temp = host.fs_root / "C" / "Windows" / "Temp"
    if win_temp.exists():
        left += list(win_temp.glob("arcfleet*"))
    return left


def all_leftovers(lab: LabFleet) -> dict[str, list[Path]]:
    return {name: left for name, host in lab.hosts.items() if (left := config_leftovers(host))}


def secrets_of(lab: LabFleet) -> list[str]:
    return [lab.secret, lab.winrm_password]


def host_texts(lab: LabFleet) -> Iterable[tuple[str, str]]:
    """Everything a host received as command text: command lines and the agent's argv."""

    def collect() -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name, host in lab.hosts.items():
            out += [(name, line) for line in [*host.commands, *host.scripts]]
            out += [(name, " ".join(call.argv)) for call in host.connect_calls]
        if lab.winrm is not None:
            for address, record in winrm_server(lab).records.items():
                out += [(address, " ".join(argv)) for argv in record.agent_argv]
        return out

    return lab.call(collect)


def assert_no_secret_on_hosts(lab: LabFleet) -> None:
    leaks = [(where, text[:120]) for where, text in host_texts(lab)
             for secret in secrets_of(lab) if secret in text]
    assert not leaks, f"secret in host command text: {leaks[:3]}"


def assert_no_secret_in_files(lab: LabFleet, folder: Path, *texts: str) -> None:
    """No secret in any file under ``folder`` (run log, transcripts, store, CSV) or in
    ``texts`` (the CLI's stdout and stderr)."""
    for secret in secrets_of(lab):
        needle = secret.encode()
        for path in folder.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"secret in {path}"
        for text in texts:
            assert secret not in text


def connect_json_modes(lab: LabFleet) -> list[tuple[str, SftpWrite]]:
    """Every SFTP write or chmod of a connect.json, over all Linux hosts."""
    return [(name, w) for name in lab.hosts for w in sftp_writes(lab, name)
            if w.path.endswith("/connect.json")]


def plan(default: Scenario | None = None, **hosts: Scenario) -> ScenarioPlan:
    """A scenario plan: ``default`` for every host, and ``lab_0001=Scenario(...)`` overrides."""
    return ScenarioPlan(default=default or Scenario(),
                        hosts=tuple((name.replace("_", "-"), s) for name, s in hosts.items()))


def assert_every_cut_is_incomplete(data: bytes, boundary: str, *, piece_step: int) -> None:
    """A real report stream cut at every byte offset is never complete and keeps only whole
    steps; fed in two pieces (every ``piece_step`` offsets) it gives the whole report."""
    from fleet.engine.frames import FrameParser, parse

    whole = parse(data, boundary)
    assert whole.complete
    for cut in range(len(data)):
        report = parse(data[:cut], boundary)
        assert not report.complete, cut
        assert report.steps == whole.steps[: len(report.steps)], cut
        assert report.problem, cut
    for cut in range(0, len(data) + 1, piece_step):
        parser = FrameParser(boundary)
        seen = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert seen == whole.steps and parser.finish().complete
