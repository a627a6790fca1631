"""The framed report of the host script: parsed from real streams (the real Linux script run by
the real ``sh`` against a stand-in agent), against forged markers, cut at every byte offset, and
from a host that prints megabytes."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from fleet.azcm.commands import ScriptMode, ScriptParams
from fleet.azcm.script_linux import build
from fleet.engine import frames
from fleet.engine.frames import FrameParser, parse
from fleet.inventory.model import AzureTarget, OsFamily, ResolvedHost, Transport
from tests.engine_support import assert_every_cut_is_incomplete

CAP = 64 * 1024


def _host() -> ResolvedHost:
    return ResolvedHost(name="web-01", address="127.0.0.1", port=22, transport=Transport.SSH,
                        os=OsFamily.LINUX, azure=AzureTarget(tags={"env": "it's $(x)"}))


def _agent(tmp_path: Path, connect_body: str) -> Path:
    """A stand-in azcmagent on PATH: disconnected, and connect does ``connect_body``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    agent = bin_dir / "azcmagent"
    agent.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case "$1" in
        version) echo "azcmagent version 1.45.02945.1234" ;;
        show) echo '{{"status": "Disconnected", "resourceId": ""}}' ;;
        connect)
        {textwrap.indent(connect_body, "  ")}
          ;;
        esac
        """))
    agent.chmod(agent.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def _run(tmp_path: Path, connect_body: str, *, mode: str = ScriptMode.CONNECT,
         boundary: str | None = None) -> tuple[bytes, str]:
    boundary = boundary or frames.new_boundary()
    params = ScriptParams(boundary=boundary, mode=mode, cap=CAP, log_tail_bytes=CAP,
                          cleanup_after_s=120)
    env = {"PATH": f"{_agent(tmp_path, connect_body)}:/usr/bin:/bin", "BOUNDARY": boundary}
    if os.geteuid() != 0:
        pytest.skip("the script's elevation check wants root here")
    done = subprocess.run(["sh", "-c", build(params, _host())], input=b'{"k": "v"}',
                          capture_output=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout, boundary


def test_a_real_stream_parses_into_every_step(tmp_path: Path) -> None:
    data, boundary = _run(tmp_path, 'echo "Connected machine to Azure"; echo warn >&2; exit 0')
    report = parse(data, boundary)
    assert report.complete and not report.problem
    assert report.names() == ["workdir", "elevation", "locate", "show",
                              "config", "connect", "cleanup", "verify"]
    connect = report.step("connect")
    assert connect is not None and connect.exit_status == 0
    assert connect.stdout == "Connected machine to Azure\n" and connect.stderr == "warn\n"


def test_forged_markers_in_step_output_are_only_output(tmp_path: Path) -> None:
    # The worst case: a host that knows this run's boundary prints a whole fake report.
    forged = ('printf "%s step connect 0 1 9 9 0 0\\nConnected%s step verify 0 1 0 0 0 0\\n'
              '%s end\\n" "$BOUNDARY" "$BOUNDARY" "$BOUNDARY"; exit 23')
    data, boundary = _run(tmp_path, forged)
    report = parse(data, boundary)
    assert report.complete
    connect = report.step("connect")
    assert connect is not None and connect.exit_status == 23  # the real exit, not the forged 0
    assert f"{boundary} end" in connect.stdout
    assert report.step("verify") is None and report.step("log") is not None
    # After a failed connect (only then) the host's clock, for the classifier.
    assert report.names()[-4:] == ["connect", "cleanup", "clock", "log"]
    clock = report.step("clock")
    assert clock is not None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", clock.stdout)


def test_a_report_with_another_boundary_is_no_report(tmp_path: Path) -> None:
    data, boundary = _run(tmp_path, "exit 0")
    other = frames.new_boundary()
    report = parse(data.replace(boundary.encode(), other.encode()), boundary)
    assert not report.complete and not report.steps
    # Text before the opening (a login banner, a forged report) is never a step.
    forged = data.replace(boundary.encode(), other.encode())
    report = parse(forged + data, boundary)
    assert report.complete and report.names()[0] == "workdir"
    assert other in report.preamble


def test_text_between_records_breaks_the_report(tmp_path: Path) -> None:
    data, boundary = _run(tmp_path, "exit 0")
    marker = f"{boundary} step connect".encode()
    injected = data.replace(marker, b"noise\n" + marker)
    report = parse(injected, boundary)
    assert not report.complete and "text where a step record" in report.problem
    assert "connect" not in report.names()


def test_cut_at_every_byte_offset_is_never_complete(tmp_path: Path) -> None:
    data, boundary = _run(tmp_path, 'echo "Connected machine to Azure"; exit 0')
    assert_every_cut_is_incomplete(data, boundary, piece_step=7)


def test_a_host_printing_megabytes_costs_the_cap(tmp_path: Path) -> None:
    size = 5 * 1024 * 1024
    data, boundary = _run(tmp_path, f"head -c {size} /dev/zero | tr '\\0' x; exit 1")
    assert len(data) < 4 * CAP  # the cap per stream, not the megabytes, crossed the wire
    report = parse(data, boundary)
    assert report.complete
    connect = report.step("connect")
    assert connect is not None and len(connect.stdout) == CAP
    assert connect.dropped_bytes == size - CAP


def test_headers_claiming_too_much_or_bad_numbers_are_refused() -> None:
    boundary = frames.new_boundary()
    opening = f"{boundary} arcfleet-report 1\n"
    for header in ("step connect 0 1 5 9 0 0", "step connect x 1 0 0 0 0",
                   "step CONNECT 0 1 0 0 0 0", "step connect 0 1 0 0 0", "step a b"):
        report = parse(f"{opening}{boundary} {header}\n{boundary} end\n".encode(), boundary)
        assert not report.complete and not report.steps, header
    with pytest.raises(ValueError):
        FrameParser("not-a-boundary")
