"""Acceptance of the install stage (issue 14): the real CLI against the lab, hosts without an
agent installed (offline bundle or online) and connected in one run, each documented install
failure diagnosed with its code and fix, transient ones retried, preflight/install/offboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleet.azcm.catalog import lookup
from fleet.lab.agent.simulator import AGENT_VERSION
from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from fleet.store import RunStore
from tests.engine_support import (
    WINRM_SUBNET,
    all_leftovers,
    assert_no_secret_in_files,
    assert_no_secret_on_hosts,
    commands,
    connect_calls,
    edit_inventory,
    run_cli,
    sftp_writes,
    winrm_server,
    write_playbook,
)

K = ScenarioKind
DESIRED = ".".join(AGENT_VERSION.split(".")[:2])  # "1.60": what the lab's repository holds


def _bundle(folder: Path) -> Path:
    """What an operator downloads once: the Linux script, a .deb and an .rpm, the MSI."""
    folder.mkdir()
    (folder / "install_linux_azcmagent.sh").write_text("#!/bin/bash\n# install script\n")
    (folder / "azcmagent_1.60.03293.2140_amd64.deb").write_bytes(b"\x21deb" * 4096)
    (folder / "azcmagent-1.60.03293.2140.x86_64.rpm").write_bytes(b"\xed\xab" * 4096)
    (folder / "AzureConnectedMachineAgent.msi").write_bytes(b"\xd0\xcf\x11\xe0" * 8192)
    return folder


def _playbook(tmp_path: Path, **overrides: Any) -> Path:
    return write_playbook(tmp_path / "pb.yaml", pacing={"forks": 60}, **overrides)


def _install_steps(result: Any, host: str) -> list[Any]:
    with RunStore.open(result.state_dir, create=False) as store:
        rows = store.attempts_for(result.run_id(), host)
    return [r for r in rows if r.stage == "install"]


def _transcript(result: Any, host: str) -> str:
    folder = result.run_folder()
    return "".join(p.read_text(encoding="utf-8") for p in folder.rglob(f"*{host}*")
                   if p.is_file())


# Linux hosts 1..100, Windows hosts 101..120; the failures by name, 60% of the rest agent-less.
LINUX_FAILURES: dict[str, tuple[Scenario, str, str, str]] = {
    # host: (scenario, category, code, verbatim part of the installer's message)
    "lab-0001": (Scenario(K.INSTALL_DOWNLOAD), "host_prerequisite", "AZCM0143",
                 "error installing azcmagent (exit code: 100)"),
    "lab-0002": (Scenario(K.INSTALL_UNSUPPORTED), "host_prerequisite", "AZCM0133",
                 "unsupported Linux distribution: centos:6.10"),
    "lab-0003": (Scenario(K.INSTALL_AZURE_VM), "host_prerequisite", "AZCM0141",
                 "cannot install Azure Connected Machine agent on an Azure Virtual Machine."),
    "lab-0004": (Scenario(K.INSTALL_NO_VERSION), "invalid_input", "AZCM0147",
                 f"desired_version not found: {DESIRED}"),
    "lab-0005": (Scenario(K.INSTALL_FATAL), "host_prerequisite", "AZCM0143",
                 "See 'apt' command logs for more information."),
    "lab-0006": (Scenario(K.INSTALL_NO_DISK), "host_prerequisite", "AZCM0143",
                 "error installing azcmagent"),
}
WINDOWS_FAILURES: dict[str, tuple[Scenario, str, str, str]] = {
    "lab-0101": (Scenario(K.INSTALL_FATAL), "host_prerequisite", "AZCM0156",
                 "msiexec exited 1603: Action ended 10:00:01: InstallFinalize. Return value 3."),
    "lab-0102": (Scenario(K.INSTALL_NO_DISK), "host_prerequisite", "AZCM0158",
                 "msiexec exited 112"),
}


def _big_plan() -> ScenarioPlan:
    hosts: list[tuple[str, Scenario]] = [
        (name, scenario) for name, (scenario, *_rest) in {**LINUX_FAILURES,
                                                           **WINDOWS_FAILURES}.items()]
    hosts.append(("lab-0103", Scenario(K.INSTALL_BUSY, fail_times=1)))  # msiexec 1618 once
    named = {name for name, _ in hosts}
    agentless = 72 - len(hosts)  # 60% of the 120 hosts start without an agent
    for i in range(1, 121):
        name = f"lab-{i:04d}"
        if name not in named and i % 5 in (0, 1, 2) and agentless > 0:
            hosts.append((name, Scenario(no_agent=True)))
            agentless -= 1
    return ScenarioPlan(default=Scenario(), hosts=tuple(hosts))


@pytest.mark.slow
def test_100_linux_20_windows_without_agent_installed_offline_and_connected(
    tmp_path: Path,
) -> None:
    bundle = _bundle(tmp_path / "bundle")
    plan = _big_plan()
    with LabFleet.in_thread(tmp_path / "lab", hosts=100, windows=20, subnet=WINRM_SUBNET,
                            plan=plan) as lab:
        without = {n for n, h in lab.hosts.items() if not h.installed}
        assert len(without) == 72  # 60% of 120
        # Deadlines for a loaded 2-core machine: 120 hosts install and connect at once.
        pb = _playbook(tmp_path, agent_bundle=str(bundle), desired_version=DESIRED,
                       install_retry_s=2, deadlines={"command_s": 120, "host_s": 900})
        result = run_cli(lab, tmp_path, playbook=pb, timeout=600)
        assert result.returncode == 1, result.describe()
        outcomes = result.outcomes
        assert len(outcomes) == 120
        failures = {**LINUX_FAILURES, **WINDOWS_FAILURES}
        for name, (_scenario, category, code, message) in failures.items():
            line = outcomes[name]
            assert line["category"] != "timeout", line["cause"]
            os_name = "windows" if name in WINDOWS_FAILURES else "linux"
            entry = lookup(code, platform=os_name)
            assert entry is not None
            assert (line["category"], line["azcm_code"]) == (category, code), line
            assert line["fix"] == entry.fix and message in line["message"], line
            assert line["install"] == "failed"
            assert connect_calls(lab, name) == []  # no connect after a failed install
        connected = {n for n, o in outcomes.items() if o["category"] == "connected"}
        assert connected == set(lab.hosts) - set(failures)
        for name in connected:
            line = outcomes[name]
            if name in without:
                assert (line["install"], line["agent_version_before"]) == ("installed", None)
                assert line["agent_version_after"] == AGENT_VERSION
                assert _install_steps(result, name)
            else:  # the agent was there at the wanted version: no install step at all
                assert (line["install"], line["agent_version_before"]) == ("", AGENT_VERSION)
                assert not _install_steps(result, name)
                assert not [c for c in commands(lab, name) if "install" in c.lower()]
        # The right file went to each host, and its sha256 is in the transcript.
        linux_new = sorted(n for n in without if lab.hosts[n].os == "linux")
        for name in linux_new[:5]:
            paths = [w.path for w in sftp_writes(lab, name)]
            assert any(p.endswith("/install_linux_azcmagent.sh") for p in paths)
            assert any(p.endswith("/azcmagent-package") for p in paths)
        import hashlib

        deb = next(bundle.glob("*.deb")).read_bytes()
        assert hashlib.sha256(deb).hexdigest() in _transcript(result, linux_new[-1])
        server = winrm_server(lab)
        msi_writes = lab.call(lambda: [w for r in server.records.values() for w in r.file_writes
                                       if w.path.endswith("AzureConnectedMachineAgent.msi")])
        assert len(msi_writes) == sum(1 for n in without if lab.hosts[n].os == "windows")
        assert {w.size for w in msi_writes} == {len(next(bundle.glob("*.msi")).read_bytes())}
        assert (result.run_folder() / "agent-bundle.json").is_file()
        # Package-manager log lines reach the transcript on AZCM0143.
        assert "No space left on device" in _transcript(result, "lab-0006")
        assert "Return value 3" in _transcript(result, "lab-0101")
        # Uploads and work directories are gone; the secret never reached a host or a file.
        assert not all_leftovers(lab)
        assert_no_secret_on_hosts(lab)
        assert_no_secret_in_files(lab, result.state_dir, result.stdout, result.stderr)
        assert "agent installed: " in result.stderr


def test_dpkg_lock_and_msiexec_1618_are_retried_until_connected(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "bundle")
    plan = ScenarioPlan(default=Scenario(), hosts=(
        ("lab-0001", Scenario(K.INSTALL_LOCK, lock_s=20)),
        ("lab-0002", Scenario(K.INSTALL_BUSY, fail_times=1))))
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, windows=1, subnet=WINRM_SUBNET,
                            plan=plan) as lab:
        pb = _playbook(tmp_path, agent_bundle=str(bundle),
                       backoff={"initial_s": 1, "max_s": 4, "multiplier": 2})
        result = run_cli(lab, tmp_path, playbook=pb)
        assert result.returncode == 0, result.describe()
        for name, code in (("lab-0001", "AZCM0145"), ("lab-0002", "AZCM0159")):
            assert result.outcomes[name]["category"] == "connected"
            assert result.outcomes[name]["install"] == "installed"
            # Every failed try has the transient code; the last try succeeded (installed).
            verdicts = [r.azcm_code for r in _install_steps(result, name) if r.category]
            assert verdicts and set(verdicts) == {code}, verdicts
        tries = [r for r in _install_steps(result, "lab-0001") if r.azcm_code == "AZCM0145"]
        assert len(tries) >= 2  # the lock was held 20 s: the stage waited it out
        assert "Another apt/dpkg process is updating system" in _transcript(result, "lab-0001")


def test_online_install_with_proxy_and_a_download_failure(tmp_path: Path) -> None:
    plan = ScenarioPlan(default=Scenario(K.AGENT_MISSING), hosts=(
        ("lab-0002", Scenario(K.INSTALL_DOWNLOAD)),))
    with LabFleet.in_thread(tmp_path / "lab", hosts=2, windows=1, subnet=WINRM_SUBNET,
                            plan=plan) as lab:

        def proxy(body: dict[str, Any]) -> None:
            body["defaults"]["azure"]["proxy_url"] = "http://proxy.corp.example:3128"

        inventory = edit_inventory(lab, "proxied.yaml", proxy)
        result = run_cli(lab, tmp_path, inventory=inventory,
                         playbook=_playbook(tmp_path, install_retry_s=1))
        assert result.returncode == 1, result.describe()
        assert result.outcomes["lab-0001"]["category"] == "connected"
        assert result.outcomes["lab-0003"]["category"] == "connected"  # Windows, online script
        failed = result.outcomes["lab-0002"]
        assert (failed["category"], failed["azcm_code"]) == ("network", "AZCM0146")
        assert "packages-microsoft-prod.deb errored" in failed["message"]
        script_runs = [c for c in commands(lab, "lab-0001") if c.startswith("sudo -n bash ")]
        assert len(script_runs) == 1 and "--proxy http://proxy.corp.example:3128" in script_runs[0]
        assert any(c.startswith("curl ") and "https://aka.ms/azcmagent" in c
                   for c in commands(lab, "lab-0001"))
        win = "\n".join(commands(lab, "lab-0003"))
        assert "-OutFile" in win and "-Proxy 'http://proxy.corp.example:3128'" in win
        assert not all_leftovers(lab)


def test_preflight_says_what_install_would_do_and_install_alone_connects_nothing(
    tmp_path: Path,
) -> None:
    plan = ScenarioPlan(default=Scenario(), hosts=(("lab-0001", Scenario(no_agent=True)),))
    with LabFleet.in_thread(tmp_path / "lab", hosts=2, subnet=WINRM_SUBNET, plan=plan) as lab:
        checked = run_cli(lab, tmp_path, command="preflight", state_dir=tmp_path / "s1")
        assert checked.returncode == 0, checked.describe()
        assert checked.outcomes["lab-0001"]["install"] == "would_install"
        assert "onboard would install the agent" in checked.outcomes["lab-0001"]["cause"]
        assert checked.outcomes["lab-0002"]["install"] == ""
        newer = run_cli(lab, tmp_path, command="preflight", state_dir=tmp_path / "s2",
                        playbook=write_playbook(tmp_path / "pf.yaml", mode="preflight",
                                                minimum_version="9.0"))
        assert newer.outcomes["lab-0002"]["install"] == "would_upgrade", newer.describe()
        assert lab.call(lambda: lab.hosts["lab-0001"].installed) is False  # nothing changed

        installed = run_cli(lab, tmp_path, command="install", state_dir=tmp_path / "s3")
        assert installed.returncode == 0, installed.describe()
        assert installed.outcomes["lab-0001"]["install"] == "installed"
        assert installed.outcomes["lab-0001"]["status"] == "ready"
        assert not connect_calls(lab, "lab-0001") and not connect_calls(lab, "lab-0002")
        again = run_cli(lab, tmp_path, command="install", state_dir=tmp_path / "s4")
        assert {o["install"] for o in again.outcomes.values()} == {""}
        assert not _install_steps(again, "lab-0001")


def test_offboard_uninstall_removes_the_package(tmp_path: Path) -> None:
    plan = ScenarioPlan(default=Scenario(K.ALREADY_CONNECTED))
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, windows=1, subnet=WINRM_SUBNET,
                            plan=plan) as lab:
        pb = write_playbook(tmp_path / "off.yaml", mode="offboard", uninstall=True)
        result = run_cli(lab, tmp_path, command="offboard", playbook=pb)
        assert result.returncode == 0, result.describe()
        for name in ("lab-0001", "lab-0002"):
            line = result.outcomes[name]
            assert (line["category"], line["install"]) == ("disconnected", "uninstalled")
            assert "package was removed" in line["cause"]
            assert lab.call(lambda n=name: lab.hosts[n].installed) is False
        assert "sudo -n apt-get remove -y azcmagent" in commands(lab, "lab-0001")


def test_a_bad_bundle_stops_the_run_before_any_host(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, subnet=WINRM_SUBNET) as lab:
        result = run_cli(lab, tmp_path, playbook=_playbook(tmp_path, agent_bundle=str(empty)))
        assert result.returncode == 2, result.describe()
        assert result.stderr.count("\n") == 1 and "agent_bundle" in result.stderr
        assert "install_linux_azcmagent.sh" in result.stderr
        assert lab.call(lambda: len(lab.hosts["lab-0001"].commands)) == 0


def test_an_agent_older_than_minimum_version_is_upgraded_then_connected(tmp_path: Path) -> None:
    old = "1.50.03000.1"
    plan = ScenarioPlan(default=Scenario(), hosts=(("lab-0001", Scenario(agent_version=old)),))
    bundle = _bundle(tmp_path / "bundle")
    with LabFleet.in_thread(tmp_path / "lab", hosts=2, subnet=WINRM_SUBNET, plan=plan) as lab:
        result = run_cli(lab, tmp_path, playbook=_playbook(
            tmp_path, agent_bundle=str(bundle), minimum_version=DESIRED))
        assert result.returncode == 0, result.describe()
        upgraded, current = result.outcomes["lab-0001"], result.outcomes["lab-0002"]
        assert upgraded["category"] == "connected"
        assert (upgraded["agent_version_before"], upgraded["agent_version_after"],
                upgraded["install"]) == (old, AGENT_VERSION, "upgraded")
        assert (current["agent_version_before"], current["install"]) == (AGENT_VERSION, "")
        assert _install_steps(result, "lab-0001") and not _install_steps(result, "lab-0002")
        assert "agent upgraded: 1" in result.stderr
        # The upgrade came before the connect: the agent that connected was the new one.
        with RunStore.open(result.state_dir, create=False) as store:
            stages = [r.stage for r in store.attempts_for(result.run_id(), "lab-0001")]
        assert "connect" in stages and stages.index("install") < stages.index("connect")
