"""The lab's stand-in for arcfleet's Linux host script (:mod:`fleet.azcm.script_linux`).

The lab has no real shell, so it does not interpret the script: it reads the parameters the
script carries on its first line (a comment a real shell ignores) and performs the same steps, in
the same order and with the same decisions, through the lab's simulated programs, answering with
the same framed report. Each step's command is recorded in ``LabHost.commands`` as a real host's
audit log would show it. Real ``sh`` runs the real script in the real-sshd tests
(tests/test_interop_sshd.py, tests/test_host_script_sshd.py); this module keeps the lab fast.

What the lab takes from the script text itself: the config file is written 0600 only when the
script sets ``umask 077`` (a script that forgets it writes 0644, and the lab records that).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shlex
import shutil
import string
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from fleet.azcm.agent_config import CERT_PATH_MARK, PROXY_GET_STEP, PROXY_URL, setting_step
from fleet.azcm.script_linux import CERT_FILES
from fleet.lab.host import LabHost, SftpWrite
from fleet.lab.scenario import ScenarioKind

SCRIPT_MARK = "# arcfleet host script 1 "
PRIVATE_PREFIX = "/tmp/arcfleet."

#: the standard input of the command being run (the lab server sets it per channel)
STDIN: ContextVar[str] = ContextVar("lab_stdin", default="")
#: reads the rest of the standard input (a gated script: after its "ready" record)
STDIN_READ: ContextVar[Callable[[], Awaitable[str]] | None] = ContextVar(
    "lab_stdin_read", default=None
)
#: drops the SSH connection without a word (the ``connection_drop`` scenario)
ABORT: ContextVar[Callable[[], None] | None] = ContextVar("lab_abort", default=None)
#: writes to the channel's stdout at once (a real script's report streams step by step)
WRITE: ContextVar[Callable[[str], Awaitable[None]] | None] = ContextVar(
    "lab_write", default=None
)


def is_host_script(text: str) -> bool:
    return text.startswith(SCRIPT_MARK)


class _Report:
    def __init__(self, boundary: str, cap: int) -> None:
        self.boundary = boundary
        self.cap = cap
        self.parts: list[bytes] = [f"{boundary} arcfleet-report 1\n".encode()]

    def step(self, name: str, status: int, started: float, out: str, err: str) -> None:
        out_b, err_b = out.encode(), err.encode()
        millis = int((time.monotonic() - started) * 1000)
        # Cut at a character boundary: the lab's SSH channel carries text.
        out_s = out_b[: self.cap].decode("utf-8", errors="ignore").encode()
        err_s = err_b[: self.cap].decode("utf-8", errors="ignore").encode()
        self.parts.append(
            f"{self.boundary} step {name} {status} {millis} {len(out_b)} {len(out_s)} "
            f"{len(err_b)} {len(err_s)}\n".encode()
        )
        self.parts += [out_s, err_s]

    async def flush(self) -> None:
        write = WRITE.get()
        if write is not None and self.parts:
            text = b"".join(self.parts).decode("utf-8")
            self.parts = []
            await write(text)

    async def end(self) -> str:
        self.parts.append(f"{self.boundary} end\n".encode())
        await self.flush()
        return b"".join(self.parts).decode("utf-8")


async def run_host_script(script: str, host: LabHost, *, elevated: bool) -> Any:
    """Run the script's steps; returns a :class:`fleet.lab.shell.ShellResult`."""
    from fleet.lab.shell import ShellResult, run_program, run_shell

    params = json.loads(script.split("\n", 1)[0][len(SCRIPT_MARK) :])
    report = _Report(params["boundary"], int(params["cap"]))
    mode: str = params["mode"]
    private_dir = ""

    async def step(name: str, line: str, argv: list[str] | None = None) -> Any:
        host.commands.append(line)
        started = time.monotonic()
        if argv is None:
            result = await run_shell(line, host, elevated=elevated)
        else:
            result = await run_program(argv, host, elevated=elevated)
        report.step(name, result.exit_status, started, result.stdout, result.stderr)
        await report.flush()
        return result

    try:
        started = time.monotonic()
        host.commands.append("mktemp -d /tmp/arcfleet.XXXXXXXX")
        try:
            private_dir = _make_dir(host)
        except OSError as exc:
            report.step("workdir", 1, started, "", "mktemp: failed to create directory via "
                        f"template '/tmp/arcfleet.XXXXXXXX': {exc.strerror}\n")
            return ShellResult(0, await report.end())
        report.step("workdir", 0, started, private_dir, "")
        await report.flush()
        elevation = await step("elevation", "id -u", ["id", "-u"])
        if elevation.stdout.strip() != "0":
            return ShellResult(0, await report.end())
        located = await step(
            "locate", f"command -v azcmagent || command -v {params['agent_fallback']}"
        )
        agent = located.stdout.splitlines()[0].strip() if located.stdout.strip() else ""
        if located.exit_status != 0 or not agent:
            return ShellResult(0, await report.end())
        show = await step("show", f"{shlex.quote(agent)} show --json", [agent, "show", "--json"])
        if mode == "preflight":
            get = [agent, "config", "get", PROXY_URL]
            await step(PROXY_GET_STEP, shlex.join(get), get)
            return ShellResult(0, await report.end())
        if mode != "force" and not should_connect(show):
            return ShellResult(0, await report.end())
        for key, value in params.get("settings", []):
            argv = [agent, "config", "set", key, value]
            if (await step(setting_step(key), shlex.join(argv), argv)).exit_status != 0:
                return ShellResult(0, await report.end())
        stdin = STDIN.get()
        read = STDIN_READ.get()
        if params.get("gate") and read is not None:
            # As the real script: "ready", then wait for the engine's "go" line and the config.
            report.step("ready", 0, time.monotonic(), "", "")
            await report.flush()
            given = await read()
            if not given.startswith("go\n"):
                return ShellResult(0, await report.end())
            stdin = given[3:]
        config = f"{private_dir}/connect.json"
        started = time.monotonic()
        mode_bits = 0o600 if "\numask 077\n" in script else 0o644
        # As write_config: the config line; with the certificate mark, the rest is the
        # certificate in base64, written next to it, and the mark becomes the directory.
        line, _newline, rest = stdin.partition("\n")
        if f"{CERT_PATH_MARK}/" in line:
            name = line.split(f"{CERT_PATH_MARK}/", 1)[1].split('"', 1)[0]
            cert = f"{private_dir}/{name}"
            cert_local = host.local_path(cert)
            cert_local.write_bytes(base64.b64decode(rest))
            cert_local.chmod(mode_bits)
            host.sftp_writes.append(SftpWrite(cert, 0o100000 | mode_bits, op="script"))
            line = line.replace(CERT_PATH_MARK, private_dir)
        local = host.local_path(config)
        local.write_text(line + "\n", encoding="utf-8")
        local.chmod(mode_bits)
        host.sftp_writes.append(SftpWrite(config, 0o100000 | mode_bits, op="script"))
        report.step("config", 0, started, "", "")
        await report.flush()
        argv = [agent, "connect", "--config", config, "--verbose"]
        abort = ABORT.get()
        if host.scenario.kind is ScenarioKind.CONNECTION_DROP and abort is not None:
            # The agent "started"; now the network goes away (no exit status, no output).
            host.commands.append(shlex.join(argv))
            abort()
            raise asyncio.CancelledError
        connected = await step("connect", shlex.join(argv), argv)
        rm = ["rm", "-f", "--", config, *(f"{private_dir}/{n}" for n in CERT_FILES)]
        await step("cleanup", shlex.join(rm), rm)
        if connected.exit_status == 0:
            await step("verify", f"{shlex.quote(agent)} show --json", [agent, "show", "--json"])
        else:
            # The clock only when connect failed: the classifier reads it for that failure.
            host.commands.append("date -u +%Y-%m-%dT%H:%M:%SZ")
            report.step("clock", 0, time.monotonic(), host.clock() + "\n", "")
            tail = ["tail", "-c", str(params["log_tail_bytes"]), "--", params["log_path"]]
            await step("log", shlex.join(tail), tail)
        return ShellResult(0, await report.end())
    finally:
        # The script's trap: the private directory goes on every exit path, cancellation too.
        if private_dir:
            shutil.rmtree(host.local_path(private_dir), ignore_errors=True)


def should_connect(show: Any) -> bool:
    """What both lab scripts decide from `show --json`: connect only an agent that answered and
    is neither connected nor holding a resource id."""
    if show.exit_status != 0:
        return False
    state = "".join(show.stdout.split()).lower()
    if '"status":' not in state:
        return False
    return '"status":"connected"' not in state and '"resourceid":"/' not in state


def _make_dir(host: LabHost) -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        path = PRIVATE_PREFIX + "".join(secrets.choice(alphabet) for _ in range(8))
        local = host.local_path(path)
        if not local.exists():
            local.mkdir(mode=0o700)
            local.chmod(0o700)
            return path
