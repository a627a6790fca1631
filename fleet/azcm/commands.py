"""How to say each agent step on a host, per OS. The engine speaks only through this Protocol.

Every value that reaches a command line is quoted for the host's shell by the implementation; the
service-principal secret and ids never appear in a command: they go into the ``--config`` file
built by :func:`connect_config`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from fleet.inventory.model import ResolvedHost
from fleet.transport.base import CommandResult


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

    def connect(self, agent: str, config_path: str, host: ResolvedHost) -> str:
        """``connect --config FILE --verbose`` plus the non-secret target options, each quoted:
        ``--resource-name``, ``--tags``, ``--cloud``, ``--correlation-id``,
        ``--private-link-scope``, ``--gateway-id``."""

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


@runtime_checkable
class ScriptCommands(AgentCommands, Protocol):
    """Commands for an OS that runs the whole common path as one script per host."""

    def script_command(self, params: ScriptParams, host: ResolvedHost) -> str:
        """The one command of the session; the ``--config`` file goes on its stdin."""

    def is_private_dir(self, path: str) -> bool:
        """Whether ``path`` is exactly what the private-directory step makes."""

    def script_label(self) -> str:
        """How the script command is shown in transcripts (the script itself is long)."""


def connect_config(host: ResolvedHost, secret: str | None) -> bytes:
    """The ``--config`` JSON for connect/disconnect: credentials and the Azure target ids.

    Keys are azcmagent flag names, as its ``--config`` expects. The remaining target options go on
    the command line (see :meth:`AgentCommands.connect`), where the operator can see them in the
    transcript.
    """
    azure = host.azure
    sp = azure.service_principal
    body: dict[str, object] = {"verbose": True}
    if sp is not None:
        body["service-principal-id"] = sp.client_id
        if secret is not None:
            body["service-principal-secret"] = secret
        elif sp.certificate_file is not None:
            body["service-principal-cert"] = str(sp.certificate_file)
    ids: dict[str, str | None] = {
        "tenant-id": azure.tenant_id,
        "subscription-id": azure.subscription_id,
        "resource-group": azure.resource_group,
        "location": azure.location,
    }
    body.update({k: v for k, v in ids.items() if v})
    return json.dumps(body, indent=2).encode("utf-8")


def target_options(host: ResolvedHost) -> list[tuple[str, str]]:
    """The non-secret connect options, as (flag, value) pairs, for a builder to quote."""
    azure = host.azure
    pairs: list[tuple[str, str | None]] = [
        ("--resource-name", host.resource_name),
        ("--cloud", azure.cloud.value),
        ("--tags", ",".join(f"{k}={v}" for k, v in azure.tags.items()) or None),
        ("--correlation-id", azure.correlation_id),
        ("--private-link-scope", azure.private_link_scope),
        ("--gateway-id", azure.gateway_id),
    ]
    return [(flag, value) for flag, value in pairs if value]
