"""The ``arcfleet`` program leaves without the interpreter's teardown (fleet.cli.entry/leave),
so what that teardown would still have done must be done first: threads finished, idle executor
workers released, atexit functions and finalizers run, buffered output flushed, the exit status
kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent("""
    import atexit, sys, threading, time, weakref
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    from fleet.cli import leave

    out = Path(sys.argv[1])
    atexit.register(lambda: (out / "atexit").write_text("ran"))

    def late():
        time.sleep(0.3)
        (out / "thread").write_text("finished")

    threading.Thread(target=late).start()
    pool = ThreadPoolExecutor(2)  # never shut down: its idle workers must not hang the exit
    pool.submit(lambda: None).result()

    class Holder:
        pass

    holder = Holder()
    weakref.finalize(holder, lambda: (out / "finalizer").write_text("ran"))
    sys.stdout.write("buffered, no newline")
    leave(CODE)
""")


@pytest.mark.parametrize(("code", "status"), [("3", 3), ("None", 0), ("'bad thing'", 1)])
def test_leave_does_what_shutdown_would_and_keeps_the_status(
    tmp_path: Path, code: str, status: int
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD.replace("CODE", code), str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == status, result.stderr
    assert result.stdout == "buffered, no newline"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "finished"
    assert (tmp_path / "finalizer").read_text() == "ran"
    if status == 1:
        assert result.stderr.strip() == "bad thing"


def test_python_dash_m_fleet_exits_with_the_commands_status(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "fleet", "inventory", "validate", "-i", str(missing)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_profiler_around_the_program_still_writes_its_results(tmp_path: Path) -> None:
    """The short exit would end the process before ``cProfile`` writes its file; under a
    profiler (or a tracer: debugger, coverage) the program exits the ordinary way."""
    output = tmp_path / "fleet.prof"
    result = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(output), "-m", "fleet", "--version"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "arcfleet, version" in result.stdout
    assert output.stat().st_size > 0
