"""Agent commands for Linux hosts, as POSIX shell command lines.

Every value is quoted with :func:`shlex.quote`; no connect option appears here (they travel in
the ``--config`` file, see :func:`fleet.azcm.agent_config.connect_config`).
"""

from __future__ import annotations

import shlex

from fleet.azcm.commands import ScriptParams
from fleet.inventory.model import ResolvedHost
from fleet.transport.base import CommandResult

AGENT_NAME = "azcmagent"
AGENT_FALLBACK = "/opt/azcmagent/bin/azcmagent"
LOG_PATH = "/var/opt/azcmagent/log/azcmagent.log"
SERVICE = "himdsd"


class LinuxAgentCommands:
    log_path = LOG_PATH
    # The host script reads the certificate after the config on stdin (script_stdin).
    script_carries_certificate = True

    def __init__(self, *, become: bool) -> None:
        # sudo -n: never prompt; a sudo that wants a password fails at once, and we say so.
        self._prefix = "sudo -n " if become else ""

    @property
    def become(self) -> bool:
        return bool(self._prefix)

    def elevated(self, command: str) -> str:
        return f"{self._prefix}{command}"

    def check_elevation(self) -> str:
        return self.elevated("id -u")

    def is_elevated(self, result: CommandResult) -> bool:
        return result.exit_status == 0 and result.stdout.strip() == "0"

    def locate_agent(self) -> str:
        return f"command -v {AGENT_NAME} || command -v {AGENT_FALLBACK}"

    def version(self, agent: str) -> str:
        return f"{shlex.quote(agent)} version"

    def show_json(self, agent: str) -> str:
        # `show` needs no root since agent 1.31, and reading state must not need sudo.
        return f"{shlex.quote(agent)} show --json"

    def make_private_dir(self) -> str:
        # mktemp -d creates the directory with mode 0700 for the login user.
        return "mktemp -d /tmp/arcfleet.XXXXXXXX"

    def config_path(self, private_dir: str) -> str:
        return self.private_file(private_dir, "connect.json")

    def private_file(self, private_dir: str, name: str) -> str:
        return f"{private_dir.rstrip('/')}/{name}"

    def config_set(self, agent: str, key: str, value: str) -> str:
        return self.elevated(f"{shlex.quote(agent)} config set {shlex.quote(key)} "
                             f"{shlex.quote(value)}")

    def config_get(self, agent: str, key: str) -> str:
        return self.elevated(f"{shlex.quote(agent)} config get {shlex.quote(key)}")

    def connect(self, agent: str, config_path: str, host: ResolvedHost) -> str:
        parts = [shlex.quote(agent), "connect", "--config", shlex.quote(config_path), "--verbose"]
        return self.elevated(" ".join(parts))

    def disconnect(self, agent: str, config_path: str | None, *, force_local_only: bool) -> str:
        parts = [shlex.quote(agent), "disconnect"]
        if force_local_only:
            parts.append("--force-local-only")
        elif config_path:
            parts += ["--config", shlex.quote(config_path)]
        parts.append("--verbose")
        return self.elevated(" ".join(parts))

    def restart_agent_service(self) -> str:
        return self.elevated(f"systemctl restart {SERVICE}")

    def remove_dir(self, private_dir: str) -> str:
        if not self.is_private_dir(private_dir):
            # The path came from the host: only ever remove what mktemp made for us.
            raise ValueError(f"not an arcfleet private directory: {private_dir!r}")
        return f"rm -rf -- {shlex.quote(private_dir)}"

    def script_command(self, params: ScriptParams, host: ResolvedHost) -> str:
        from fleet.azcm import script_linux

        return script_linux.command_line(params, host, become=self.become)

    def script_label(self) -> str:
        return self.elevated("sh -c <arcfleet host script v1>")

    def is_private_dir(self, path: str) -> bool:
        from fleet.azcm import script_linux

        return script_linux.is_private_dir(path)

    def read_tail(self, path: str, max_bytes: int) -> str:
        return self.elevated(f"tail -c {int(max_bytes)} -- {shlex.quote(path)}")
