"""Interop: ``arcfleet onboard`` against real OpenSSH servers, the lab's azcmagent simulator on
each login PATH, real sudo (or the documented fake), and one hop through a jump host.

The whole CLI runs as a subprocess, exactly as an operator runs it; the assertions read its
``--json`` output, its run store and this machine's /tmp (the "hosts" are this machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fleet
from tests import realsshd
from tests.netfaults import FaultNamespace
from tests.realsshd import SshdGroup, SshdLab

pytestmark = pytest.mark.sshd

WORKTREE = Path(fleet.__file__).resolve().parents[1]
HOST_COUNT = 50
UNSERVED = "127.50.3.1"  # nothing listens here: refused

# host index (1-based) -> (scenario, category the run must end with)
SCENARIOS: dict[int, tuple[object, str]] = {
    3: ("wrong_secret", "credentials"),
    5: ({"scenario": "transient", "fail_times": 1}, "connected"),
    7: ("connected_elsewhere", "resource_conflict"),
    8: ("rbac_403", "permissions"),
    9: ("no_such_host", "network"),
    10: ({"scenario": "azcm", "code": "AZCM0044"}, "resource_conflict"),
    11: ({"scenario": "slow", "latency_s": 0.5}, "connected"),
}
JUMP_HOST_INDEX = 2
SUCCESS_CATEGORIES = {"connected", "already_connected"}


def _needs_engine(lab: SshdLab) -> None:
    if lab.shim_problem:
        pytest.skip(lab.shim_problem)
    try:
        import fleet.azcm.classifier
        import fleet.inventory.loader  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the engine's dependencies are not in this tree: {exc}")


def _onboard(argv_prefix: list[str], inventory: Path, state: Path,
             *extra: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    argv = [*argv_prefix, sys.executable, "-m", "fleet", "onboard", "-i", str(inventory),
            "--state-dir", str(state), "--json", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=WORKTREE)
    outcomes = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            body = json.loads(line)
            assert body["host"] not in outcomes, f"{body['host']} printed twice: {done.stdout}"
            outcomes[body["host"]] = body
    return done.returncode, outcomes, done.stdout + done.stderr


def _private_dirs() -> set[str]:
    """arcfleet's per-host --config directories (mktemp -d /tmp/arcfleet.XXXXXXXX)."""
    return {path.name for path in Path("/tmp").glob("arcfleet.*")}


def _files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_onboard_fifty_hosts_through_real_sshd(
    sshd_scenario: SshdLab, sshd_fleet: SshdGroup, tmp_path: Path
) -> None:
    lab = sshd_scenario
    _needs_engine(lab)
    bastion = lab.bastion
    assert bastion is not None
    served = sshd_fleet.addresses[: HOST_COUNT - 1]
    names = [f"h-{i:03d}" for i in range(1, HOST_COUNT + 1)]
    addresses = [*served, UNSERVED]
    lab.reset_hosts(served)
    lab.set_scenario({
        "default": "success",
        "hosts": {addresses[i - 1]: scenario for i, (scenario, _) in SCENARIOS.items()},
    })
    jump_name = names[JUMP_HOST_INDEX - 1]
    hop = f"{realsshd.TEST_USER}@{bastion.addresses[0]}:{bastion.port}"
    inventory = lab.write_inventory(
        tmp_path / "inv",
        {name: (address, sshd_fleet.port) for name, address in zip(names, addresses, strict=True)},
        connect_timeout_s=10,
        host_overrides={jump_name: {"ssh": {"jump_hosts": [hop]}}},
    )
    before = _private_dirs()

    status, outcomes, output = _onboard([], inventory, tmp_path / "state")

    expected = dict.fromkeys(names, "connected")
    expected.update({names[i - 1]: category for i, (_, category) in SCENARIOS.items()})
    expected[names[-1]] = "unreachable"
    got = {name: body["category"] for name, body in outcomes.items()}
    assert got == expected, output[-4000:]
    assert outcomes[names[-1]]["message"].startswith("Connection refused (")
    for name, body in outcomes.items():
        want = "success" if expected[name] in SUCCESS_CATEGORIES else "failed"
        assert body["status"] == want, name
    assert status == 1, "some hosts failed: exit status 1"

    # Every host was elevated through sudo -n (the simulator connects only as root), and the
    # jump host really carried the hop to its target.
    (run_dir,) = (tmp_path / "state" / "runs").iterdir()
    agent = lab.shim_dir / "azcmagent"
    for name in names[:-1]:
        transcript = (run_dir / "transcripts" / f"{name}.log").read_text()
        assert "sudo -n id -u" in transcript, name
        if expected[name] == "connected":
            # The whole transcript on failure: a full-suite run once saw this fail (2026-12-03)
            # where a rerun alone passed, and the elided repr hid which command was recorded.
            assert f"sudo -n {agent} connect --config /tmp/arcfleet." in transcript, (
                name, transcript)
    assert f"target {addresses[JUMP_HOST_INDEX - 1]} port {sshd_fleet.port}" in bastion.log_text()
    # The secret reached the hosts only inside the --config file: never in the output, the
    # store, transcripts or reports; and each private directory is gone, whatever the outcome.
    secret = realsshd.SP_SECRET.encode()
    assert secret not in output.encode()
    assert _files_containing(tmp_path / "state", secret) == []
    assert _private_dirs() - before == set()
    # What arcfleet stores is private to the operator (docs/security.md).
    state = tmp_path / "state"
    loose = [str(p) for p in [state, *state.rglob("*")] if p.stat().st_mode & 0o077]
    assert loose == [], "state dir 0700, everything in it owner-only"

    # A second onboard finds the host connected to the inventory's target and leaves it be.
    status, again, output = _onboard([], inventory, tmp_path / "state", "--limit", names[0])
    assert {n: b["category"] for n, b in again.items()} == {names[0]: "already_connected"}, output
    assert status == 0


def test_onboard_inside_a_namespace_with_blackholed_and_refusing_hosts(
    sshd_scenario: SshdLab, fault_ns: FaultNamespace, tmp_path: Path
) -> None:
    lab = sshd_scenario
    _needs_engine(lab)
    port = 2298
    healthy, blackholed, refused = realsshd.addresses("127.50.22.1", 3)
    lab.reset_hosts([healthy, blackholed, refused])
    group = lab.serve([healthy, blackholed, refused], port=port, netns=fault_ns.name)
    try:
        fault_ns.blackhole(blackholed)
        fault_ns.refuse(refused, port)
        inventory = lab.write_inventory(
            tmp_path / "inv",
            {"ok": (healthy, port), "hole": (blackholed, port), "reset": (refused, port)},
            connect_timeout_s=1,
        )

        # The run's connect deadline comes from the playbook (it overrides the inventory's
        # ssh.connect_timeout_s today), so a 1 s copy of the built-in onboard playbook.
        builtin = (WORKTREE / "fleet/engine/playbooks/onboard.yaml").read_text()
        playbook = tmp_path / "fast.yaml"
        playbook.write_text(builtin.replace("connect_timeout_s: 15", "connect_timeout_s: 1"))
        status, outcomes, output = _onboard(fault_ns.command([]), inventory,
                                            tmp_path / "state", "--playbook", str(playbook))
    finally:
        group.stop()

    got = {name: body["category"] for name, body in outcomes.items()}
    assert got == {"ok": "connected", "hole": "unreachable", "reset": "unreachable"}, output
    assert status == 1
    # The blackhole is a connect timeout; the reset is a refusal, not a timeout.
    assert outcomes["hole"]["message"] == "no SSH answer within 1s", outcomes["hole"]
    assert outcomes["reset"]["message"].startswith("Connection refused ("), outcomes["reset"]
