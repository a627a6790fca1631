"""Issue 16 items 6 and 10: host-derived text is never markup nor escape sequences, and a reader
that goes away (`| head`) does not stop the run.

A hostile SSH server on loopback (written here, asyncssh) ends every login with a disconnect reason
that carries rich markup, OSC window-title and hyperlink sequences, CSI and bare control bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.lab.fleet import LabFleet
from fleet.text import clean, xml_safe
from tests.hostile_support import arcfleet, edit_inventory, write_playbook
from tests.run_support import cli_env

SUBNET = "127.86"
HOSTILE_ADDRESS = "127.86.200.1"
REASON = (
    "[/bold] closed by policy [link=https://evil.example/]see the docs[/link] "
    "\x1b]0;owned-title\x07\x1b]8;;https://evil.example/\x1b\\click here\x1b]8;;\x1b\\ "
    "\x1b[2J\x1b[31mred\x9b1m \x01\x07\x0c end"
)
# Whatever the printer, none of these may reach a terminal or a file arcfleet writes.
RAW_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class _Hostile(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        raise asyncssh.DisconnectError(asyncssh.DISC_BY_APPLICATION, REASON)


@contextlib.contextmanager
def hostile_ssh_server(known_hosts: Path) -> Iterator[int]:
    """The server in its own thread; its host key is appended to ``known_hosts``."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    loop = asyncio.new_event_loop()
    ready: list[asyncssh.SSHAcceptor] = []

    async def start() -> None:
        ready.append(await asyncssh.listen(HOSTILE_ADDRESS, 0, server_host_keys=[key],
                                           server_factory=_Hostile))

    loop.run_until_complete(start())
    port = ready[0].get_port()
    public = key.export_public_key().decode().strip()
    with known_hosts.open("a", encoding="utf-8") as handle:
        handle.write(f"[{HOSTILE_ADDRESS}]:{port} {public}\n")
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        ready[0].close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _assert_inert(text: str, where: str) -> None:
    assert not RAW_CONTROLS.search(text), f"{where}: raw control characters: {text!r}"


def test_clean_leaves_no_control_character_and_keeps_the_words() -> None:
    cleaned = clean(REASON, single_line=True)
    _assert_inert(cleaned, "clean")
    assert "[/bold] closed by policy [link=https://evil.example/]" in cleaned
    assert "owned-title" not in cleaned  # the window title sequence is gone as a whole
    assert "click here" in cleaned and "end" in cleaned


@given(st.text())
def test_clean_and_xml_safe_output_is_inert_and_parses(text: str) -> None:
    _assert_inert(clean(text, single_line=True), "clean")
    assert "\n" not in clean(text, single_line=True)
    element = ET.Element("x", message=xml_safe(text))
    element.text = xml_safe(text)
    ET.fromstring(ET.tostring(element, encoding="unicode"))


def test_markup_and_escapes_from_a_hostile_ssh_server_stay_text(tmp_path: Path) -> None:
    state = tmp_path / "state"
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=2, subnet=SUBNET) as lab, \
            hostile_ssh_server(lab.known_hosts_file) as port:
        edit_inventory(lab, lambda body: body["hosts"].update(
            {"evil-1": {"address": HOSTILE_ADDRESS, "port": port}}))
        run = arcfleet("onboard", "-i", lab.inventory_path, "--playbook", playbook,
                       "--state-dir", state)
        # The summary used to crash on "[/bold]" (rich markup) after every host had finished.
        assert run.returncode == 1, run.stderr
        assert "internal error" not in run.stderr and "Traceback" not in run.stderr
        _assert_inert(run.stdout + run.stderr, "onboard")
        assert "top causes" in run.stderr
        assert "[/bold] closed by policy [link=https://evil.example/]" in run.stderr

        as_json = arcfleet("onboard", "-i", lab.inventory_path, "--playbook", playbook,
                           "--state-dir", tmp_path / "state-json", "--json")
        evil = [json.loads(line) for line in as_json.stdout.splitlines()
                if '"evil-1"' in line]
        assert len(evil) == 1, as_json.stdout
        _assert_inert(json.dumps(evil[0], ensure_ascii=False), "--json")
        assert "[link=https://evil.example/]" in evil[0]["cause"]

    # Afterwards the report, the host's history and JUnit still work, and stay inert.
    report = arcfleet("report", "--state-dir", state)
    assert report.returncode == 0, report.stderr
    _assert_inert(report.stdout + report.stderr, "report")
    assert "[/bold]" in report.stdout

    show = arcfleet("show", "evil-1", "--state-dir", state)
    assert show.returncode == 0, show.stderr
    _assert_inert(show.stdout + show.stderr, "show")
    assert "[/bold]" in show.stdout

    junit = arcfleet("report", "--format", "junit", "--state-dir", state)
    assert junit.returncode == 0, junit.stderr
    root = ET.fromstring(junit.stdout)
    failure = root.find(".//testcase[@name='evil-1']/failure")
    assert failure is not None and "[/bold]" in failure.get("message", "")

    # The record itself is clean: transcripts and the run store.
    for transcript in state.rglob("transcripts/*.log"):
        _assert_inert(transcript.read_text(encoding="utf-8").replace("\t", " "), str(transcript))
    conn = sqlite3.connect(state / "arcfleet.db")
    try:
        causes = [row[0] for row in conn.execute("SELECT cause FROM outcomes")]
    finally:
        conn.close()
    assert causes and all(not RAW_CONTROLS.search(cause) for cause in causes)


def test_junit_from_a_store_holding_forbidden_characters_parses(tmp_path: Path) -> None:
    """A store written before the cleaning (or by hand) still yields XML that parses."""
    state = tmp_path / "state"
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, subnet=SUBNET, unreachable=1) as lab:
        run = arcfleet("onboard", "-i", lab.inventory_path, "--playbook", playbook,
                       "--state-dir", state)
        assert run.returncode == 1, run.stderr
    conn = sqlite3.connect(state / "arcfleet.db")
    with conn:
        conn.execute("UPDATE outcomes SET cause = ?, message = ? WHERE status != 'success'",
                     ("bad \x01\x1b[2J [/bold] \ud800".encode("utf-8", "surrogatepass")
                      .decode("utf-8", "replace"), "\x0b\x1b]0;t\x07"))
    conn.close()
    junit = arcfleet("report", "--format", "junit", "--state-dir", state)
    assert junit.returncode == 0, junit.stderr
    ET.fromstring(junit.stdout)
    _assert_inert(junit.stdout.replace("\n", " "), "junit")
    report = arcfleet("report", "--state-dir", state)
    assert report.returncode == 0, report.stderr
    _assert_inert(report.stdout + report.stderr, "report")


# --------------------------------------------------------------------------- item 10


def _into_closed_pipe(args: list[str]) -> tuple[int, str]:
    """``arcfleet ARGS`` whose stdout reader has already gone (as after ``| head -1``; the
    reader is closed before the first write, so the outcome does not depend on timing)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "fleet", *args], stdout=write_end,
                              stderr=subprocess.PIPE, env=cli_env(), timeout=180, check=False)
    finally:
        os.close(write_end)
    return done.returncode, done.stderr.decode()


def test_a_closed_pipe_does_not_stop_the_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=12, subnet=SUBNET, unreachable=2) as lab:
        status, stderr = _into_closed_pipe(
            ["onboard", "-i", str(lab.inventory_path), "--playbook", str(playbook),
             "--state-dir", str(state), "--json"])
    # Every host finished and the run is recorded finished, not crashed.
    assert status == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    assert "top causes" in stderr  # stderr still had its reader: the summary is there
    conn = sqlite3.connect(state / "arcfleet.db")
    try:
        (run_status,) = conn.execute("SELECT status FROM runs").fetchone()
        finished = conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
    finally:
        conn.close()
    assert (run_status, finished) == ("finished", 14)


def test_a_closed_pipe_on_both_streams_still_finishes_every_host(tmp_path: Path) -> None:
    state = tmp_path / "state"
    playbook = write_playbook(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    with LabFleet.in_thread(tmp_path / "lab", hosts=6, subnet=SUBNET, unreachable=1) as lab:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "fleet", "onboard", "-i", str(lab.inventory_path),
                 "--playbook", str(playbook), "--state-dir", str(state)],
                stdout=write_end, stderr=write_end, env=cli_env(), timeout=180, check=False)
        finally:
            os.close(write_end)
    assert done.returncode == 1
    assert (state / "arcfleet.db").is_file()
    conn = sqlite3.connect(state / "arcfleet.db")
    try:
        (run_status,) = conn.execute("SELECT status FROM runs").fetchone()
        finished = conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
    finally:
        conn.close()
    assert (run_status, finished) == ("finished", 7)
    assert list(state.rglob("failures.csv"))


@pytest.mark.parametrize("command", [["runs"], ["report"], ["report", "--format", "csv"],
                                     ["show", "lab-0004"]])
def test_read_commands_into_a_closed_pipe_exit_cleanly(tmp_path: Path,
                                                       command: list[str]) -> None:
    state = tmp_path / "state"
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=3, subnet=SUBNET, unreachable=1) as lab:
        run = arcfleet("onboard", "-i", lab.inventory_path, "--playbook", playbook,
                       "--state-dir", state)
        assert run.returncode == 1, run.stderr
    status, stderr = _into_closed_pipe([*command, "--state-dir", str(state)])
    assert status == 0, stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


# Characters each branch of clean() cares about, and plain ones around them.
_CLEAN_ALPHABET = st.sampled_from([
    *"ab z0{}\"'\\\n\t\r\x0b\x0c\x1b[]P^_;7m\x07\x00\x7f",
    "\x85", "\x90", "\x9b", "\x9c", "\x9d", "\u00a0", "\u00e9", "\u202e", "\u2028",
    "\u2067", "\ud800", "\ufeff", "\U0001f600",
])


@given(st.text(_CLEAN_ALPHABET, max_size=40), st.booleans(), st.booleans())
def test_clean_shortcuts_give_what_the_patterns_give(
        text: str, single_line: bool, keep_cr: bool) -> None:
    from fleet.text import _clean_slow

    assert clean(text, single_line=single_line, keep_cr=keep_cr) == _clean_slow(
        text, single_line=single_line, keep_cr=keep_cr)


def test_clean_returns_printable_text_itself() -> None:
    for text in ("Connected machine to Azure", "line one\n\tline two\n", "h\u00e9 \U0001f600"):
        assert clean(text) is text
    assert clean("a\tb", single_line=True) == "a b"
    assert clean("a\r\nb") == "a\nb"
