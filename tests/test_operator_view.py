"""Issue 18, the operator's view, against the lab: preflight says ready, offboard speaks of
disconnected, flags do what they say, summaries hide nothing, non-TTY lines and JSON lines,
and the live panel on a real pseudo-terminal."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from fleet.azcm.diagnosis import Action, ActionKind, Category, Diagnosis
from fleet.cli import cli
from fleet.cli.defaults import options_without_default
from fleet.cli.display import LINE_TEXT_WIDTH, host_line
from fleet.engine.outcome import HostOutcome
from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from tests.hostile_support import edit_inventory
from tests.run_support import (
    ROOT,
    arcfleet,
    arcfleet_on_path,
    cli_env,
    failures_csv_of,
    write_playbook,
)

SUBNET = "127.87"


def _lines_starting(stderr: str, marker: str) -> list[str]:
    return [line[len(marker):].strip() for line in stderr.splitlines() if line.startswith(marker)]


def _csv_hosts(path: Path) -> list[str]:
    return [row["host"] for row in csv.DictReader(io.StringIO(path.read_text("utf-8")))]


def _connects(lab: LabFleet) -> dict[str, int]:
    return lab.call(lambda: {n: len(h.connect_calls) for n, h in lab.hosts.items()})


# --------------------------------------------------------------------------- preflight


def test_preflight_says_ready_and_its_next_command_onboards_exactly_those(
    tmp_path: Path,
) -> None:
    plan = ScenarioPlan(default=Scenario(), hosts=(
        ("lab-0002", Scenario(ScenarioKind.ALREADY_CONNECTED)),
        # A stable failure a preflight finds (an agent-less host is "ready": onboard installs it).
        ("lab-0004", Scenario(ScenarioKind.SUDO_PASSWORD)),
    ))
    state = tmp_path / "state"
    with LabFleet.in_thread(tmp_path / "lab", hosts=5, plan=plan, subnet=SUBNET) as lab:
        inventory = str(lab.inventory_path)
        # Every host ready or already connected: exit 0 and an empty failures.csv.
        settled = arcfleet("preflight", "-i", inventory, "--state-dir", str(tmp_path / "s0"),
                           "--limit", "lab-0001:lab-0002:lab-0003")
        assert settled.returncode == 0, settled.stderr
        assert _csv_hosts(failures_csv_of(settled.stderr)) == []
        assert "top causes" not in settled.stderr
        assert _lines_starting(settled.stderr, "onboard the hosts found ready: ")

        checked = arcfleet("preflight", "-i", inventory, "--state-dir", str(state), "--json")
        assert checked.returncode == 1, checked.stderr  # lab-0004's sudo wants a password
        printed = {o["host"]: o for o in map(json.loads, checked.stdout.splitlines())}
        assert {h: (o["status"], o["category"]) for h, o in printed.items()} == {
            "lab-0001": ("ready", "ready"), "lab-0002": ("success", "already_connected"),
            "lab-0003": ("ready", "ready"), "lab-0004": ("failed", "elevation"),
            "lab-0005": ("ready", "ready"),
        }
        assert "onboard would connect" in printed["lab-0001"]["cause"]
        # Ready hosts are not failures: not in failures.csv, not a "top cause".
        assert _csv_hosts(failures_csv_of(checked.stderr)) == ["lab-0004"]
        causes = checked.stderr.split("top causes", 1)[1].split("onboard the hosts", 1)[0]
        assert "elevation" in causes and "ready" not in causes.replace("not ready", "")
        (onboard_command,) = _lines_starting(checked.stderr, "onboard the hosts found ready: ")
        assert "--limit @ready" in onboard_command
        assert _lines_starting(checked.stderr, "check again the hosts that are not ready: ")
        assert sum(_connects(lab).values()) == 0  # a preflight changes nothing

        # The printed command, verbatim, onboards exactly the ready hosts.
        done = subprocess.run(onboard_command, shell=True, env=arcfleet_on_path(tmp_path),
                              cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        assert _connects(lab) == {"lab-0001": 1, "lab-0002": 0, "lab-0003": 1,
                                  "lab-0004": 0, "lab-0005": 1}
        assert "every host is connected" in done.stderr

        # Now every host but lab-0004 is connected: nothing to do.
        again = arcfleet("preflight", "-i", inventory, "--state-dir", str(tmp_path / "s2"),
                         "--limit", "lab-0001:lab-0002:lab-0003:lab-0005")
        assert again.returncode == 0, again.stderr
        assert _csv_hosts(failures_csv_of(again.stderr)) == []
        assert "every host is already connected" in again.stderr


def test_limit_ready_without_a_preflight_is_bad_input(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, subnet=SUBNET) as lab:
        done = arcfleet("onboard", "-i", str(lab.inventory_path), "--limit", "@ready",
                        "--state-dir", str(tmp_path / "state"))
        assert done.returncode == 2
        assert done.stderr.startswith("error: ") and "no preflight run recorded" in done.stderr
        assert lab.call(lambda: sum(len(h.commands) for h in lab.hosts.values())) == 0


# --------------------------------------------------------------------------- offboard


def test_offboard_summary_speaks_of_disconnected(tmp_path: Path) -> None:
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=3, subnet=SUBNET) as lab:
        inventory = str(lab.inventory_path)
        onboarded = arcfleet("onboard", "-i", inventory, "--playbook", str(playbook),
                             "--state-dir", str(tmp_path / "on"), "--connect-rate", "0")
        assert onboarded.returncode == 0, onboarded.stderr
        off = arcfleet("offboard", "-i", inventory, "--state-dir", str(tmp_path / "off"))
        assert off.returncode == 0, off.stderr
        assert "every host is disconnected" in off.stderr
        assert "every host is connected" not in off.stderr


# --------------------------------------------------------------------------- flags


def test_connect_rate_one_starts_one_connect_per_second(tmp_path: Path) -> None:
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=4, subnet=SUBNET) as lab:
        done = arcfleet("onboard", "-i", str(lab.inventory_path), "--playbook", str(playbook),
                        "--state-dir", str(tmp_path / "state"), "--connect-rate", "1")
        assert done.returncode == 0, done.stderr
        starts = sorted(lab.call(lambda: [c.started_at for h in lab.hosts.values()
                                          for c in h.connect_calls]))
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # The playbook's burst (100) used to let all four start at once. A loaded machine only
    # makes the gaps longer, so a lower bound is safe.
    assert min(gaps) > 0.8, gaps


def test_every_option_says_its_default_and_lab_winrm_port_has_help() -> None:
    assert options_without_default(cli) == []
    shown = arcfleet("lab", "up", "--help")
    assert "--winrm-port" in shown.stdout and "WinRM (HTTP) port" in shown.stdout
    onboard = arcfleet("onboard", "--help")
    assert "--connect-burst" in onboard.stdout and "default: the --connect-rate" in " ".join(
        onboard.stdout.split())


# --------------------------------------------------------------------------- summaries


CODES = ("AZCM0013", "AZCM0041", "AZCM0042", "AZCM0044", "AZCM0153", "AZCM0019", "AZCM0016")


def test_top_causes_lists_five_and_counts_the_rest(tmp_path: Path) -> None:
    plan = ScenarioPlan(default=Scenario(), hosts=tuple(
        (f"lab-{i + 1:04d}", Scenario(ScenarioKind.AZCM, code=code))
        for i, code in enumerate(CODES)))
    state = tmp_path / "state"
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=len(CODES) + 1, plan=plan,
                            subnet=SUBNET) as lab:
        done = arcfleet("onboard", "-i", str(lab.inventory_path), "--playbook", str(playbook),
                        "--state-dir", str(state), "--connect-rate", "0", "--json")
    assert done.returncode == 1, done.stderr
    codes = {o["azcm_code"] for o in map(json.loads, done.stdout.splitlines())} - {None}
    causes = len(codes)
    assert causes > 5, codes
    more = re.findall(r"\+(\d+) more causes \(arcfleet report (\S+)\)", done.stderr)
    assert more and int(more[0][0]) == causes - 5
    report = arcfleet("report", "--state-dir", str(state))
    assert report.returncode == 0, report.stderr
    assert all(code in report.stdout for code in codes)
    assert "more causes" not in report.stdout


def test_a_missing_secret_variable_is_one_error_naming_it_and_the_file(tmp_path: Path) -> None:
    variable = "ARCFLEET_TEST_NOT_SET_7c1"
    with LabFleet.in_thread(tmp_path / "lab", hosts=4, subnet=SUBNET) as lab:
        edit_inventory(lab, lambda body: body["defaults"]["azure"]["service_principal"].update(
            secret={"env": variable}))
        env = {k: v for k, v in cli_env().items() if k != variable}
        done = subprocess.run([sys.executable, "-m", "fleet", "onboard", "-i",
                               str(lab.inventory_path), "--state-dir", str(tmp_path / "st")],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert lab.call(lambda: sum(len(h.commands) for h in lab.hosts.values())) == 0
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0] and str(lab.inventory_path) in lines[0]
    assert "4 hosts" in lines[0]


def test_after_ctrl_c_the_printed_resume_command_and_the_fix_agree(tmp_path: Path) -> None:
    plan = ScenarioPlan(default=Scenario(ScenarioKind.HANG))
    state = tmp_path / "state"
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=4, plan=plan, subnet=SUBNET) as lab:
        stderr_file = tmp_path / "stderr.txt"
        with stderr_file.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fleet", "onboard", "-i", str(lab.inventory_path),
                 "--playbook", str(playbook), "--state-dir", str(state), "--connect-rate", "0"],
                stdout=subprocess.DEVNULL, stderr=err, env=cli_env(), cwd=ROOT)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # every host hangs in connect
                if lab.call(lambda: sum(bool(h.running) for h in lab.hosts.values())) == 4:
                    break
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 130
        stderr = stderr_file.read_text()
        (command,) = _lines_starting(stderr, "resume the run (hosts that finished are not "
                                             "redone): ")
        assert shlex.split(command)[:2] == ["arcfleet", "onboard"] and "--resume" in command
        assert f"fix: resume the run: {command}" in stderr or command in stderr.split(
            "top causes", 1)[1]
        assert "arcfleet rerun" not in stderr

        for host in lab.hosts.values():
            lab.call(lambda host=host: setattr(host, "scenario", Scenario()))
        resumed = subprocess.run(command, shell=True, env=arcfleet_on_path(tmp_path), cwd=ROOT,
                                 capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    headline = next(line for line in resumed.stderr.splitlines()
                    if line.startswith("run ") and " host(s)" in line)
    assert "+ 1 resume" in headline and "rerun" not in headline


# --------------------------------------------------------------------------- output


def test_non_tty_output_is_one_whole_line_per_host_and_json_one_object_per_line(
    tmp_path: Path,
) -> None:
    plan = ScenarioPlan(default=Scenario(), hosts=(
        ("lab-0002", Scenario(ScenarioKind.AZCM, code="AZCM0042")),))
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=6, plan=plan, subnet=SUBNET,
                            unreachable=1) as lab:
        args = ["onboard", "-i", str(lab.inventory_path), "--playbook", str(playbook),
                "--connect-rate", "0"]
        env = cli_env({"COLUMNS": "50"})  # narrower than every host line
        plain = subprocess.run([sys.executable, "-m", "fleet", *args, "--state-dir",
                                str(tmp_path / "a")], capture_output=True, text=True, env=env,
                               cwd=ROOT, timeout=180)
        as_json = subprocess.run([sys.executable, "-m", "fleet", *args, "--state-dir",
                                  str(tmp_path / "b"), "--json"], capture_output=True,
                                 text=True, env=env, cwd=ROOT, timeout=180)
    names = [f"lab-{i:04d}" for i in range(1, 8)]
    for name in names:
        lines = [line for line in plain.stderr.splitlines() if line.startswith(name + "  ")]
        assert len(lines) == 1, plain.stderr
        assert len(lines[0]) > 50  # not wrapped at the terminal width
    objects = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert all(isinstance(o, dict) for o in objects)
    assert sorted(o["host"] for o in objects) == names  # each host exactly once
    assert as_json.stdout.endswith("\n") and "\n\n" not in as_json.stdout


def test_a_long_cause_is_shortened_at_a_word_boundary() -> None:
    words = [f"word{i:03d}" for i in range(80)]
    now = datetime.now(UTC)
    outcome = HostOutcome(
        host="h1", address="127.0.0.1", transport="ssh", os="linux",
        diagnosis=Diagnosis(Category.NETWORK, Action(ActionKind.FAIL_HOST),
                            cause=" ".join(words)),
        started_at=now, finished_at=now)
    line = host_line(outcome)
    assert "\n" not in line and line.endswith(" ...")
    shown = line.split("  ")[-1].removesuffix(" ...").split(" ")
    assert shown == words[:len(shown)]  # whole words only
    assert len(" ".join(shown)) <= LINE_TEXT_WIDTH


def test_live_panel_on_a_terminal(tmp_path: Path) -> None:
    plan = ScenarioPlan(default=Scenario(), hosts=(
        ("lab-0001", Scenario(ScenarioKind.AZCM, code="AZCM0042")),))
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=4, plan=plan, subnet=SUBNET) as lab:
        leader, follower = pty.openpty()
        env = cli_env({"TERM": "xterm-256color", "COLUMNS": "140", "LINES": "40"})
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet", "onboard", "-i", str(lab.inventory_path),
             "--playbook", str(playbook), "--state-dir", str(tmp_path / "s"),
             "--connect-rate", "0"],
            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env, cwd=ROOT)
        os.close(follower)
        output = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        assert proc.wait(timeout=60) == 1
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode("utf-8", "replace"))
    for expected in ("4/4 hosts done", "hosts/min", "elapsed", "ETA",
                     "agent operations running (--forks)", "hosts open", "connects unpaced",
                     "breaker closed", "status:", "last failures:", "permissions"):
        assert expected in text, expected
