"""Every input is applied (issue 13): target options in the --config file, proxy, certificate.

The real CLI in a subprocess against the lab; the lab's agent simulator records the options it
read (its --config file merged under its argv), so each test compares what the agent used with
what the inventory says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from fleet.azcm.agent_config import agent_settings, connect_config, shown_config
from fleet.inventory.model import AzureTarget, OsFamily, ResolvedHost, ServicePrincipal, Transport
from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind
from tests.engine_support import connect_calls, edit_inventory, plan, run_cli, write_playbook


def _arm_id(sub: str, rg: str, child: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.HybridCompute/{child}"


SUBNET = "127.91"
SUB = "11111111-2222-3333-4444-555555555555"
PLS = _arm_id(SUB, "rg-net", "privateLinkScopes/pls-1")
GATEWAY = _arm_id(SUB, "rg-net", "gateways/gw")
CORRELATION = "478b97c2-9310-465a-87df-f21e66c2b248"
# A trailing backslash once made azcmagent.exe (Go, Windows rules) swallow every later option.
TRICKY_TAGS = {"share": "\\\\fs01\\builds\\", "owner": "Zoë Ångström", "site": "Bldg 4 Floor 2"}


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
        "tags": "share=\\\\fs01\\builds\\,owner='Zoë Ångström',site='Bldg 4 Floor 2'",
        "correlation-id": CORRELATION, "private-link-scope": PLS, "gateway-id": GATEWAY,
    }
    token = json.loads(connect_config(host, None, access_token="tok-123456"))
    assert token["access-token"] == "tok-123456" and "service-principal-id" not in token
    shown = shown_config(connect_config(host, "s3cret-value"))
    assert "s3cret-value" not in shown and '"service-principal-secret": "<redacted>"' in shown
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
    wanted_tags = "share=\\\\fs01\\builds\\,owner='Zoë Ångström',site='Bldg 4 Floor 2'"
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
