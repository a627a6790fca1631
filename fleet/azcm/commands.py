"""How to say each agent step on a host, per OS. The engine speaks only through this Protocol.

Every value that reaches a command line is quoted for the host's shell by the implementation. No
connect option appears in a command: credentials, ids and target options all go into the
``--config`` file built by :func:`fleet.azcm.agent_config.connect_config`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from fleet.azcm.agent_config import connect_config
from fleet.inventory.model import ResolvedHost
from fleet.transport.base import CommandResult

__all__ = ["AgentCommands", "ScriptCommands", "ScriptMode", "ScriptParams", "connect_config"]


class AgentCommands(Protocol):
    """Command text for one OS family. Each method returns one command for ``Transport.run``."""

    #: the agent's own log, read with ``Transport.read_tail`` after a failure
    log_path: str

    def check_elevation(self) -> str:
        """A command whose result :meth:`is_elevated` reads: do commands run as root /
        Administrator (through sudo if become)?"""

    def is_elevated(self, result: CommandResult) -> bool: ...

    def locate_agent(self) -> str:
        """Print the agent's full path and exit 0, or exit non-zero when it is not installed."""

    def version(self, agent: str) -> str: ...

    def show_json(self, agent: str) -> str: ...

    def make_private_dir(self) -> str:
        """Create a directory only the login user (and root/Administrators) can read; print its
        path on stdout."""

    def config_path(self, private_dir: str) -> str: ...

    def private_file(self, private_dir: str, name: str) -> str:
        """The path of file ``name`` in the private directory (the certificate's)."""

    def config_set(self, agent: str, key: str, value: str) -> str:
        """``azcmagent config set KEY VALUE`` (elevated): an agent setting such as proxy.url."""

    def config_get(self, agent: str, key: str) -> str:
        """``azcmagent config get KEY``: prints the setting's value (empty when unset)."""

    def connect(self, agent: str, config_path: str, host: ResolvedHost) -> str:
        """``connect --config FILE --verbose``, nothing else: every option is in the file (see
        :mod:`fleet.azcm.agent_config`), so no command-line quoting can change a value."""

    def disconnect(self, agent: str, config_path: str | None, *, force_local_only: bool) -> str: ...

    def restart_agent_service(self) -> str: ...

    def remove_dir(self, private_dir: str) -> str: ...


class ScriptMode:
    """What a host script does after reading the agent's state."""

    PREFLIGHT = "preflight"  # stop after show: nothing written, nothing connected
    CONNECT = "connect"  # connect unless show failed or says connected (the common path)
    FORCE = "force"  # connect whatever show says (the engine has decided)


@dataclass(frozen=True)
class ScriptParams:
    """The OS-neutral parameters of one host script run (see :mod:`fleet.engine.frames`)."""

    boundary: str
    mode: str
    cap: int  # bytes of each step's stdout and of its stderr sent back, at most
    log_tail_bytes: int
    cleanup_after_s: int  # the detached timer removes the private directory after this
    # The script stops before writing the config, sends a ``ready`` record and reads a line on
    # stdin: ``go`` (then the config follows) or anything else/EOF (it ends without connecting).
    # The engine takes the agent slot only then, so preflight overlaps other hosts' connects.
    gate: bool = False
    # The random part of the private directory's name, 32 hex digits, where the script takes
    # it from the engine (Windows): a stop before the script reports its directory can still
    # remove it. The Linux script uses mktemp, and its trap removes the directory when stopped.
    dir_token: str = field(default_factory=lambda: uuid.uuid4().hex)


@runtime_checkable
class ScriptCommands(AgentCommands, Protocol):
    """Commands for an OS that runs the whole common path as one script per host."""

    def script_command(self, params: ScriptParams, host: ResolvedHost) -> str:
        """The one command of the session; the ``--config`` file goes on its stdin."""

    def is_private_dir(self, path: str) -> bool:
        """Whether ``path`` is exactly what the private-directory step makes."""

    def script_label(self) -> str:
        """How the script command is shown in transcripts (the script itself is long)."""
