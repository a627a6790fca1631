"""The lab's service-principal secret and WinRM password are sentinels: after a full mixed run
(Linux and Windows, successes and failures) they appear nowhere arcfleet writes or prints, in
plain text, base64 or UTF-16LE base64 at any alignment; the state directory is owner-only."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import structlog
from hostile_support import (
    FAULT_SUBNET,
    ROOT,
    arcfleet,
    edit_inventory,
    onboard,
    outcomes,
    write_playbook,
)
from rich.console import Console

from fleet.cli import cli, main
from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from fleet.logs import close_run_log, configure_run_log
from fleet.redact import RedactingStream, forget_secrets, register_secret

PASSWORD_ENV = "ARCFLEET_TEST_WINRM_PASSWORD"


def forms(secret: str) -> dict[str, bytes]:
    """The byte patterns that would betray ``secret``: itself, and its base64 and UTF-16LE
    base64 at each of the three byte alignments (edges that depend on neighbours trimmed)."""
    found = {"plain": secret.encode(), "utf16": secret.encode("utf-16-le")}
    for label, raw in (("b64", secret.encode()), ("utf16-b64", secret.encode("utf-16-le"))):
        for shift in range(3):
            encoded = base64.b64encode(b"\0" * shift + raw)
            found[f"{label}+{shift}"] = encoded[4 if shift else 0:-4]
    return found


def leaks(data: bytes, secrets: dict[str, str]) -> list[str]:
    hits = []
    for name, secret in secrets.items():
        for form, pattern in forms(secret).items():
            if pattern in data:
                hits.append(f"{name} as {form}")
    return hits


def files_under(root: Path) -> Iterator[Path]:
    yield from (p for p in root.rglob("*") if p.is_file())


def onboard_watching_wal(lab: LabFleet, state: Path, playbook: Path, env: dict[str, str]
                         ) -> tuple[subprocess.CompletedProcess[str], list[bytes]]:
    """``arcfleet onboard --json`` in a subprocess; while it runs, copies of the store's -wal."""
    snapshots: list[bytes] = []
    with subprocess.Popen(
            [sys.executable, "-m", "fleet", "onboard", "-i", str(lab.inventory_path),
             "--playbook", str(playbook), "--state-dir", str(state), "--json"],
            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True) as proc:
        reader = threading.Thread(target=lambda: outputs.append(proc.communicate(timeout=120)))
        outputs: list[tuple[str, str]] = []
        reader.start()
        while reader.is_alive():
            for wal in state.glob("*-wal"):
                with contextlib.suppress(OSError):
                    data = wal.read_bytes()
                    if data and (not snapshots or data != snapshots[-1]):
                        snapshots.append(data)
            time.sleep(0.05)
        reader.join()
    stdout, stderr = outputs[0]
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), snapshots


# lab-0002 fails on a secret the lab does not accept (a second sentinel, from its own file);
# lab-0007 is told "wrong secret" by the lab although arcfleet sent the right one.
MIX = ScenarioPlan(default=Scenario(), hosts=(
    ("lab-0003", Scenario(ScenarioKind.RBAC_403)),
    ("lab-0004", Scenario(ScenarioKind.LOGIN_UNREACHABLE)),
    ("lab-0005", Scenario(ScenarioKind.HANG)),
    ("lab-0007", Scenario(ScenarioKind.WRONG_SECRET)),
    ("lab-0008", Scenario(ScenarioKind.HANG)),
))


def test_sentinels_appear_nowhere_after_a_mixed_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    reports = tmp_path / "reports"
    reports.mkdir()
    texts: dict[str, str] = {}
    with LabFleet.in_thread(tmp_path / "lab", hosts=5, windows=3, unreachable=1, plan=MIX,
                            subnet=FAULT_SUBNET) as lab:
        wrong = "wrong-" + secrets.token_urlsafe(24)
        wrong_file = lab.work_dir / "wrong_secret"
        wrong_file.write_text(wrong + "\n")
        wrong_file.chmod(0o600)
        sentinels = {"sp secret": lab.secret, "winrm password": lab.winrm_password,
                     "wrong sp secret": wrong}

        def password_from_env(body: dict[str, Any]) -> None:
            body["defaults"]["winrm"]["password"] = {"env": PASSWORD_ENV}
            body["hosts"]["lab-0002"]["azure"] = {"service_principal": {
                "client_id": lab.target.client_id, "secret": {"file": str(wrong_file)}}}

        edit_inventory(lab, password_from_env)
        env = {PASSWORD_ENV: lab.winrm_password}
        run, wal_snapshots = onboard_watching_wal(lab, state, write_playbook(tmp_path), env)
        texts["onboard"] = run.stdout + run.stderr
        commands = [
            ("report", "--csv", reports / "r.csv", "--all"),
            ("report", "--format", "json", "--output", reports / "r.json", "--all"),
            ("report", "--format", "junit", "--output", reports / "r.xml"),
            ("report", "--format", "json"),
            ("runs",), ("show", "lab-0002"), ("show", "lab-0007"),
        ]
        for args in commands:
            result = arcfleet(*args, "--state-dir", state)
            assert result.returncode == 0, (args, result.stderr)
            texts[" ".join(map(str, args))] = result.stdout + result.stderr
        # What the hosts received: every SSH command line, every WinRM command line and the
        # script it carried, every agent argv.
        remote = lab.call(lambda: "\n".join(
            [c for h in lab.hosts.values() for c in h.commands]
            + [" ".join(c.argv) for h in lab.hosts.values() for c in h.connect_calls]))
        host_roots = [h.fs_root for h in lab.hosts.values()]
        winrm_argv = lab.call(lambda: "\n".join(
            " ".join(a) for r in getattr(lab.winrm, "records", {}).values()
            for a in r.agent_argv))

    seen = outcomes(run)
    assert {h: o["category"] for h, o in seen.items()} == {
        "lab-0001": "connected", "lab-0002": "credentials", "lab-0003": "permissions",
        "lab-0004": "network", "lab-0005": "timeout", "lab-0006": "connected",
        "lab-0007": "credentials", "lab-0008": "timeout", "lab-0009": "unreachable",
    }, run.stderr
    assert "connect" in remote and "-EncodedCommand" in remote  # both transports recorded
    assert "--config" in winrm_argv
    problems = []
    for path in files_under(state):  # store (db, -wal, -shm), run.log, transcripts, CSV
        problems += [f"{path}: {hit}" for hit in leaks(path.read_bytes(), sentinels)]
    for path in files_under(reports):
        problems += [f"{path}: {hit}" for hit in leaks(path.read_bytes(), sentinels)]
    for label, text in {**texts, "lab commands": remote, "winrm agent argv": winrm_argv}.items():
        problems += [f"{label}: {hit}" for hit in leaks(text.encode(), sentinels)]
    # SQLite folds the WAL into the database and deletes it when the last connection closes,
    # so the WAL is read while the run is going.
    assert wal_snapshots, "no -wal file seen during the run"
    for number, data in enumerate(wal_snapshots):
        problems += [f"arcfleet.db-wal snapshot {number}: {hit}" for hit in leaks(data, sentinels)]
    # The --config files that carried the secret were removed in every outcome (hang, failure,
    # success alike): nothing on any host's disk holds a sentinel any more.
    for root in host_roots:
        problems += [f"{path}: {hit}" for path in files_under(root)
                     for hit in leaks(path.read_bytes(), sentinels)]
    assert problems == []
    names = {p.name for p in files_under(state)}
    assert {"arcfleet.db", "run.log", "failures.csv", "lab-0002.log"} <= names


def test_state_directory_is_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    plan = ScenarioPlan(default=Scenario(), hosts=(("lab-0002", Scenario(ScenarioKind.HANG)),))
    with LabFleet.in_thread(tmp_path / "lab", hosts=2, windows=1, plan=plan,
                            subnet=FAULT_SUBNET) as lab:
        run = onboard(lab, state, write_playbook(tmp_path))
    assert run.returncode == 1, run.stderr
    wrong = []
    entries = [state, *state.rglob("*")]
    for path in entries:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            wrong.append(f"{path.relative_to(tmp_path)}: {oct(mode)}")
    assert wrong == []
    kinds = {p.name if p.is_file() else p.name + "/" for p in entries}
    assert {"state/", "runs/", "transcripts/", "arcfleet.db", "run.log", "failures.csv",
            "lab-0001.log"} <= kinds | {"state/"}


def test_debug_output_of_failed_runs_is_redacted(tmp_path: Path) -> None:
    """--debug shows more, never a secret: provoked errors whose text would carry the sentinel."""
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, subnet=FAULT_SUBNET) as lab:
        secret = lab.secret
        playbook = write_playbook(tmp_path)

        # 1. A state directory that cannot be created, its path holding the (registered) secret.
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        state = blocker / f"state-{secret}"
        bad_state = arcfleet("--debug", "onboard", "-i", lab.inventory_path, "--playbook",
                             playbook, "--state-dir", state)

        # 2. The secret pasted into fields where it does not belong: inventory errors.
        def misplaced(body: dict[str, Any]) -> None:
            azure = body["defaults"]["azure"]
            azure["tenant_id"] = secret
            azure["subscription_id"] = secret
            azure["location"] = secret
            azure["service_principal"]["client_id"] = secret

        inventory = edit_inventory(lab, misplaced, lab.work_dir / "misplaced.yaml")
        bad_inventory = arcfleet("--debug", "onboard", "-i", inventory, "--playbook", playbook,
                                 "--state-dir", tmp_path / "state")
        contacted = lab.call(lambda: list(lab.hosts["lab-0001"].commands))

    assert bad_state.returncode == 2, bad_state.stderr
    assert bad_inventory.returncode == 2, bad_inventory.stderr
    assert contacted == []
    for result in (bad_state, bad_inventory):
        assert "error: " in result.stderr
        assert leaks((result.stdout + result.stderr).encode(), {"secret": secret}) == []
    assert "tenant_id" in bad_inventory.stderr


@pytest.fixture
def failing_command() -> Iterator[str]:
    secret = "sentinel-" + "x7Qz" * 6
    register_secret(secret)

    @click.command("explode-for-test")
    def explode() -> None:
        raise RuntimeError(f"deep failure while holding {secret}")

    cli.add_command(explode)
    try:
        yield secret
    finally:
        cli.commands.pop("explode-for-test", None)
        forget_secrets()


def test_debug_traceback_goes_through_redaction(
    failing_command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--debug", "explode-for-test"])
    err = capsys.readouterr().err
    assert exited.value.code == 1
    assert "Traceback" in err and "RuntimeError: deep failure while holding ***" in err
    assert failing_command not in err
    with pytest.raises(SystemExit):
        main(["explode-for-test"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" in err and failing_command not in err


def test_forms_find_an_embedded_secret() -> None:
    # The scanner itself: each encoding of a secret inside a larger blob is found.
    secret = "s3cr3t-sentinel-value-0123456789"
    for prefix in (b"", b"a", b"ab", b"abc"):
        assert leaks(base64.b64encode(prefix + secret.encode() + b"tail"), {"s": secret})
        blob = base64.b64encode(prefix + ("x" + secret + "y").encode("utf-16-le"))
        assert leaks(blob, {"s": secret})
    assert leaks(b"nothing here", {"s": secret}) == []


def test_run_log_redacts_rendered_tracebacks(tmp_path: Path) -> None:
    secret = "sentinel-" + "L0gL" * 6
    register_secret(secret)
    log_path = tmp_path / "run.log"
    try:
        configure_run_log(log_path)
        try:
            raise RuntimeError(f"failure mentioning {secret}")
        except RuntimeError:
            structlog.get_logger("test").error("it failed", exc_info=True, note=secret)
    finally:
        close_run_log()
        forget_secrets()
    text = log_path.read_text()
    assert "RuntimeError: failure mentioning ***" in text
    assert secret not in text
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600


def test_every_way_of_printing_passes_the_output_filter(
    capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "sentinel-" + "Pr1n" * 6
    register_secret(secret)

    @click.command("print-for-test")
    def printer() -> None:
        print(f"print {secret}")
        click.echo(f"echo {secret}", err=True)
        sys.stdout.write(f"write {secret}\n")
        Console(stderr=True).print(f"rich {secret}")

    cli.add_command(printer)
    try:
        main(["print-for-test"])
    finally:
        cli.commands.pop("print-for-test", None)
        forget_secrets()
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    assert "print ***" in out.out and "write ***" in out.out
    assert "echo ***" in out.err and "rich ***" in out.err
    assert not isinstance(sys.stdout, RedactingStream)  # restored after the command
