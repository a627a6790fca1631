"""Every input is applied (issue 13): target options in the --config file, proxy, certificate.

The real CLI in a subprocess against the lab; the lab's agent simulator records the options it
read (its --config file merged under its argv), so each test compares what the agent used with
what the inventory says.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from fleet.azcm.agent_config import agent_settings, connect_config, shown_config
from fleet.inventory.model import AzureTarget, OsFamily, ResolvedHost, ServicePrincipal, Transport
from fleet.lab.fleet import LabFleet
from tests.engine_support import connect_calls, edit_inventory, run_cli, write_playbook


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
