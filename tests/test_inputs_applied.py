"""Every input is applied (issue 13): target options in the --config file, proxy, certificate.

The real CLI in a subprocess against the lab; the lab's agent simulator records the options it
read (its --config file merged under its argv), so each test compares what the agent used with
what the inventory says.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from fleet.azcm import script_linux
from fleet.azcm.agent_config import (
    CERT_PATH_MARK,
    agent_settings,
    connect_config,
    disconnect_config,
    script_stdin,
    shown_config,
)
from fleet.azcm.commands import ScriptMode, ScriptParams
from fleet.engine import frames
from fleet.inventory.model import AzureTarget, OsFamily, ResolvedHost, ServicePrincipal, Transport
from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind
from fleet.lab.sp_certificate import make_sp_certificate
from tests.engine_support import connect_calls, edit_inventory, plan, run_cli, write_playbook
from tests.test_host_script_linux import _agent as host_script_agent
from tests.test_secrets_sentinel import leaks


def _arm_id(sub: str, rg: str, child: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.HybridCompute/{child}"


SUBNET = "127.91"
SUB = "11111111-2222-3333-4444-555555555555"
PLS = _arm_id(SUB, "rg-net", "privateLinkScopes/pls-1")
GATEWAY = _arm_id(SUB, "rg-net", "gateways/gw")
CORRELATION = "478b97c2-9310-465a-87df-f21e66c2b248"
# A trailing backslash once made azcmagent.exe (Go, Windows rules) swallow every later option.
# The value ends the tags text, which has spaces: PowerShell would quote it as "...\".
TRICKY_TAGS = {"owner": "Zoë Ångström", "site": "Bldg 4 Floor 2", "share": "\\\\fs01\\builds\\"}


def mixed_lab(tmp_path: Path, **kwargs: Any) -> AbstractContextManager[LabFleet]:
    """One Linux host (lab-0001, SSH) and one Windows host (lab-0002, WinRM)."""
    return LabFleet.in_thread(tmp_path / "lab", hosts=1, windows=1, subnet=SUBNET, **kwargs)


def _host(**azure: Any) -> ResolvedHost:
    target = AzureTarget(
        tenant_id=SUB, subscription_id=SUB, resource_group="rg", location="westeurope",
        service_principal=ServicePrincipal(client_id=SUB, certificate_file=Path("/jump/sp.pem")),
        **azure,
    )
    return ResolvedHost(name="web-1", address="10.0.0.1", port=22, transport=Transport.SSH,
                        os=OsFamily.LINUX, azure=target)


def test_every_target_option_is_in_the_config_file() -> None:
    host = _host(resource_name="web-01", tags=TRICKY_TAGS, correlation_id=CORRELATION,
                 private_link_scope=PLS, gateway_id=GATEWAY)
    body = json.loads(connect_config(host, None, "/tmp/arcfleet.abcdefgh/sp.pem"))
    assert body == {
        "verbose": True,
        "service-principal-id": SUB,
        "service-principal-cert": "/tmp/arcfleet.abcdefgh/sp.pem",  # the host's path
        "tenant-id": SUB, "subscription-id": SUB, "resource-group": "rg",
        "location": "westeurope", "cloud": "AzureCloud", "resource-name": "web-01",
        "tags": "owner='Zoë Ångström',site='Bldg 4 Floor 2',share=\\\\fs01\\builds\\",
        "correlation-id": CORRELATION, "private-link-scope": PLS, "gateway-id": GATEWAY,
    }
    token = json.loads(connect_config(host, None, access_token="tok-123456"))
    assert token["access-token"] == "tok-123456" and "service-principal-id" not in token
    shown = shown_config(connect_config(host, "s3cret-value"))
    assert "s3cret-value" not in shown and '"service-principal-secret": "<redacted>"' in shown
    # disconnect gets the credentials and tenant, none of connect's target options
    assert json.loads(disconnect_config(host, "s3cret-value")) == {
        "verbose": True, "service-principal-id": SUB, "service-principal-secret": "s3cret-value",
        "tenant-id": SUB}
    assert agent_settings(host) == []
    proxied = _host(proxy_url="http://proxy.corp:3128", proxy_bypass=("ARM", "AAD"))
    assert agent_settings(proxied) == [("proxy.url", "http://proxy.corp:3128"),
                                       ("proxy.bypass", "ARM,AAD")]


def test_tricky_values_reach_the_agent_through_the_config_file(tmp_path: Path) -> None:
    """Linux (host script) and Windows (step by step) hosts: the tags, resource name, private
    link scope, gateway and correlation id the agent used are the inventory's, and its command
    line is only ``connect --config FILE --verbose``; the transcript shows the file, secret
    masked."""
    with mixed_lab(tmp_path) as lab:
        sub, rg = lab.target.subscription_id, lab.target.resource_group
        pls, gateway = _arm_id(sub, rg, "privateLinkScopes/pls-1"), _arm_id(sub, rg, "gateways/gw")

        def seed() -> None:  # the lab's Azure knows the scope and gateway (Azure preflight)
            subscription = lab.azure.state.subscriptions[sub]
            subscription.private_link_scopes.add((rg.lower(), "pls-1"))
            subscription.gateways.add((rg.lower(), "gw"))
            lab.azure.state.assign_role(lab.target.client_id, f"/subscriptions/{sub}", "Reader")

        lab.call(seed)

        def target(body: dict[str, Any]) -> None:
            body["defaults"]["azure"].update(
                tags=TRICKY_TAGS, correlation_id=CORRELATION, private_link_scope=pls,
                gateway_id=gateway)
            body["hosts"]["lab-0001"]["azure"] = {"resource_name": "lin-1"}
            body["hosts"]["lab-0002"]["azure"] = {"resource_name": "win-1"}

        inventory = edit_inventory(lab, "tricky.yaml", target)
        result = run_cli(lab, tmp_path, inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        calls = {name: connect_calls(lab, name) for name in ("lab-0001", "lab-0002")}
        secret = lab.secret
    wanted_tags = "owner='Zoë Ångström',site='Bldg 4 Floor 2',share=\\\\fs01\\builds\\"
    for name, resource in (("lab-0001", "lin-1"), ("lab-0002", "win-1")):
        (call,) = calls[name]
        assert call.argv[-4:] == ("connect", "--config", call.config_path, "--verbose"), call
        assert call.option("tags") == wanted_tags, call
        assert (call.option("resource-name"), call.option("private-link-scope"),
                call.option("gateway-id"), call.option("correlation-id")) == (
            resource, pls, gateway, CORRELATION)
        transcript = (result.run_folder() / "transcripts" / f"{name}.log").read_text("utf-8")
        assert '"private-link-scope": "' + pls in transcript, transcript
        assert '"service-principal-secret": "<redacted>"' in transcript
        assert "Zoë Ångström" in transcript
        assert secret not in transcript


# ---- proxy ------------------------------------------------------------------------------------

LAB_PROXY = "http://proxy.lab.test:3128"


def _with_proxy(**azure: Any) -> Any:
    def edit(body: dict[str, Any]) -> None:
        body["defaults"]["azure"].update(azure)

    return edit


def test_a_host_behind_a_proxy_connects_only_with_the_proxy_set(tmp_path: Path) -> None:
    """Behind the lab's proxy, Linux and Windows hosts fail with the agent's AZCM0026 until the
    inventory names the proxy; then ``config set proxy.url`` (and ``proxy.bypass``) run before
    the connect, the transcript shows them, and both hosts connect."""
    with mixed_lab(tmp_path, plan=plan(Scenario(ScenarioKind.BEHIND_PROXY))) as lab:
        pb = write_playbook(tmp_path / "pb.yaml", attempts=1)
        bare = run_cli(lab, tmp_path, playbook=pb, state_dir=tmp_path / "bare")
        assert bare.returncode == 1, bare.describe()
        for name in ("lab-0001", "lab-0002"):
            line = bare.outcomes[name]
            assert (line["category"], line["azcm_code"]) == ("network", "AZCM0026"), line
            assert "arc_proxy_url" in line["fix"], line  # the fix names the inventory setting
        inventory = edit_inventory(lab, "proxied.yaml",
                                   _with_proxy(proxy_url=LAB_PROXY, proxy_bypass=["AMA"]))
        result = run_cli(lab, tmp_path, inventory=inventory, playbook=pb)
        assert result.returncode == 0, result.describe()
        settings = {name: lab.call(lambda h=h: dict(h.agent_config))
                    for name, h in lab.hosts.items()}
    assert {line["category"] for line in result.outcomes.values()} == {"connected"}
    for name in ("lab-0001", "lab-0002"):
        assert settings[name] == {"proxy.url": LAB_PROXY, "proxy.bypass": "AMA"}
        transcript = (result.run_folder() / "transcripts" / f"{name}.log").read_text("utf-8")
        set_url = transcript.index("config set proxy.url")
        assert transcript.index("config set proxy.bypass") > set_url
        assert transcript.index("connect --config") > set_url


def test_a_wrong_proxy_fails_with_the_agents_proxyconnect_error(tmp_path: Path) -> None:
    with mixed_lab(tmp_path, plan=plan(Scenario(ScenarioKind.BEHIND_PROXY))) as lab:
        inventory = edit_inventory(lab, "wrong.yaml", _with_proxy(proxy_url="http://other:8080"))
        result = run_cli(lab, tmp_path, inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml", attempts=1))
    assert result.returncode == 1, result.describe()
    for line in result.outcomes.values():
        assert (line["category"], line["azcm_code"]) == ("network", "AZCM0026"), line
    transcript = (result.run_folder() / "transcripts" / "lab-0001.log").read_text("utf-8")
    assert "proxyconnect tcp: dial tcp other:8080" in transcript


def test_preflight_reports_the_agents_proxy_against_the_inventory(tmp_path: Path) -> None:
    with mixed_lab(tmp_path) as lab:
        def preset() -> None:  # lab-0001's agent has the proxy already; lab-0002's has none
            lab.hosts["lab-0001"].agent_config["proxy.url"] = LAB_PROXY

        lab.call(preset)
        inventory = edit_inventory(lab, "proxied.yaml", _with_proxy(proxy_url=LAB_PROXY))
        result = run_cli(lab, tmp_path, command="preflight", inventory=inventory)
        assert result.returncode == 0, result.describe()
        unchanged = lab.call(lambda: dict(lab.hosts["lab-0002"].agent_config))
    linux, windows = result.outcomes["lab-0001"], result.outcomes["lab-0002"]
    assert f"agent proxy {LAB_PROXY}, as the inventory says" in linux["cause"], linux
    assert "agent proxy is not set, the inventory says " + LAB_PROXY in windows["cause"], windows
    assert unchanged == {}  # preflight changes nothing
    transcript = (result.run_folder() / "transcripts" / "lab-0002.log").read_text("utf-8")
    assert "config get" in transcript and "proxy.url" in transcript


@pytest.mark.parametrize("tool", ["arcfleet", "ansible"])
def test_a_proxy_with_credentials_is_refused_naming_the_reason(tmp_path: Path, tool: str) -> None:
    password = "Pr0xyPa55word"
    if tool == "arcfleet":
        inventory = tmp_path / "inv.yaml"
        inventory.write_text(ARCFLEET_INVENTORY.format(
            proxy=f"proxy_url: http://bob:{password}@proxy.corp:3128"), encoding="utf-8")
    else:
        inventory = tmp_path / "hosts"
        inventory.write_text(ANSIBLE_INVENTORY + f" arc_proxy_url=http://bob:{password}@p:3128\n",
                             encoding="utf-8")
    result = run_validate(inventory)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "proxy_url" in lines[0] and str(inventory) in lines[0], lines
    assert "does not support proxy authentication" in lines[0]
    assert password not in result.stderr + result.stdout


@pytest.mark.parametrize(("proxy", "expected"), [
    ("proxy_url: null", "1 hosts OK"),  # null is "not set here", not a crash
    ("proxy_url:", "1 hosts OK"),
    ("proxy_bypass: [ARM]", "proxy_bypass: is set but proxy_url is not"),
    ("proxy_url: http://p:3128\n    proxy_bypass: [Nope]", "not a proxy bypass name"),
])
def test_proxy_fields_validate_cleanly(tmp_path: Path, proxy: str, expected: str) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(ARCFLEET_INVENTORY.format(proxy=proxy), encoding="utf-8")
    result = run_validate(inventory)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert expected in result.stdout + result.stderr, result


ARCFLEET_INVENTORY = """\
arcfleet: 1
defaults:
  transport: ssh
  ssh: {{user: arc}}
  azure:
    tenant_id: 11111111-2222-3333-4444-555555555555
    subscription_id: 11111111-2222-3333-4444-555555555555
    resource_group: rg
    location: westeurope
    service_principal: {{client_id: 11111111-2222-3333-4444-555555555555, secret: {{env: ARC_X}}}}
    {proxy}
hosts:
  h1: {{address: 10.0.0.1}}
"""
ANSIBLE_INVENTORY = """\
[all:vars]
ansible_user=arc
arc_tenant_id=11111111-2222-3333-4444-555555555555
arc_subscription_id=11111111-2222-3333-4444-555555555555
arc_resource_group=rg
arc_location=westeurope
arc_sp_client_id=11111111-2222-3333-4444-555555555555
arc_sp_secret_env=ARC_X

[linux]
h1 ansible_host=10.0.0.1"""


def run_validate(inventory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARC_X": "not-a-real-secret"}
    return subprocess.run([sys.executable, "-m", "fleet", "inventory", "validate", "-i",
                           str(inventory)], capture_output=True, text=True, env=env,
                          check=False, timeout=60)


# ---- service-principal certificate ------------------------------------------------------------


def _use_certificate(path: Path, client_id: str) -> Any:
    def edit(body: dict[str, Any]) -> None:
        body["defaults"]["azure"]["service_principal"] = {
            "client_id": client_id, "certificate_file": str(path)}

    return edit


@pytest.mark.parametrize("pfx", [False, True], ids=["pem", "pfx"])
def test_certificate_auth_connects_and_leaves_no_key_material(tmp_path: Path, pfx: bool) -> None:
    """The certificate is read on the jump host and sent like the secret: Linux (script stdin)
    and Windows (upload into the private directory) hosts connect with it, the agent's config
    names the host-side copy, and afterwards the key is nowhere: not on the hosts' disks, not in
    anything they received, not in the state directory or the CLI's output."""
    with mixed_lab(tmp_path) as lab:
        made = lab.call(lambda: lab.add_sp_certificate(pfx=pfx))
        inventory = edit_inventory(lab, "cert.yaml",
                                   _use_certificate(made.path, lab.target.client_id))
        result = run_cli(lab, tmp_path, inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        calls = {name: connect_calls(lab, name) for name in ("lab-0001", "lab-0002")}
        remote = lab.call(lambda: "\n".join(
            [c for h in lab.hosts.values() for c in (*h.commands, *h.scripts)]
            + [" ".join(c.argv) for h in lab.hosts.values() for c in h.connect_calls]))
        host_roots = [h.fs_root for h in lab.hosts.values()]
        writes = {name: lab.call(lambda h=h: list(h.sftp_writes)) for name, h in lab.hosts.items()}
    suffix = "pfx" if pfx else "pem"
    for (call,) in calls.values():
        cert_path = call.option("service-principal-cert")
        assert isinstance(cert_path, str) and cert_path.endswith(f"sp-cert.{suffix}"), call
        # the host-side copy, in the same private directory as the config
        assert call.config_path is not None
        assert cert_path[: -len(f"sp-cert.{suffix}")] == call.config_path[: -len(
            call.config_path.replace("\\", "/").rsplit("/", 1)[1])], (cert_path, call.config_path)
        assert call.option("service-principal-secret") is None
    linux_cert = [w for w in writes["lab-0001"] if w.path.endswith(f"sp-cert.{suffix}")]
    assert linux_cert and all(w.mode & 0o777 == 0o600 for w in linux_cert), linux_cert
    sentinels = key_sentinels(made.key_der, made.path.read_bytes())
    # The check can fail: the certificate file itself is full of them.
    assert leaks(made.path.read_bytes(), sentinels) or made.key_der[16:48] in made.path.read_bytes()
    problems: list[str] = []
    for path in (p for root in [result.state_dir, *host_roots] for p in root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            problems += [f"{path}: {hit}" for hit in leaks(data, sentinels)]
            if made.key_der[16:48] in data:
                problems.append(f"{path}: raw key bytes")
            if path.name.startswith("sp-cert"):
                problems.append(f"{path}: certificate left on a host")
    for label, text in (("cli", result.stdout + result.stderr), ("remote", remote)):
        problems += [f"{label}: {hit}" for hit in leaks(text.encode(), sentinels)]
    assert problems == []


def key_sentinels(key_der: bytes, file: bytes) -> dict[str, str]:
    """The key as base64 in one piece, a full line of its PEM form (64 characters), and a line
    of the certificate file as it travels base64-encoded (script stdin, WinRM upload)."""
    encoded = base64.b64encode(key_der).decode("ascii")
    in_transit = base64.encodebytes(file).decode("ascii").splitlines()
    return {"key base64": encoded, "key PEM line": encoded[64:128],
            "file base64 line": in_transit[len(in_transit) // 2]}


def test_a_certificate_the_app_does_not_know_fails_as_credentials(tmp_path: Path) -> None:
    with mixed_lab(tmp_path) as lab:
        lab.call(lambda: lab.add_sp_certificate())
        other = make_sp_certificate(tmp_path / "other")  # not registered anywhere
        inventory = edit_inventory(lab, "cert.yaml",
                                   _use_certificate(other.path, lab.target.client_id))
        result = run_cli(lab, tmp_path, "--no-azure-check", inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml", attempts=1))
    assert result.returncode == 1, result.describe()
    for line in result.outcomes.values():
        assert line["category"] == "credentials", line
    transcript = (result.run_folder() / "transcripts" / "lab-0001.log").read_text("utf-8")
    assert "AADSTS700027" in transcript and other.thumbprint in transcript


@pytest.mark.parametrize(("content", "reason"), [
    (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "holds no private key"),
    (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
     "encrypted"),
    (b"\x30\x82\x01\x00 not a pfx", "password-protected PFX"),
])
def test_a_certificate_the_agent_cannot_use_is_bad_input(tmp_path: Path, content: bytes,
                                                         reason: str) -> None:
    with mixed_lab(tmp_path) as lab:
        bad = tmp_path / "bad-cert"
        bad.write_bytes(content)
        bad.chmod(0o600)
        inventory = edit_inventory(lab, "cert.yaml", _use_certificate(bad, lab.target.client_id))
        result = run_cli(lab, tmp_path, inventory=inventory)
        contacted = lab.call(lambda: [c for h in lab.hosts.values() for c in h.commands])
    assert result.returncode == 2, result.describe()
    assert reason in result.stderr and "certificate_file" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and contacted == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the script's elevation check wants root")
def test_the_real_shell_writes_the_certificate_and_names_it_in_the_config(tmp_path: Path) -> None:
    """The host script under a real ``sh``: the config line and the base64 certificate from
    stdin become two 0600 files in the private directory, the config names the certificate's
    path there, and both are gone when the script ends."""
    seen = tmp_path / "seen"
    env = host_script_agent(tmp_path, f'cp -rp "$(dirname "$3")" {seen}')
    made = make_sp_certificate(tmp_path / "cert", pfx=True)
    host = _host(tags=TRICKY_TAGS)
    config = connect_config(host, None, f"{CERT_PATH_MARK}/sp-cert.pfx")
    boundary = frames.new_boundary()
    params = ScriptParams(boundary, ScriptMode.CONNECT, 65536, 65536, cleanup_after_s=60)
    done = subprocess.run(["sh", "-c", script_linux.build(params, host)],
                          input=script_stdin(config, made.path.read_bytes()),
                          capture_output=True, env=env, timeout=30, check=True)
    report = frames.parse(done.stdout, boundary)
    assert report.complete
    assert [r.name for r in report.steps][-3:] == ["connect", "cleanup", "verify"]
    private_dir = report.step("workdir").stdout.strip()  # type: ignore[union-attr]
    body = json.loads((seen / "connect.json").read_text())
    assert body["service-principal-cert"] == f"{private_dir}/sp-cert.pfx"
    assert body["tags"] == json.loads(config)["tags"]  # backslashes and non-ASCII intact
    assert (seen / "sp-cert.pfx").read_bytes() == made.path.read_bytes()
    assert {p.stat().st_mode & 0o777 for p in seen.iterdir()} == {0o600}
    assert not Path(private_dir).exists()


@pytest.mark.parametrize("var", ["ansible_become_password", "ansible_become_pass",
                                 "ansible_sudo_pass"])
def test_a_become_password_is_refused_naming_the_variable_and_the_sudo_rule(
        tmp_path: Path, var: str) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text(ANSIBLE_INVENTORY + f" ansible_become=true {var}=Sud0Passw0rd\n",
                         encoding="utf-8")
    result = run_validate(inventory)
    assert result.returncode == 2, result
    (line,) = result.stderr.strip().splitlines()
    assert var in line and "h1" in line and str(inventory) in line, line
    # the fix names what works: passwordless sudo for sh (the host script), not azcmagent alone
    assert "passwordless sudo for `sh`" in line and "Sud0Passw0rd" not in line
