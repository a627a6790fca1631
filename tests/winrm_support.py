"""Shared set-up for the WinRM tests: lab Windows hosts behind a LabWinrmServer on 127.30.0.x."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.inventory.model import (
    AzureTarget,
    OsFamily,
    ResolvedHost,
    SecretRef,
    ServicePrincipal,
    Transport,
    WinrmSettings,
)
from fleet.lab.host import LabHost, LabTarget
from fleet.lab.scenario import Scenario, ScenarioKind
from fleet.lab.winrm_server import LabWinrmServer
from fleet.transport.winrm import WinrmTransport

USER = "labadmin"
PASSWORD = "Winrm-Pa55-SENTINEL-7f3a"  # never expected in any command, message or record
SP_SECRET = "sp-SECRET-sentinel-'$(x)`-9c1e"
TENANT = "11111111-2222-3333-4444-555555555555"
SUBSCRIPTION = "66666666-7777-8888-9999-000000000000"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


@dataclass
class WinrmLab:
    server: LabWinrmServer
    hosts: list[LabHost]
    executor: ThreadPoolExecutor
    ca_file: Path | None = None  # the lab's self-signed certificate when it speaks HTTPS
    ntlm: bool = False

    def host(self, index: int) -> LabHost:
        return self.hosts[index]

    def resolved(self, index: int, **azure: Any) -> ResolvedHost:
        lab = self.hosts[index]
        target = {
            "tenant_id": TENANT,
            "subscription_id": SUBSCRIPTION,
            "resource_group": "rg-arclab",
            "location": "westeurope",
            "service_principal": ServicePrincipal(
                client_id=CLIENT_ID, secret=SecretRef(env="ARCFLEET_TEST_SP")
            ),
            **azure,
        }
        return ResolvedHost(
            name=lab.name,
            address=lab.address,
            port=self.server.port,
            transport=Transport.WINRM,
            os=OsFamily.WINDOWS,
            winrm=WinrmSettings(
                user=USER, auth="ntlm" if self.ntlm else "basic",
                scheme="https" if self.ca_file else "http",
                allow_basic_over_http=True,
            ),
            azure=AzureTarget(**target),
            source="inventory.yaml",
        )

    def transport(self, index: int, *, password: str = PASSWORD, **azure: Any) -> WinrmTransport:
        return WinrmTransport(
            self.resolved(index, **azure), password=password, executor=self.executor
        )


@asynccontextmanager
async def winrm_lab(
    tmp_path: Path, scenarios: list[ScenarioKind | Scenario], *, base: int = 1,
    tls: bool = False,
    ntlm: bool = False,
) -> AsyncIterator[WinrmLab]:
    hosts = []
    for offset, scenario in enumerate(scenarios):
        host = LabHost(
            name=f"win-{base + offset:02d}",
            address=f"127.30.0.{base + offset}",
            fs_root=tmp_path / f"host{base + offset}",
            target=LabTarget(tenant_id=TENANT, subscription_id=SUBSCRIPTION,
                             client_id=CLIENT_ID, secret=SP_SECRET),
            os="windows",
        )
        host.set_scenario(scenario if isinstance(scenario, Scenario) else Scenario(scenario))
        hosts.append(host)
    context: ssl.SSLContext | None = None
    ca_file: Path | None = None
    if tls:
        ca_file, key_file = self_signed(tmp_path, [h.address for h in hosts])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ca_file, key_file)
    server = LabWinrmServer(
        hosts, bind_port=0, users={USER: PASSWORD}, ssl_context=context,
        ntlm_user_file=tmp_path / "ntlm-users" if ntlm else None,
    )
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="winrm-test")
    await server.start()
    try:
        yield WinrmLab(server, hosts, executor, ca_file, ntlm)
    finally:
        await server.stop()
        executor.shutdown(wait=True, cancel_futures=True)


def free_port(address: str) -> int:
    """A port nothing listens on at ``address`` (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
    return port


def self_signed(directory: Path, addresses: list[str]) -> tuple[Path, Path]:
    """A self-signed server certificate for these IP addresses: (cert PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arcfleet lab winrm")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "lab-winrm.crt", directory / "lab-winrm.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_file, key_file
