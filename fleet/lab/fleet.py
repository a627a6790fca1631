"""A whole lab: N Linux hosts over SSH (+ M Windows hosts over WinRM) and a ready inventory.

Use it in an event loop (``async with LabFleet(...) as lab``) or on its own loop in a background
thread (``with LabFleet.in_thread(...) as lab``) so a test can run the arcfleet CLI in a
subprocess against it while poking host state through :meth:`LabFleet.call`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import asyncssh
import yaml

from fleet.lab.azure import LabAzure
from fleet.lab.host import (
    LAB_CLIENT_ID,
    LAB_SUBSCRIPTION_ID,
    LAB_TENANT_ID,
    LabHost,
    LabTarget,
    OsName,
)
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from fleet.lab.shell import LOGIN_USER
from fleet.lab.sp_certificate import SpCertificateFile, make_sp_certificate
from fleet.lab.ssh_server import LabSshServer

T = TypeVar("T")

DEFAULT_SUBNET = "127.77"
WINRM_USER = "arcadmin"


class _WinrmServer(Protocol):
    port: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def lab_addresses(subnet: str, count: int, *, start: int = 0) -> list[str]:
    """``count`` addresses ``<subnet>.x.y`` from position ``start``, skipping ``.0``/``.255``."""
    octets = subnet.split(".")
    if len(octets) != 2 or octets[0] != "127" or not all(o.isdigit() for o in octets):
        raise ValueError(f"subnet must look like 127.N, got {subnet!r}")
    result = []
    for i in range(start, start + count):
        x, y = divmod(i, 254)
        if x > 255:
            raise ValueError(f"subnet {subnet} has room for {256 * 254} hosts only")
        result.append(str(ipaddress.IPv4Address(f"{subnet}.{x}.{y + 1}")))
    return result


class LabFleet:
    def __init__(
        self,
        work_dir: Path | str,
        *,
        hosts: int = 3,
        windows: int = 0,
        plan: ScenarioPlan | None = None,
        subnet: str = DEFAULT_SUBNET,
        port: int = 0,
        winrm_port: int = 0,
        latency_s: float = 0.0,
        unreachable: int = 0,
        inventory_path: Path | str | None = None,
        simulate_arm: bool = False,
    ) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.inventory_path = (Path(inventory_path).resolve() if inventory_path
                               else self.work_dir / "inventory.yaml")
        self.secret = secrets.token_urlsafe(24)
        # The agents sign in and create/delete their machines through the fake ARM.
        self.simulate_arm = simulate_arm
        self.winrm_password = secrets.token_urlsafe(18)
        self.target = LabTarget(LAB_TENANT_ID, LAB_SUBSCRIPTION_ID, client_id=LAB_CLIENT_ID,
                                secret=self.secret)
        plan = plan or ScenarioPlan(default=Scenario())
        total = hosts + windows
        names = [f"lab-{i + 1:04d}" for i in range(total + unreachable)]
        linux_addrs = lab_addresses(subnet, hosts)
        # Windows hosts start on the next /24 after the Linux ones, like the inventory example.
        win_start = -(-hosts // 254) * 254 if hosts else 0
        win_addrs = lab_addresses(subnet, windows, start=win_start)
        spare = lab_addresses(subnet, unreachable, start=win_start + -(-windows // 254) * 254)
        scenarios = plan.assign(names[:total], linux_addrs + win_addrs)
        self.hosts: dict[str, LabHost] = {}
        self.unreachable: dict[str, str] = {}  # name -> address nobody listens on
        for i, (name, address) in enumerate(zip(names, linux_addrs + win_addrs, strict=False)):
            if scenarios[i].kind is ScenarioKind.UNREACHABLE:
                self.unreachable[name] = address
                continue
            os_name: OsName = "linux" if i < hosts else "windows"
            host = LabHost(name, address, self.work_dir / "hosts" / name, self.target,
                           os=os_name, latency_s=latency_s)
            host.set_scenario(scenarios[i].for_os(os_name))
            self.hosts[name] = host
        for name, address in zip(names[total:], spare, strict=True):
            self.unreachable[name] = address
        # The lab's Azure (fake Entra ID + ARM on loopback); the inventory names its endpoints.
        self.azure = LabAzure(self.work_dir / "azure")
        self.azure.seed(tenant_id=self.target.tenant_id,
                        subscription_id=self.target.subscription_id,
                        client_id=self.target.client_id, secret=self.secret,
                        resource_group=self.target.resource_group, location=self.target.location)
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        linux = [h for h in self.hosts.values() if h.os == "linux"]
        self.ssh = LabSshServer(linux, self.client_key, port=port)
        self._winrm_port = winrm_port
        self.winrm: _WinrmServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def ssh_port(self) -> int:
        return self.ssh.port

    @property
    def winrm_port(self) -> int:
        return self.winrm.port if self.winrm is not None else self._winrm_port

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.azure.start()
        if self.simulate_arm:
            from fleet.lab.agent.arm_client import ArmLink

            for host in self.hosts.values():
                host.arm = ArmLink(self.azure.url, str(self.azure.certificates.ca_file),
                                   f"azcmagent-lab/{host.name}")
        if self.ssh.hosts:
            await self.ssh.start()
        windows = [h for h in self.hosts.values() if h.os == "windows"]
        if windows:
            self.winrm = self._make_winrm(windows)
            await self.winrm.start()
        self.write_files()

    def _make_winrm(self, windows: list[LabHost]) -> _WinrmServer:
        try:
            from fleet.lab import winrm_server  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:
            raise RuntimeError("Windows lab hosts need fleet.lab.winrm_server, which is not "
                               "in this tree") from exc
        server: _WinrmServer = winrm_server.LabWinrmServer(
            windows, bind_port=self._winrm_port, users={WINRM_USER: self.winrm_password})
        return server

    async def stop(self) -> None:
        await asyncio.to_thread(self.azure.stop)
        await self.ssh.stop()
        if self.winrm is not None:
            await self.winrm.stop()
        for host in self.hosts.values():
            host.cancel_running()

    async def __aenter__(self) -> LabFleet:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, work_dir: Path | str, **kwargs: Any) -> Iterator[LabFleet]:
        """Run the lab on its own event loop in a daemon thread for the ``with`` block."""
        lab = cls(work_dir, **kwargs)
        loop = asyncio.new_event_loop()
        started: Future[None] = Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(lab.start())
            except BaseException as exc:  # hand the failure to the caller's thread
                started.set_exception(exc)
                return
            started.set_result(None)
            loop.run_forever()

        thread = threading.Thread(target=run, name="arcfleet-lab", daemon=True)
        thread.start()
        try:
            started.result(timeout=120)
            lab._thread = thread
            yield lab
        finally:
            if started.done() and started.exception() is None:
                asyncio.run_coroutine_threadsafe(lab.stop(), loop).result(timeout=30)
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()

    # ---- poking state (thread-safe) -------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the lab's loop and return its result (safe from any thread)."""
        loop = self.loop
        if loop is None or not loop.is_running() or _in_loop(loop):
            return fn()

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), loop).result(timeout=30)

    def set_scenario(self, name: str, scenario: Scenario) -> None:
        host = self.hosts[name]
        self.call(lambda: host.set_scenario(scenario.for_os(host.os)))

    # ---- files for the client -------------------------------------------------------------

    @property
    def key_file(self) -> Path:
        return self.work_dir / "id_ed25519"

    @property
    def known_hosts_file(self) -> Path:
        return self.work_dir / "known_hosts"

    @property
    def secret_file(self) -> Path:
        return self.work_dir / "sp_secret"

    def add_sp_certificate(self, *, pfx: bool = False) -> SpCertificateFile:
        """Register a new certificate on the lab's service principal (Entra ID and every host's
        agent accept it from now on; the secret stays valid too) and write it, 0600, into the
        lab folder. Call it on the lab's loop (``lab.call``)."""
        made = make_sp_certificate(self.work_dir, pfx=pfx)
        self.target = replace(self.target, certificate_thumbprint=made.thumbprint)
        for host in self.hosts.values():
            host.target = self.target
        self.azure.state.add_app(self.target.tenant_id, self.target.client_id, self.secret,
                                 certificate_pem=made.certificate_pem)
        return made

    @property
    def winrm_password_file(self) -> Path:
        return self.work_dir / "winrm_password"

    def write_files(self) -> None:
        _write_private(self.key_file, self.client_key.export_private_key("openssh"))
        (self.work_dir / "id_ed25519.pub").write_bytes(
            self.client_key.export_public_key("openssh"))
        lines = self.ssh.known_hosts_lines() if self.ssh.hosts else []
        self.known_hosts_file.write_text("".join(f"{line}\n" for line in lines),
                                         encoding="utf-8")
        _write_private(self.secret_file, self.secret.encode() + b"\n")
        _write_private(self.winrm_password_file, self.winrm_password.encode() + b"\n")
        self.inventory_path.parent.mkdir(parents=True, exist_ok=True)
        self.inventory_path.write_text(self.inventory_yaml(), encoding="utf-8")
        self.expected_file.write_text(json.dumps(self.expected(), indent=2), encoding="utf-8")

    @property
    def expected_file(self) -> Path:
        return self.work_dir / "expected.json"

    def expected(self) -> dict[str, dict[str, str]]:
        """Per host: its scenario and the categories arcfleet should give it (first attempt and
        final), for demos and tests that run arcfleet in another process."""
        result: dict[str, dict[str, str]] = {}
        for name, host in self.hosts.items():
            result[name] = {"scenario": host.scenario.describe(),
                            "expected_category": host.scenario.expected_category().value,
                            "first_attempt_category":
                                host.scenario.first_attempt_category().value}
        for name in self.unreachable:
            result[name] = {"scenario": "unreachable", "expected_category": "unreachable",
                            "first_attempt_category": "unreachable"}
        return dict(sorted(result.items()))

    def inventory_yaml(self) -> str:
        base = self.inventory_path.parent

        def rel(path: Path) -> str:
            return os.path.relpath(path, base)

        ssh_port = self.ssh_port or 22
        winrm_port = self.winrm_port or 5985
        hosts: dict[str, dict[str, object]] = {}
        for name in sorted([*self.hosts, *self.unreachable]):
            if name in self.hosts:
                host = self.hosts[name]
                if host.os == "windows":
                    hosts[name] = {"address": host.address, "port": winrm_port,
                                   "transport": "winrm"}
                else:
                    hosts[name] = {"address": host.address, "port": ssh_port}
            else:
                hosts[name] = {"address": self.unreachable[name], "port": ssh_port}
        body = {
            "arcfleet": 1,
            "defaults": {
                "transport": "ssh",
                "ssh": {"user": LOGIN_USER, "key_file": rel(self.key_file),
                        "known_hosts": rel(self.known_hosts_file), "become": True},
                "winrm": {"user": WINRM_USER, "password": {"file": rel(self.winrm_password_file)},
                          "auth": "basic", "scheme": "http", "allow_basic_over_http": True,
                          "cert_validation": False},
                "azure": {
                    "tenant_id": self.target.tenant_id,
                    "subscription_id": self.target.subscription_id,
                    "resource_group": self.target.resource_group,
                    "location": self.target.location,
                    "cloud": self.target.cloud,
                    "service_principal": {"client_id": self.target.client_id,
                                          "secret": {"file": rel(self.secret_file)}},
                    "endpoints_file": rel(self.azure.endpoints_file),
                },
            },
            "hosts": hosts,
        }
        header = ("# Generated by the arcfleet lab (arcfleet lab up); valid while it runs.\n")
        return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=100)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)

