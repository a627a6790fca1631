"""The Linux host script under the real ``sh`` (issue 16 item 11): the detached timer removes the
private directory when the script is killed outright, and a connecting run removes the
``arcfleet.*`` leftovers of its own user that outlived their timer, not a live run's."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from fleet.azcm.commands import ScriptMode, ScriptParams
from fleet.azcm.script_linux import build
from fleet.engine import frames
from fleet.inventory.model import AzureTarget, OsFamily, ResolvedHost, Transport

HOST = ResolvedHost(name="web-01", address="127.0.0.1", port=22, transport=Transport.SSH,
                    os=OsFamily.LINUX, azure=AzureTarget())

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the script's elevation check wants root")


def _agent(tmp_path: Path, connect: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    agent = bin_dir / "azcmagent"
    agent.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case "$1" in
        show) echo '{{"status": "Disconnected", "resourceId": ""}}' ;;
        connect) {connect} ;;
        esac
        """))
    agent.chmod(agent.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def _private_dir(stdout: bytes, boundary: str) -> str:
    report = frames.parse(stdout, boundary)
    workdir = report.step("workdir")
    assert workdir is not None and workdir.exit_status == 0, report
    return workdir.stdout.strip()


def test_the_timer_removes_the_directory_when_the_script_is_killed(tmp_path: Path) -> None:
    boundary = frames.new_boundary()
    params = ScriptParams(boundary, ScriptMode.CONNECT, 65536, 65536, cleanup_after_s=2)
    proc = subprocess.Popen(["sh", "-c", build(params, HOST)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=_agent(tmp_path, "exec sleep 20"),
                            start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b'{"service-principal-secret": "x"}')
    proc.stdin.close()
    deadline = time.monotonic() + 10
    config: list[Path] = []
    while not config and time.monotonic() < deadline:
        config = [p for p in Path("/tmp").glob("arcfleet.????????/connect.json")
                  if p.stat().st_mtime > time.time() - 10]
        time.sleep(0.05)
    assert config, "the script never wrote its config"
    # SIGKILL to the script's whole process group: no trap runs (as when the session is torn
    # down, or arcfleet dies and the host kills what it left), yet the timer, in its own
    # session, removes the directory after its delay.
    leftover = config[0].parent
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)
    assert leftover.exists()
    deadline = time.monotonic() + 10
    while leftover.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftover.exists(), f"{leftover} outlived the timer"


def test_old_leftovers_of_the_same_user_go_and_a_fresh_one_stays(tmp_path: Path) -> None:
    old = Path("/tmp/arcfleet.0ldL3ft0")
    fresh = Path("/tmp/arcfleet.fr3shD1r")
    for path in (old, fresh):
        path.mkdir(mode=0o700, exist_ok=True)
        (path / "connect.json").write_text("{}")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    try:
        boundary = frames.new_boundary()
        params = ScriptParams(boundary, ScriptMode.CONNECT, 65536, 65536, cleanup_after_s=60)
        done = subprocess.run(["sh", "-c", build(params, HOST)], input=b"{}",
                              capture_output=True, env=_agent(tmp_path, "exit 0"), timeout=30,
                              check=True)
        assert frames.parse(done.stdout, boundary).complete
        assert not old.exists()  # older than its own timer: a leftover
        assert fresh.exists()  # could be a live run's: kept
        assert not Path(_private_dir(done.stdout, boundary)).exists()
    finally:
        for path in (old, fresh):
            subprocess.run(["rm", "-rf", "--", str(path)], check=False)


def _gated(tmp_path: Path) -> tuple[str, str, subprocess.Popen[bytes]]:
    """A gated script run whose agent's connect prints the config it was given."""
    boundary = frames.new_boundary()
    params = ScriptParams(boundary, ScriptMode.CONNECT, 65536, 65536, cleanup_after_s=60,
                          gate=True)
    marker = tmp_path / "connected"
    env = _agent(tmp_path, f'cat "$3"; touch {marker}')
    proc = subprocess.Popen(["sh", "-c", build(params, HOST)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env)
    return boundary, str(marker), proc


def _read_until_ready(proc: subprocess.Popen[bytes], boundary: str) -> bytes:
    assert proc.stdout is not None
    seen = b""
    ready = f"{boundary} step ready 0 ".encode()
    while ready not in seen:
        chunk = proc.stdout.read1(65536)
        assert chunk, seen
        seen += chunk
    return seen


def test_a_gated_script_waits_for_go_before_the_config_and_the_connect(tmp_path: Path) -> None:
    boundary, marker, proc = _gated(tmp_path)
    assert proc.stdin is not None and proc.stdout is not None
    head = _read_until_ready(proc, boundary)
    # Preflight is reported and the script is idle at its gate: nothing written, no connect.
    private = Path(_private_dir(head, boundary))
    time.sleep(0.3)
    assert not (private / "connect.json").exists()
    assert not Path(marker).exists()
    proc.stdin.write(b'go\n{"service-principal-id": "abc"}')
    proc.stdin.close()
    rest = proc.stdout.read()
    assert proc.wait(10) == 0
    report = frames.parse(head + rest, boundary)
    assert report.complete, report
    assert report.names() == ["workdir", "elevation", "locate", "show", "ready",
                              "config", "connect", "cleanup", "verify"]
    connect = report.step("connect")
    # write_config stores the config line it read, newline-terminated.
    assert connect is not None and connect.stdout == '{"service-principal-id": "abc"}\n'
    assert Path(marker).exists()
    assert not private.exists()


@pytest.mark.parametrize("answer", [b"", b"stop\n", b'gone\n{"x": 1}'])
def test_a_gated_script_told_anything_but_go_ends_without_connecting(
    tmp_path: Path, answer: bytes
) -> None:
    boundary, marker, proc = _gated(tmp_path)
    assert proc.stdin is not None
    out, _ = proc.communicate(answer, timeout=20)
    report = frames.parse(out, boundary)
    assert report.complete, report
    assert report.names()[-1] == "ready"
    assert not Path(marker).exists()
    assert not Path(_private_dir(out, boundary)).exists()
