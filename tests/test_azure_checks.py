"""fleet.azure against the lab's fake Entra ID and ARM, at the API level: credentials (secret and
certificate), clouds, permissions inheritance, private link scopes, gateways, stale names."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from fleet.azure.checks import CheckStatus, action_allowed, parse_resource_id
from fleet.azure.clouds import CLOUDS, ENDPOINTS_ENV, endpoints_for
from fleet.azure.preflight import AzurePreflightResult, run_azure_preflight
from fleet.engine.secrets import SecretBook
from fleet.errors import UsageError
from fleet.inventory.model import (
    AzureTarget,
    Cloud,
    OsFamily,
    ResolvedHost,
    SecretRef,
    ServicePrincipal,
    Transport,
)
from fleet.inventory.regions import cloud_of, location_syntax_problem
from fleet.lab.azure import LabAzure, Machine

TENANT = "11111111-2222-3333-4444-555555555555"
SUB = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
CLIENT = "99999999-8888-7777-6666-555555555555"
RG = "rg-one"
HC = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.HybridCompute"
PLS = f"{HC}/privateLinkScopes/pls1"
GATEWAY = f"{HC}/gateways/gw1"


@pytest.fixture
def azure(tmp_path: Path) -> Iterator[LabAzure]:
    with LabAzure(tmp_path / "azure") as lab:
        lab.seed(tenant_id=TENANT, subscription_id=SUB, client_id=CLIENT, secret="right",
                 resource_group=RG)
        yield lab


def host(azure: LabAzure, tmp_path: Path, name: str = "h1", *, secret: str | None = "right",
         certificate: Path | None = None, **target: object) -> ResolvedHost:
    secret_ref = None
    if secret is not None:
        path = tmp_path / f"secret-{name}"
        path.write_text(secret, encoding="utf-8")
        path.chmod(0o600)  # a secret file others can read is refused (docs/security.md)
        secret_ref = SecretRef(file=path)
    values: dict[str, object] = {
        "tenant_id": TENANT, "subscription_id": SUB, "resource_group": RG,
        "location": "westeurope", "endpoints_file": azure.endpoints_file,
        "service_principal": ServicePrincipal(client_id=CLIENT, secret=secret_ref,
                                              certificate_file=certificate),
    }
    values.update(target)
    return ResolvedHost(name=name, address="127.0.0.1", port=22, transport=Transport.SSH,
                        os=OsFamily.LINUX, azure=AzureTarget.model_validate(values))


def statuses(result: AzurePreflightResult) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for r in result.results:
        found.setdefault(r.check.value, []).append(r.status.value)
    return found


def certificate(folder: Path, name: str) -> tuple[Path, bytes]:
    """A self-signed RSA certificate: (PEM file with key and certificate, certificate PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = folder / f"{name}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()) + cert_pem)
    return path, cert_pem


def test_all_checks_pass_on_the_seeded_lab(azure: LabAzure, tmp_path: Path) -> None:
    result = run_azure_preflight([host(azure, tmp_path)], SecretBook())
    assert statuses(result) == {"credential": ["passed"], "providers": ["passed"],
                                "location": ["passed"], "resource_group": ["passed"],
                                "permissions": ["passed"]}
    assert not result.stopped


def test_wrong_secret_and_unknown_tenant_are_classified(azure: LabAzure, tmp_path: Path) -> None:
    wrong = host(azure, tmp_path, "h1", secret="wrong")
    other_tenant = host(azure, tmp_path, "h2", tenant_id="00000000-2222-3333-4444-555555555555")
    result = run_azure_preflight([wrong, other_tenant], SecretBook())
    assert set(result.stopped) == {"h1", "h2"}
    assert "AADSTS7000215" in result.stopped["h1"].cause
    assert "tenant id does not name an existing tenant" in result.stopped["h2"].cause
    assert {d.category.value for d in result.stopped.values()} == {"credentials"}
    # Two identities, two sign-ins; nothing else was asked.
    assert not [r for r in azure.state.requests if r.path.startswith("/subscriptions")]


def test_certificate_credential(azure: LabAzure, tmp_path: Path) -> None:
    good, good_pem = certificate(tmp_path, "good")
    other, _ = certificate(tmp_path, "other")
    azure.state.apps[CLIENT].certificate_pem = good_pem
    result = run_azure_preflight(
        [host(azure, tmp_path, "h1", secret=None, certificate=good),
         host(azure, tmp_path, "h2", secret=None, certificate=other)], SecretBook())
    assert set(result.stopped) == {"h2"}
    assert "AADSTS700027" in result.stopped["h2"].cause
    assert statuses(result)["credential"] == ["passed", "failed"]


def test_roles_inherited_from_the_subscription_and_reader_is_not_enough(
        azure: LabAzure, tmp_path: Path) -> None:
    state = azure.state
    state.remove_roles(CLIENT, f"/subscriptions/{SUB}/resourceGroups/{RG}")
    state.add_resource_group(SUB, "rg-two")
    state.assign_role(CLIENT, f"/subscriptions/{SUB}", "Reader")
    state.assign_role(CLIENT, f"/subscriptions/{SUB}/resourceGroups/rg-two", "Contributor")
    result = run_azure_preflight([host(azure, tmp_path, "h1"),
                                  host(azure, tmp_path, "h2", resource_group="rg-two")],
                                 SecretBook())
    assert set(result.stopped) == {"h1"}
    assert "Microsoft.HybridCompute/machines/write" in result.stopped["h1"].cause
    assert "Azure Connected Machine Onboarding" in result.stopped["h1"].fix


def test_missing_resource_group(azure: LabAzure, tmp_path: Path) -> None:
    result = run_azure_preflight([host(azure, tmp_path, resource_group="rg-nope")], SecretBook())
    assert statuses(result)["resource_group"] == ["failed"]
    assert result.stopped["h1"].category.value == "invalid_input"
    assert "az group create --name rg-nope" in result.stopped["h1"].fix


def test_private_link_scope_and_gateway(azure: LabAzure, tmp_path: Path) -> None:
    azure.state.subscriptions[SUB].private_link_scopes.add((RG, "pls1"))
    azure.state.assign_role(CLIENT, f"/subscriptions/{SUB}", "Reader")  # gateways/read
    hosts = [host(azure, tmp_path, "h1", private_link_scope=PLS),
             host(azure, tmp_path, "h2", gateway_id=GATEWAY)]
    result = run_azure_preflight(hosts, SecretBook())
    found = statuses(result)
    assert found["private_link_scope"] == ["passed"]
    assert found["gateway"] == ["failed"]
    assert set(result.stopped) == {"h2"} and "does not exist" in result.stopped["h2"].cause
    azure.state.subscriptions[SUB].gateways.add((RG, "gw1"))
    assert not run_azure_preflight(hosts, SecretBook()).stopped


def test_stale_machine_in_the_target_group_is_a_warning(azure: LabAzure, tmp_path: Path) -> None:
    azure.state.add_machine(Machine(SUB, RG, "h1", status="Expired"))
    result = run_azure_preflight([host(azure, tmp_path)], SecretBook())
    names = [r for r in result.results if r.check.value == "machine_name"]
    assert [(r.status, r.category and r.category.value) for r in names] == [
        (CheckStatus.WARNING, "stale_resource")]
    assert "Expired" in names[0].cause and "AZCM0044" in names[0].cause
    assert not result.stopped


def test_clouds_and_the_endpoints_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINTS_ENV, raising=False)
    assert endpoints_for(Cloud.AZURE).resource_manager == "https://management.azure.com"
    assert endpoints_for(Cloud.US_GOVERNMENT).authority_host == "https://login.microsoftonline.us"
    assert endpoints_for(Cloud.CHINA).arm_scope == "https://management.chinacloudapi.cn/.default"
    assert not any(c.overridden for c in CLOUDS.values())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"authority_host": "http://127.0.0.1:1",
                               "resource_manager": "https://127.0.0.1:1"}), encoding="utf-8")
    with pytest.raises(UsageError, match="https"):
        endpoints_for(Cloud.AZURE, bad)
    monkeypatch.setenv(ENDPOINTS_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(UsageError, match=ENDPOINTS_ENV):
        endpoints_for(Cloud.AZURE)


def test_region_names_by_syntax_and_cloud_by_naming() -> None:
    assert location_syntax_problem("West Europe") is None
    assert location_syntax_problem("newregion7") is None  # not in any list: Azure decides
    assert location_syntax_problem("west-europe") is not None
    assert location_syntax_problem("") is not None
    assert cloud_of("usgovvirginia") is Cloud.US_GOVERNMENT
    assert cloud_of("chinanorth3") is Cloud.CHINA
    assert cloud_of("westeurope") is Cloud.AZURE


def test_arm_permission_rules() -> None:
    assert action_allowed("Microsoft.HybridCompute/machines/write", ["*"],
                          ["Microsoft.Authorization/*/Write"])
    assert not action_allowed("Microsoft.HybridCompute/machines/write", ["*/read"], [])
    assert not action_allowed("Microsoft.HybridCompute/machines/write",
                              ["Microsoft.HybridCompute/*"], ["Microsoft.HybridCompute/*/write"])
    assert parse_resource_id(PLS) == (SUB, RG, "privateLinkScopes", "pls1")
    assert parse_resource_id("/subscriptions/x") is None


class _ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records the targets it tunnelled to."""

    def __init__(self) -> None:
        import socket
        import threading

        self.targets: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import threading

        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: object) -> None:
        import select
        import socket

        assert isinstance(client, socket.socket)
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target = head.split(b" ", 2)[:2]
            host, port = target.decode().rsplit(":", 1)
            if method != b"CONNECT" or host != "127.0.0.1":  # loopback only
                client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            self.targets.append(target.decode())
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pair = {client: upstream, upstream: client}
                while True:
                    ready, _, _ = select.select(list(pair), [], [], 5)
                    if not ready:
                        return
                    for sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            return
                        pair[sock].sendall(data)

    def close(self) -> None:
        self._stop = True
        self.listener.close()


def test_https_proxy_is_honoured(azure: LabAzure, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = _ConnectProxy()
    try:
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        result = run_azure_preflight([host(azure, tmp_path)], SecretBook())
        assert statuses(result)["permissions"] == ["passed"]
        port = azure.url.rsplit(":", 1)[1]
        assert proxy.targets and set(proxy.targets) == {f"127.0.0.1:{port}"}
    finally:
        proxy.close()
    # A proxy that is not there: ARM cannot be reached, the checks are not done, no host stops.
    # (The token may come from azure-identity's cache of the run above.)
    result = run_azure_preflight([host(azure, tmp_path)], SecretBook())
    found = statuses(result)
    assert found.pop("credential") in (["passed"], ["not_done"])
    assert found and {s for v in found.values() for s in v} == {"not_done"}
    assert not result.stopped


def test_unusable_endpoints_file_stops_its_hosts_only(azure: LabAzure, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    result = run_azure_preflight([host(azure, tmp_path, "h1", endpoints_file=broken),
                                  host(azure, tmp_path, "h2")], SecretBook())
    assert set(result.stopped) == {"h1"}
    assert result.stopped["h1"].category.value == "invalid_input"
    assert "endpoints_file" in result.stopped["h1"].fix


def test_unreadable_secret_is_not_done_and_stops_nobody(azure: LabAzure, tmp_path: Path) -> None:
    # `preflight` does not need the secret for the hosts; without it Azure is not asked.
    unreadable = host(azure, tmp_path).model_copy(update={"azure": host(azure, tmp_path).azure
        .model_copy(update={"service_principal": ServicePrincipal(
            client_id=CLIENT, secret=SecretRef(env="ARCFLEET_TEST_NO_SUCH_VARIABLE"))})})
    result = run_azure_preflight([unreadable], SecretBook())
    assert statuses(result) == {"credential": ["not_done"]}
    assert not result.stopped
    assert not azure.state.requests
