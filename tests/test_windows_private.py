"""The Windows private directory outlives no killed run (issue 16 item 11, Windows half).

Making the directory also registers a one-shot scheduled task (Task Scheduler COM API) that
removes it after the deadline, and sweeps this user's ``arcfleet-<32 hex>`` directories older
than that. The lab's WinRM host simulates the task (:mod:`fleet.lab.winrm_tasks`): here arcfleet
is killed (SIGKILL: no finally, no cleanup) while a host is inside ``azcmagent connect``, the
config file is still there, and firing the task removes it; a later run sweeps old leftovers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from fleet.engine.host_script import params_for
from fleet.engine.playbook import Playbook
from fleet.lab.fleet import LabFleet
from fleet.lab.host import LabHost
from fleet.lab.scenario import Scenario, ScenarioKind
from fleet.lab.winrm_tasks import TaskScheduler
from tests.engine_support import (
    ROOT,
    WINRM_SUBNET,
    cli_argv,
    cli_env,
    config_leftovers,
    plan,
    run_cli,
    wait_until,
    winrm_server,
)

K = ScenarioKind


def _tasks(lab: LabFleet, host: LabHost) -> TaskScheduler:
    tasks = winrm_server(lab).records[host.address].tasks
    assert tasks is not None
    return tasks


def _inside_connect(host: LabHost) -> bool:
    return any(" connect " in c and "--config" in c for c in host.commands) and bool(
        host.running)


def test_a_killed_run_leaves_the_config_only_until_the_task_fires(tmp_path: Path) -> None:
    slow = Scenario(K.SLOW, latency_s=60.0)
    with LabFleet.in_thread(tmp_path / "lab", hosts=0, windows=1, subnet=WINRM_SUBNET,
                            plan=plan(slow)) as lab:
        host = lab.hosts["lab-0001"]
        proc = subprocess.Popen(
            cli_argv("onboard", lab.inventory_path, tmp_path / "state"), cwd=ROOT,
            env=cli_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_until(lambda: lab.call(lambda: _inside_connect(host)), 60)
            os.kill(proc.pid, signal.SIGKILL)  # no finally, no cleanup command
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        left = lab.call(lambda: config_leftovers(host))
        assert len(left) == 1 and (left[0] / "config.json").is_file()  # what the kill left
        tasks = _tasks(lab, host)
        assert lab.call(tasks.pending) == [left[0].name]
        # The host script's timer (the common path): the whole script's deadline and more.
        expected = params_for(Playbook(name="default"), "connect").cleanup_after_s
        assert lab.call(lambda: [t.after_s for t in tasks.tasks.values()]) == [expected]
        assert lab.call(lambda: [t.run_as for t in tasks.tasks.values()]) == ["S-1-5-18"]
        assert lab.call(tasks.fire_all) == [left[0].name]  # its time has come
        assert not lab.call(lambda: config_leftovers(host))
        assert lab.call(tasks.pending) == []  # the task removed itself too


def test_the_task_fires_on_its_own_when_its_time_comes(tmp_path: Path) -> None:
    slow = Scenario(K.SLOW, latency_s=60.0)
    with LabFleet.in_thread(tmp_path / "lab", hosts=0, windows=1, subnet=WINRM_SUBNET,
                            plan=plan(slow)) as lab:
        host = lab.hosts["lab-0001"]
        proc = subprocess.Popen(
            cli_argv("onboard", lab.inventory_path, tmp_path / "state"), cwd=ROOT,
            env=cli_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_until(lambda: lab.call(lambda: _inside_connect(host)), 60)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        tasks = _tasks(lab, host)

        # The timer is at least 15 minutes and the lab's clock is real: the task the host
        # holds is moved to now, as if that time had passed.
        def reschedule() -> None:
            for task in list(tasks.tasks.values()):
                tasks.register(task.directory, 0, elevated=True)

        assert lab.call(lambda: config_leftovers(host))
        lab.call(reschedule)
        assert wait_until(lambda: not lab.call(lambda: config_leftovers(host)), 10)
        assert lab.call(lambda: tasks.fired) and lab.call(tasks.pending) == []


def test_the_next_run_sweeps_old_leftovers_and_keeps_fresh_ones(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=0, windows=1, subnet=WINRM_SUBNET) as lab:
        host = lab.hosts["lab-0001"]
        temp = host.local_path(r"C:\Windows\Temp")
        temp.mkdir(parents=True, exist_ok=True)
        old = temp / f"arcfleet-{uuid.uuid4().hex}"
        fresh = temp / f"arcfleet-{uuid.uuid4().hex}"
        other = temp / "arcfleet-not-ours"
        for folder in (old, fresh, other):
            folder.mkdir()
            (folder / "config.json").write_text("{}")
        hours_ago = time.time() - 2 * 3600
        for folder in (old, other):
            os.utime(folder, (hours_ago, hours_ago))

        result = run_cli(lab, tmp_path)
        assert result.returncode == 0, result.describe()
        assert not old.exists()  # older than its own timer: a leftover
        assert fresh.exists()  # could be a live run's (another jump host's)
        assert other.exists()  # not a name arcfleet makes
        assert lab.call(lambda: _tasks(lab, host).swept) == [old.name]
        # The run's own directory went, and its task with it.
        assert lab.call(lambda: _tasks(lab, host).pending()) == []
        assert sorted(p.name for p in config_leftovers(host)) == sorted([fresh.name, other.name])
