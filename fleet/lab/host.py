"""One simulated host: its filesystem, agent state, scenario and everything it received.

A :class:`LabHost` is shared by the SSH server, the WinRM server and the standalone shim; it is the
single place that knows what a host "is". Everything here runs on one event loop (the lab's);
other threads go through :class:`fleet.lab.fleet.LabFleet`, which hops onto that loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Literal

from fleet.lab.scenario import Scenario, ScenarioKind

if TYPE_CHECKING:
    from fleet.lab.agent.arm_client import ArmLink

OsName = Literal["linux", "windows"]

LINUX_AGENT_PATH = "/usr/bin/azcmagent"
LINUX_AGENT_ALT_PATH = "/opt/azcmagent/bin/azcmagent"
LINUX_LOG_PATH = "/var/opt/azcmagent/log/azcmagent.log"
WINDOWS_AGENT_PATH = r"C:\Program Files\AzureConnectedMachineAgent\azcmagent.exe"
WINDOWS_LOG_PATH = r"C:\ProgramData\AzureConnectedMachineAgent\Log\azcmagent.log"

# Service names as each OS's service manager knows them.
LINUX_SERVICE = "himdsd"
WINDOWS_SERVICE = "himds"


# The lab's fixed Azure ids (not real ones): what generated inventories name.
LAB_TENANT_ID = "7a3c2f10-5b1e-4d2a-9c6f-0e8b4a1d2c3e"
LAB_SUBSCRIPTION_ID = "3f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
LAB_CLIENT_ID = "c0ffee00-1234-4abc-8def-00000000a11e"


@dataclass(frozen=True)
class LabTarget:
    """The Azure target and credentials the lab accepts (what the generated inventory names)."""

    tenant_id: str = LAB_TENANT_ID
    subscription_id: str = LAB_SUBSCRIPTION_ID
    resource_group: str = "rg-arclab"
    location: str = "westeurope"
    cloud: str = "AzureCloud"
    client_id: str = LAB_CLIENT_ID
    secret: str = ""  # "" = any secret is accepted (a shim without a target file)
    # SHA-1 thumbprint of the certificate registered on the app ("" = none registered)
    certificate_thumbprint: str = ""


@dataclass
class AgentState:
    """What ``azcmagent show`` reports; persisted by the shim as JSON."""

    status: str = "Disconnected"  # Connected | Disconnected
    resource_name: str = ""
    resource_group: str = ""
    subscription_id: str = ""
    tenant_id: str = ""
    location: str = ""
    cloud: str = ""
    correlation_id: str = ""
    vm_id: str = ""
    connected_at: str = ""
    tags: str = ""

    @property
    def connected(self) -> bool:
        return self.status == "Connected"

    @property
    def holds_resource(self) -> bool:
        """Connected, or Expired with its resource still recorded (the agent keeps it)."""
        return self.status in ("Connected", "Expired") and bool(self.resource_name)

    @property
    def resource_id(self) -> str:
        if not self.holds_resource:
            return ""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.HybridCompute/machines/{self.resource_name}"
        )

    def same_target(self, target: LabTarget) -> bool:
        return self.connected and (
            self.subscription_id,
            self.resource_group.lower(),
            self.location,
            self.tenant_id,
        ) == (target.subscription_id, target.resource_group.lower(), target.location,
              target.tenant_id)


@dataclass(frozen=True)
class SftpWrite:
    """A file the client created or chmod-ed over SFTP: the path and mode, never the content."""

    path: str
    mode: int | None
    op: str = "open"  # open | setstat


@dataclass(frozen=True)
class TcpForward:
    """A direct-tcpip channel a client asked this host to open (the host as a jump host)."""

    dest_host: str
    dest_port: int
    allowed: bool


@dataclass(frozen=True)
class ConnectCall:
    """One ``azcmagent connect`` the simulator ran: its argv and whether ``--config`` existed."""

    argv: tuple[str, ...]
    elevated: bool
    config_path: str | None
    config_existed: bool
    exit_status: int | None  # None: the simulated process was cancelled
    started_at: float = 0.0  # time.monotonic() when the agent started (pacing tests)
    # The agent was connected when this connect started: a repeated connect (AZCM0067).
    agent_was_connected: bool = False
    # The options the agent used (its --config file merged under its argv), credentials left
    # out: what tests compare with the inventory.
    options: tuple[tuple[str, str | bool], ...] = ()
    # The names (never the values) of the credentials it was given: token mode's tests.
    credentials: tuple[str, ...] = ()

    def option(self, name: str) -> str | bool | None:
        return dict(self.options).get(name)


@dataclass
class RunningCommand:
    """A simulated process: an asyncio task the server cancels on a signal or a closed channel."""

    ident: int
    command: str
    task: asyncio.Task[Any]
    started: float


_ids = itertools.count(1)


@dataclass
class LabHost:
    name: str
    address: str
    fs_root: Path
    target: LabTarget
    os: OsName = "linux"
    scenario: Scenario = field(default_factory=Scenario)
    state: AgentState = field(default_factory=AgentState)
    service_running: bool = True
    #: loop time before which himds does not answer yet (``himds_starting``); 0 = ready
    himds_ready_at: float = 0.0
    agent_config: dict[str, str] = field(default_factory=dict)  # ``azcmagent config set``
    connect_attempts: int = 0  # drives fail-N-times-then-succeed scenarios
    installed: bool = True  # the agent is installed (install scenarios start without it)
    install_attempts: int = 0  # runs of the install script / msiexec (fail-N-times scenarios)
    #: loop time until which the dpkg lock is held (``install_lock``)
    lock_until: float = 0.0
    package_family: str = "deb"  # deb: dpkg/apt-get; rpm: rpm/dnf
    agent_version: str = ""  # "" = the simulator's own AGENT_VERSION; installs reset it
    # Records for tests (append-only):
    commands: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)  # arcfleet host scripts, whole
    sftp_writes: list[SftpWrite] = field(default_factory=list)
    connect_calls: list[ConnectCall] = field(default_factory=list)
    forwards: list[TcpForward] = field(default_factory=list)
    service_restarts: int = 0
    running: dict[int, RunningCommand] = field(default_factory=dict)
    #: extra seconds every connect takes on this host (on top of the scenario's own latency)
    latency_s: float = 0.0
    #: where the shim persists this host's state; None = in memory only
    state_file: Path | None = None
    #: path prefixes that are read from the real filesystem (the shim on a real host, where
    #: arcfleet's ``--config`` file lives in the real /tmp)
    real_prefixes: tuple[str, ...] = ()
    #: the lab's fake ARM, when connect and disconnect go through it (lab up --simulate-arm)
    arm: ArmLink | None = None

    def __post_init__(self) -> None:
        self.fs_root.mkdir(parents=True, exist_ok=True)
        for sub in ("tmp", "var/opt/azcmagent/log"):
            (self.fs_root / sub).mkdir(parents=True, exist_ok=True)
        if self.os == "windows":
            (self.fs_root / "C/ProgramData/AzureConnectedMachineAgent/Log").mkdir(
                parents=True, exist_ok=True)
            (self.fs_root / "C/Windows/Temp").mkdir(parents=True, exist_ok=True)

    # ---- scenario -------------------------------------------------------------------------

    def set_scenario(self, scenario: Scenario) -> None:
        """Switch scenario and reset the agent to the state the scenario starts from."""
        self.scenario = scenario
        self.connect_attempts = 0
        self.service_running = scenario.kind is not ScenarioKind.SERVICE_STOPPED
        self.himds_ready_at = (time.monotonic() + scenario.himds_after_s
                               if scenario.kind is ScenarioKind.HIMDS_STARTING else 0.0)
        self.state = AgentState()
        self.installed = not scenario.starts_without_agent
        self.agent_version = scenario.agent_version
        self.install_attempts = 0
        self.lock_until = (time.monotonic() + scenario.lock_s
                           if scenario.kind is ScenarioKind.INSTALL_LOCK else 0.0)
        if scenario.kind is ScenarioKind.ALREADY_CONNECTED:
            self._preconnect(self.target.subscription_id, self.target.resource_group,
                             self.target.tenant_id, self.target.location)
        elif scenario.kind is ScenarioKind.EXPIRED_AGENT:
            self._preconnect(self.target.subscription_id, self.target.resource_group,
                             self.target.tenant_id, self.target.location)
            self.state.status = "Expired"
        elif scenario.kind is ScenarioKind.CONNECTED_ELSEWHERE:
            self._preconnect("ffffffff-1111-2222-3333-444444444444", "rg-legacy",
                             "ffffffff-5555-6666-7777-888888888888", "eastus")
        self.save()

    def _preconnect(self, subscription: str, group: str, tenant: str, location: str) -> None:
        self.state = AgentState(
            status="Connected", resource_name=self.name, resource_group=group,
            subscription_id=subscription, tenant_id=tenant, location=location,
            cloud="AzureCloud", vm_id=_stable_guid(self.name),
            connected_at="2026-01-01T00:00:00Z")

    def clock(self) -> str:
        """What ``date -u +%Y-%m-%dT%H:%M:%SZ`` prints on this host (``clock_ahead``: an hour
        ahead of the jump host)."""
        ahead = 3600 if self.scenario.kind is ScenarioKind.CLOCK_AHEAD else 0
        return datetime.fromtimestamp(time.time() + ahead, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # ---- agent installation and services --------------------------------------------------

    @property
    def himds_ready(self) -> bool:
        """himds answers (``himds_starting`` hosts: only after their start-up delay)."""
        return time.monotonic() >= self.himds_ready_at

    @property
    def agent_installed(self) -> bool:
        return self.installed

    @property
    def agent_path(self) -> str:
        return WINDOWS_AGENT_PATH if self.os == "windows" else LINUX_AGENT_PATH

    @property
    def log_path(self) -> str:
        return WINDOWS_LOG_PATH if self.os == "windows" else LINUX_LOG_PATH

    def restart_service(self, name: str) -> bool:
        """Restart a simulated service (``himdsd`` / ``himds``); False when it is unknown."""
        if name.removesuffix(".service") not in (LINUX_SERVICE, WINDOWS_SERVICE, "arcproxyd",
                                                 "arcproxy", "extd", "gcad"):
            return False
        if not self.agent_installed:
            return False
        self.service_running = True
        self.service_restarts += 1
        self.save()
        return True

    # ---- filesystem -----------------------------------------------------------------------

    def local_path(self, host_path: str) -> Path:
        """Map a path on the simulated host to the lab directory that backs it.

        ``/var/x`` -> ``<fs_root>/var/x``; ``C:\\ProgramData\\x`` -> ``<fs_root>/C/ProgramData/x``.
        ``..`` cannot climb out of ``fs_root``.
        """
        if self.real_prefixes and host_path.startswith(self.real_prefixes):
            return Path(host_path)
        parts: tuple[str, ...]
        if len(host_path) >= 2 and host_path[1] == ":":
            win = PureWindowsPath(host_path)
            parts = (win.drive[0].upper(), *win.parts[1:])
        else:
            parts = PurePosixPath("/", host_path).parts[1:]
        clean: list[str] = []
        for part in parts:
            if part in ("", "."):
                continue
            if part == "..":
                if clean:
                    clean.pop()
                continue
            clean.append(part)
        return self.fs_root.joinpath(*clean)

    def append_log(self, lines: list[str]) -> None:
        """Append logrus-style lines to the agent's own log (one open per call)."""
        path = self.local_path(self.log_path)
        with path.open("a", encoding="utf-8") as fh:
            fh.write("".join(f"{line}\n" for line in lines))

    # ---- running processes ----------------------------------------------------------------

    def spawn(self, command: str, coro: Coroutine[Any, Any, Any]) -> RunningCommand:
        """Run ``coro`` as a tracked simulated process; it leaves ``running`` when it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        running = RunningCommand(next(_ids), command, task, time.monotonic())
        self.running[running.ident] = running
        task.add_done_callback(lambda _t: self.running.pop(running.ident, None))
        return running

    def cancel_running(self) -> int:
        """Cancel every simulated process on this host; returns how many were running."""
        count = len(self.running)
        for running in list(self.running.values()):
            running.task.cancel()
        return count

    # ---- persistence (the shim) -----------------------------------------------------------

    def save(self) -> None:
        if self.state_file is None:
            return
        body = {
            "state": asdict(self.state),
            "service_running": self.service_running,
            "connect_attempts": self.connect_attempts,
            "agent_config": self.agent_config,
            "installed": self.installed,
            "agent_version": self.agent_version,
            "scenario": self.scenario.describe(),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        tmp.replace(self.state_file)

    def load(self) -> bool:
        """Load persisted state; False when there is none (or it was for another scenario)."""
        if self.state_file is None or not self.state_file.exists():
            return False
        try:
            body = json.loads(self.state_file.read_text(encoding="utf-8"))
            if body.get("scenario") != self.scenario.describe():
                return False
            self.state = AgentState(**body["state"])
            self.service_running = bool(body["service_running"])
            self.connect_attempts = int(body["connect_attempts"])
            self.agent_config = dict(body.get("agent_config", {}))
            self.installed = bool(body.get("installed", self.installed))
            self.agent_version = str(body.get("agent_version", self.agent_version))
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True


def _stable_guid(seed: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{seed}.arclab"))
