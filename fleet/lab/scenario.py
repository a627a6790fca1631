"""Lab scenarios: what a simulated host does when arcfleet talks to it, and the category arcfleet
is expected to end with.

A scenario file (YAML) chooses a scenario per host; see ``docs/lab.md`` for the format::

    default: success                 # hosts not named below
    spread:                          # spread evenly over the fleet, in host order
      - {scenario: wrong_secret, count: 2}
      - {scenario: transient, fail_times: 2}
    hosts:                           # by name or address; wins over spread
      lab-0003: {scenario: azcm, code: AZCM0044}
      127.77.0.9: hang
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from fleet.azcm.diagnosis import Category
from fleet.errors import Problem, ScenarioError


class ScenarioKind(StrEnum):
    SUCCESS = "success"
    ALREADY_CONNECTED = "already_connected"  # connected to the lab's own target
    CONNECTED_ELSEWHERE = "connected_elsewhere"  # connected to another subscription/RG
    AZCM = "azcm"  # fail with ``code`` (any code of the catalog)
    WRONG_SECRET = "wrong_secret"  # AADSTS7000215
    EXPIRED_SECRET = "expired_secret"  # AADSTS7000222
    UNKNOWN_APP = "unknown_app"  # AADSTS700016
    UNKNOWN_TENANT = "unknown_tenant"  # AADSTS90002
    RBAC_403 = "rbac_403"  # AuthorizationFailed
    UNREGISTERED_PROVIDER = "unregistered_provider"  # MissingSubscriptionRegistration
    LOGIN_UNREACHABLE = "login_unreachable"  # dial tcp ... network is unreachable
    LOGIN_FORBIDDEN = "login_forbidden"  # proxy/firewall blocks login.windows.net
    NO_SUCH_HOST = "no_such_host"  # DNS: lookup login.windows.net: no such host
    ARM_FORBIDDEN = "arm_forbidden"  # proxy/firewall blocks management.azure.com
    # the host's clock is an hour ahead: ARM rejects its tokens (ExpiredAuthenticationToken)
    CLOCK_AHEAD = "clock_ahead"
    THROTTLED = "throttled"  # ARM 429 with Retry-After ``fail_times`` times, then success
    TRANSIENT = "transient"  # AZCM0026 ``fail_times`` times, then success
    SERVICE_STOPPED = "service_stopped"  # AZCM0064 until himds is restarted
    # himds answers only ``himds_after_s`` after the host starts (just installed): until then
    # `show` reports it starting and connect fails with AZCM0064 "Failed to obtain change token"
    HIMDS_STARTING = "himds_starting"
    # the agent is Expired but still holds its resource id: connect answers AZCM0067
    EXPIRED_AGENT = "expired_agent"
    NOT_ROOT = "not_root"  # sudo does not elevate: the agent answers AZCM0018
    # azcmagent not installed: command not found, 127 (the install stage installs it)
    AGENT_MISSING = "agent_missing"
    # Install failures (the host starts without an agent; the install script or msiexec fails
    # as documented, reference section 7.2):
    INSTALL_LOCK = "install_lock"  # dpkg lock held ``lock_s`` (AZCM0145), then released
    INSTALL_DOWNLOAD = "install_download"  # packages-microsoft-prod download fails (AZCM0146)
    INSTALL_UNSUPPORTED = "install_unsupported"  # unsupported distribution (AZCM0133)
    INSTALL_AZURE_VM = "install_azure_vm"  # an Azure VM (AZCM0141 Linux, AZCM0147 Windows)
    INSTALL_NO_VERSION = "install_no_version"  # --desiredversion not found (AZCM0147 Linux)
    INSTALL_FATAL = "install_fatal"  # msiexec 1603 (AZCM0156); Linux: the package fails (0143)
    INSTALL_BUSY = "install_busy"  # msiexec 1618 ``fail_times`` times (AZCM0159), then success
    INSTALL_NO_DISK = "install_no_disk"  # msiexec 112 (AZCM0158); Linux: dpkg ENOSPC (0143)
    SUDO_PASSWORD = "sudo_password"  # sudo: a password is required, exit 1
    SLOW = "slow"  # succeeds after ``latency_s``
    HANG = "hang"  # connect never returns
    HUGE_OUTPUT = "huge_output"  # ``output_bytes`` of verbose output, then success
    CONNECTION_DROP = "connection_drop"  # the server cuts the connection once connect runs
    UNREACHABLE = "unreachable"  # LabFleet serves nothing at the host's address
    # Azure is reachable only through ``proxy_url``: connect fails with AZCM0026 unless the
    # agent's proxy.url is that proxy (fleet/lab/agent/proxy.py)
    BEHIND_PROXY = "behind_proxy"


# What each AZCM code means to arcfleet when a host fails with it (the generic ``azcm`` scenario).
CODE_CATEGORIES: dict[str, Category] = {
    **{c: Category.UNKNOWN for c in ("AZCM0001", "AZCM0072", "AZCM0073", "AZCM0074",
                                      "AZCM0103", "AZCM0107")},
    **{c: Category.AGENT_SERVICE for c in ("AZCM0002", "AZCM0004", "AZCM0061", "AZCM0064",
                                            "AZCM0065", "AZCM0066", "AZCM0070")},
    **{c: Category.INVALID_INPUT for c in ("AZCM0003", "AZCM0016", "AZCM0019", "AZCM0020",
                                            "AZCM0023", "AZCM0068", "AZCM0101")},
    **{c: Category.HOST_PREREQUISITE for c in ("AZCM0005", "AZCM0006", "AZCM0027", "AZCM0028",
                                                "AZCM0069", "AZCM0076", "AZCM0082", "AZCM0102",
                                                "AZCM0108")},
    **{c: Category.NETWORK for c in ("AZCM0026", "AZCM0045", "AZCM0075", "AZCM0083",
                                      "AZCM0105")},
    "AZCM0011": Category.INTERRUPTED,
    "AZCM0012": Category.CREDENTIALS,
    "AZCM0018": Category.ELEVATION,
    "AZCM0041": Category.UNKNOWN,  # the code alone: its message decides (issue 12)
    "AZCM0042": Category.PERMISSIONS,
    "AZCM0043": Category.PERMISSIONS,
    "AZCM0044": Category.RESOURCE_CONFLICT,
    "AZCM0062": Category.UNKNOWN,
    "AZCM0063": Category.UNKNOWN,
    "AZCM0067": Category.RESOURCE_CONFLICT,
    "AZCM0081": Category.STALE_RESOURCE,
}

_KIND_CATEGORIES: dict[ScenarioKind, Category] = {
    ScenarioKind.SUCCESS: Category.CONNECTED,
    ScenarioKind.ALREADY_CONNECTED: Category.ALREADY_CONNECTED,
    ScenarioKind.CONNECTED_ELSEWHERE: Category.RESOURCE_CONFLICT,
    ScenarioKind.WRONG_SECRET: Category.CREDENTIALS,
    ScenarioKind.EXPIRED_SECRET: Category.CREDENTIALS,
    ScenarioKind.UNKNOWN_APP: Category.CREDENTIALS,
    ScenarioKind.UNKNOWN_TENANT: Category.CREDENTIALS,
    ScenarioKind.RBAC_403: Category.PERMISSIONS,
    ScenarioKind.UNREGISTERED_PROVIDER: Category.PERMISSIONS,
    ScenarioKind.LOGIN_UNREACHABLE: Category.NETWORK,
    ScenarioKind.LOGIN_FORBIDDEN: Category.NETWORK,
    ScenarioKind.NO_SUCH_HOST: Category.NETWORK,
    ScenarioKind.ARM_FORBIDDEN: Category.NETWORK,
    ScenarioKind.CLOCK_AHEAD: Category.HOST_PREREQUISITE,  # the clock, measured by the script
    ScenarioKind.THROTTLED: Category.CONNECTED,  # after waiting Retry-After
    ScenarioKind.TRANSIENT: Category.CONNECTED,  # after retries
    ScenarioKind.SERVICE_STOPPED: Category.CONNECTED,  # after restarting himds
    ScenarioKind.HIMDS_STARTING: Category.CONNECTED,  # after waiting for himds
    # under the default onboard playbook; connected where disconnect_force_local_only is allowed
    ScenarioKind.EXPIRED_AGENT: Category.STALE_RESOURCE,
    ScenarioKind.NOT_ROOT: Category.ELEVATION,
    # with the onboard default `install: missing`, the install stage installs it
    ScenarioKind.AGENT_MISSING: Category.CONNECTED,
    ScenarioKind.INSTALL_LOCK: Category.CONNECTED,  # after retries
    ScenarioKind.INSTALL_DOWNLOAD: Category.NETWORK,
    ScenarioKind.INSTALL_UNSUPPORTED: Category.HOST_PREREQUISITE,
    ScenarioKind.INSTALL_AZURE_VM: Category.HOST_PREREQUISITE,
    ScenarioKind.INSTALL_NO_VERSION: Category.INVALID_INPUT,
    ScenarioKind.INSTALL_FATAL: Category.HOST_PREREQUISITE,
    ScenarioKind.INSTALL_BUSY: Category.CONNECTED,  # after retries
    ScenarioKind.INSTALL_NO_DISK: Category.HOST_PREREQUISITE,
    ScenarioKind.SUDO_PASSWORD: Category.ELEVATION,
    ScenarioKind.SLOW: Category.CONNECTED,
    ScenarioKind.HANG: Category.TIMEOUT,
    ScenarioKind.HUGE_OUTPUT: Category.CONNECTED,
    # The engine cannot know what the agent did: a lost session ends the host as unreachable.
    ScenarioKind.CONNECTION_DROP: Category.UNREACHABLE,
    ScenarioKind.UNREACHABLE: Category.UNREACHABLE,
    # with the lab's own inventory, which sets no proxy; connected with arc_proxy_url set
    ScenarioKind.BEHIND_PROXY: Category.NETWORK,
}

# The category of the first failed attempt, for scenarios that end connected after a retry or a
# remediation (arcfleet records it on the attempt).
_FIRST_ATTEMPT: dict[ScenarioKind, Category] = {
    ScenarioKind.THROTTLED: Category.THROTTLED,
    ScenarioKind.TRANSIENT: Category.NETWORK,
    ScenarioKind.SERVICE_STOPPED: Category.AGENT_SERVICE,
    ScenarioKind.HIMDS_STARTING: Category.AGENT_SERVICE,
    ScenarioKind.EXPIRED_AGENT: Category.RESOURCE_CONFLICT,  # AZCM0067 as the agent says it
    ScenarioKind.INSTALL_LOCK: Category.HOST_PREREQUISITE,
    ScenarioKind.INSTALL_BUSY: Category.HOST_PREREQUISITE,
}

#: scenarios whose host starts without the agent
NO_AGENT_KINDS = frozenset(k for k in ScenarioKind if k.value.startswith("install_")) | {
    ScenarioKind.AGENT_MISSING}

_CODE_RE = re.compile(r"^AZCM\d{4}$")


@dataclass(frozen=True)
class Scenario:
    kind: ScenarioKind = ScenarioKind.SUCCESS
    code: str | None = None  # for ``azcm``: the code to fail with
    fail_times: int = 1  # for ``throttled`` / ``transient``
    retry_after_s: int = 5  # for ``throttled``
    latency_s: float = 0.0  # every connect takes this long (``slow`` defaults to 3 s)
    output_bytes: int = 4 * 1024 * 1024  # for ``huge_output``
    message: str | None = None  # for ``azcm``: override the failure message
    himds_after_s: float = 30.0  # for ``himds_starting``
    proxy_url: str = "http://proxy.lab.test:3128"  # for ``behind_proxy``
    no_agent: bool = False  # any scenario: the host starts without the agent
    lock_s: float = 20.0  # for ``install_lock``: how long the dpkg lock stays held
    agent_version: str = ""  # any scenario: the installed agent's version (default: current)

    def expected_category(self) -> Category:
        """The category arcfleet should end this host with."""
        if self.kind is ScenarioKind.AZCM:
            return CODE_CATEGORIES.get(self.code or "", Category.UNKNOWN)
        return _KIND_CATEGORIES[self.kind]

    @property
    def starts_without_agent(self) -> bool:
        return self.no_agent or self.kind in NO_AGENT_KINDS

    def first_attempt_category(self) -> Category:
        """The category of the first attempt (differs from the final one for retried or
        remediated scenarios)."""
        return _FIRST_ATTEMPT.get(self.kind, self.expected_category())

    def for_os(self, os_name: str) -> Scenario:
        """The same failure in the host's own terms: Windows has no sudo, so a host that would
        ask for a sudo password is a login that is not an Administrator (``not_root``)."""
        if os_name == "windows" and self.kind is ScenarioKind.SUDO_PASSWORD:
            return Scenario(ScenarioKind.NOT_ROOT, latency_s=self.latency_s)
        return self

    @property
    def connect_latency_s(self) -> float:
        if self.kind is ScenarioKind.SLOW and self.latency_s == 0:
            return 3.0
        return self.latency_s

    def describe(self) -> str:
        """Short stable text, e.g. ``azcm(code=AZCM0044)`` or ``transient(fail_times=2)``."""
        defaults = Scenario()
        extras = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                  if f.name != "kind" and getattr(self, f.name) != getattr(defaults, f.name)]
        return f"{self.kind.value}({', '.join(extras)})" if extras else self.kind.value


def parse_scenario(value: object, *, file: str = "<scenario>", host: str | None = None,
                   field_name: str = "scenario") -> Scenario:
    """A scenario from its YAML form: a name, or a mapping with ``scenario`` and parameters."""

    def bad(message: str, sub: str | None = None) -> ScenarioError:
        return ScenarioError(Problem(file, host, sub or field_name, message))

    if isinstance(value, str):
        body: dict[str, Any] = {"scenario": value}
    elif isinstance(value, Mapping):
        body = dict(value)
    else:
        raise bad(f"expected a scenario name or mapping, got {type(value).__name__}")
    name = body.pop("scenario", body.pop("kind", None))
    if not isinstance(name, str):
        raise bad("missing 'scenario' (a scenario name)")
    try:
        kind = ScenarioKind(name)
    except ValueError:
        known = ", ".join(k.value for k in ScenarioKind)
        raise bad(f"unknown scenario {name!r} (known: {known})") from None
    body.pop("count", None)
    values: dict[str, Any] = {}
    types: dict[str, type | tuple[type, ...]] = {
        "code": str, "fail_times": int, "retry_after_s": int, "latency_s": (int, float),
        "output_bytes": int, "message": str, "himds_after_s": (int, float),
        "proxy_url": str, "no_agent": bool,
        "lock_s": (int, float), "agent_version": str}
    for key, raw in body.items():
        if key not in types:
            raise bad(f"unknown key {key!r}", f"{field_name}.{key}")
        if not isinstance(raw, types[key]) or (isinstance(raw, bool) and types[key] is not bool):
            raise bad(f"invalid value {raw!r}", f"{field_name}.{key}")
        values[key] = (float(raw) if key in ("latency_s", "himds_after_s", "lock_s")
                       and isinstance(raw, int | float) else raw)
    scenario = Scenario(kind, **values)
    if kind is ScenarioKind.AZCM and (scenario.code is None or not _CODE_RE.match(scenario.code)):
        raise bad("scenario 'azcm' needs code: AZCMnnnn", f"{field_name}.code")
    if (scenario.fail_times < 0 or scenario.latency_s < 0 or scenario.output_bytes < 0
            or scenario.himds_after_s < 0 or scenario.lock_s < 0):
        raise bad("values must not be negative")
    return scenario


@dataclass(frozen=True)
class ScenarioPlan:
    """A scenario file, loaded once: which scenario each host gets."""

    default: Scenario
    spread: tuple[Scenario, ...] = ()
    hosts: tuple[tuple[str, Scenario], ...] = ()

    def assign(self, names: Sequence[str], addresses: Sequence[str]) -> list[Scenario]:
        """Scenarios for hosts in order: named ones first, then ``spread`` evenly, then default."""
        count = len(names)
        result: list[Scenario | None] = [None] * count
        by_key = dict(self.hosts)
        for i, (name, address) in enumerate(zip(names, addresses, strict=True)):
            result[i] = by_key.get(name, by_key.get(address))
        free = [i for i in range(count) if result[i] is None]
        special = list(self.spread)[: len(free)]
        for j, scenario in enumerate(special):
            # Even spacing: the j-th special host sits in the middle of the j-th slice.
            result[free[int((j + 0.5) * len(free) / len(special))]] = scenario
        return [s if s is not None else self.default for s in result]


def load_plan(path: Path) -> ScenarioPlan:
    file = str(path)
    try:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(Problem(file, None, None, f"cannot read: {exc.strerror}")) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(Problem(file, None, None, f"not UTF-8 text (byte {exc.start})")) \
            from None
    except yaml.YAMLError as exc:
        raise ScenarioError(Problem(file, None, None, _yaml_error_line(exc))) from None
    except RecursionError:
        raise ScenarioError(Problem(file, None, None, "YAML nesting is too deep")) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ScenarioError(Problem(file, None, None, f"unreadable value: {exc}")) from None
    return plan_from_mapping(body, file=file)


def _yaml_error_line(exc: yaml.YAMLError) -> str:
    """PyYAML's message in one line (its own text spans lines and quotes the file). Local, not
    fleet.inventory's: the shim runs this module under a bare system Python without pydantic."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "invalid YAML"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}"


def plan_from_mapping(body: object, *, file: str = "<scenario>") -> ScenarioPlan:
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ScenarioError(Problem(file, None, None, "expected a mapping at the top level"))
    unknown = set(body) - {"default", "spread", "hosts"}
    if unknown:
        raise ScenarioError(Problem(file, None, sorted(unknown)[0], "unknown key"))
    default = parse_scenario(body.get("default", "success"), file=file, field_name="default")
    spread: list[Scenario] = []
    raw_spread = body.get("spread") or []
    if not isinstance(raw_spread, list):
        raise ScenarioError(Problem(file, None, "spread", "expected a list"))
    for i, entry in enumerate(raw_spread):
        scenario = parse_scenario(entry, file=file, field_name=f"spread[{i}]")
        count = entry.get("count", 1) if isinstance(entry, Mapping) else 1
        if not isinstance(count, int) or count < 0:
            raise ScenarioError(Problem(file, None, f"spread[{i}].count", "expected an integer"))
        spread.extend([scenario] * count)
    raw_hosts = body.get("hosts") or {}
    if not isinstance(raw_hosts, Mapping):
        raise ScenarioError(Problem(file, None, "hosts", "expected a mapping of host: scenario"))
    hosts = tuple((str(k), parse_scenario(v, file=file, host=str(k)))
                  for k, v in raw_hosts.items())
    return ScenarioPlan(default=default, spread=tuple(spread), hosts=hosts)


def builtin_plan_path(name: str) -> Path:
    """A scenario file shipped with arcfleet (``mix``)."""
    return Path(__file__).parent / "scenarios" / f"{name}.yaml"
