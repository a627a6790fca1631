"""Differential test: arcfleet's resolved hosts against ansible-core's ``ansible-inventory --list``.

Every case under tests/ansible_corpus/ is read by ansible-inventory (the real program, installed
by the test extra) and by arcfleet with each engine the case lists. For every host Ansible knows,
the host's connection settings are worked out here from Ansible's own merged variables, the way
Ansible's connection plugins read them (login user, address, port, become, connection, WinRM
scheme/auth/cert validation), and every ``arc_*`` variable is compared with the field it sets.
When both engines apply, their resolved hosts must be identical. A case may instead expect a
refusal: then arcfleet must refuse, naming the host and the variable.

ansible-inventory takes about a second per call, so the calls run in a small pool, once per case.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.errors import InventoryError, Problem
from fleet.inventory import load_inventory
from fleet.inventory.ansible_engine import VaultOptions
from fleet.inventory.model import ResolvedHost
from fleet.inventory.regions import normalize_location

CORPUS = Path(__file__).resolve().parent / "ansible_corpus"
CASES = sorted(d.name for d in CORPUS.iterdir() if (d / "case.yaml").is_file())
BIN = Path(sys.executable).parent
ANSIBLE_INVENTORY = BIN / "ansible-inventory"

# arc_* variable -> the resolved field it sets (dotted path in model_dump(mode="json")).
ARC_FIELDS = {
    "arc_resource_group": "azure.resource_group",
    "arc_location": "azure.location",
    "arc_tenant_id": "azure.tenant_id",
    "arc_subscription_id": "azure.subscription_id",
    "arc_resource_name": "azure.resource_name",
    "arc_sp_client_id": "azure.service_principal.client_id",
    "arc_sp_secret_env": "azure.service_principal.secret.env",
    "arc_tags": "azure.tags",
    "arc_winrm_password_env": "winrm.password.env",
    "arc_winrm_password_file": "winrm.password.file",
    "arc_sp_secret_file": "azure.service_principal.secret.file",
    "arc_sp_certificate_file": "azure.service_principal.certificate_file",
    "arc_cloud": "azure.cloud",
    "arc_correlation_id": "azure.correlation_id",
    "arc_private_link_scope": "azure.private_link_scope",
    "arc_gateway_id": "azure.gateway_id",
    "arc_proxy_url": "azure.proxy_url",
    "arc_os": "os",
    "arc_known_hosts": "ssh.known_hosts",
    "arc_connect_timeout_s": "ssh.connect_timeout_s",
    "arc_winrm_allow_basic_over_http": "winrm.allow_basic_over_http",
}
_TRUE = {"y", "yes", "on", "1", "true", "t"}

Outcome = dict[str, ResolvedHost] | list[Problem]


def _meta(case: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CORPUS / case / "case.yaml").read_text())
    return data


def _environment(case: str, scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "ANSIBLE_"))}
    home = scratch / case
    home.mkdir(parents=True, exist_ok=True)
    config = CORPUS / case / "ansible.cfg"
    if not config.is_file():
        config = home / "ansible.cfg"
        config.write_text("")
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "HOME": str(home),  # no ~/.ansible.cfg of this machine
        "ANSIBLE_HOME": str(home / ".ansible"),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_NOCOLOR": "1",
    })
    return env


def _paths(case: str) -> list[Path]:
    return [CORPUS / case / item for item in _meta(case)["inventory"]]


def _vault(case: str) -> VaultOptions:
    name = _meta(case).get("vault_password_file")
    return VaultOptions(password_files=(str(CORPUS / case / name),)) if name else VaultOptions()


def _ansible_list(case: str, env: dict[str, str]) -> dict[str, Any]:
    args = [str(ANSIBLE_INVENTORY), "--list", *[a for p in _paths(case) for a in ("-i", str(p))],
            *_vault(case).args()]
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=CORPUS / case,
                            timeout=300, check=False)
    assert result.returncode == 0, f"{case}: ansible-inventory failed: {result.stderr}"
    listing: dict[str, Any] = json.loads(result.stdout)
    return listing


def _arcfleet(case: str, env: dict[str, str], engine: str) -> Outcome:
    try:
        inventory = load_inventory(_paths(case), env=env, engine=engine, vault=_vault(case))
    except InventoryError as exc:
        return list(exc.problems)
    return {host.name: host for host in inventory.hosts}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    assert ANSIBLE_INVENTORY.is_file(), "ansible-core is missing: pip install -e '.[test]'"
    scratch = tmp_path_factory.mktemp("ansible")
    envs = {case: _environment(case, scratch) for case in CASES}
    with ThreadPoolExecutor(max_workers=3) as pool:
        listings = {case: pool.submit(_ansible_list, case, envs[case]) for case in CASES}
        engines = {case: pool.submit(_arcfleet, case, envs[case], "ansible") for case in CASES
                   if "ansible" in _meta(case)["engines"]}
        yield {
            "env": envs,
            "listing": {case: future.result() for case, future in listings.items()},
            "ansible": {case: future.result() for case, future in engines.items()},
        }


def _ansible_hosts(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names: list[str] = []
    seen: set[str] = set()

    def walk(group: str) -> None:
        if group in seen:
            return
        seen.add(group)
        body = listing.get(group, {})
        names.extend(h for h in body.get("hosts", []) if h not in names)
        for child in body.get("children", []):
            walk(child)

    walk("all")
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    return {name: {k: _plain(v) for k, v in hostvars.get(name, {}).items()} for name in names}


def _plain(value: Any) -> Any:
    """Ansible's JSON marks values it will not template as {"__ansible_unsafe": value}."""
    if isinstance(value, dict) and set(value) == {"__ansible_unsafe"}:
        return _plain(value["__ansible_unsafe"])
    return value


def _last(hv: dict[str, Any], names: list[str]) -> Any:
    found = None
    for name in names:
        if hv.get(name) is not None:
            found = hv[name]
    return found


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _expected(name: str, hv: dict[str, Any]) -> dict[str, Any]:
    """What Ansible's connection plugin would use, from Ansible's own merged variables."""
    conn = str(hv.get("ansible_connection", "ssh"))
    kind = {"winrm": "winrm", "psrp": "psrp"}.get(conn, "ssh")
    out: dict[str, Any] = {"transport": "ssh" if kind == "ssh" else "winrm"}
    out["address"] = str(_last(hv, ["ansible_host", f"ansible_{kind}_host"]) or name)
    port = _last(hv, ["ansible_port", f"ansible_{kind}_port"])
    user = _last(hv, ["ansible_user", f"ansible_{kind}_user"])
    if kind == "ssh":
        out["port"] = int(port or 22)
        if user is not None:
            out["ssh.user"] = str(user)
        if hv.get("ansible_become") is not None:
            out["ssh.become"] = str(hv["ansible_become"]).lower() in _TRUE
        key = _last(hv, ["ansible_private_key_file", "ansible_ssh_private_key_file"])
        if key is not None and Path(str(key)).is_absolute():
            out["ssh.key_file"] = str(key)
        return out
    if user is not None:
        out["winrm.user"] = str(user)
    if kind == "winrm":
        scheme = hv.get("ansible_winrm_scheme") or ("http" if port == 5985 else "https")
        out["port"] = int(port or 5986)
        transport = hv.get("ansible_winrm_transport") or (
            "kerberos" if user and "@" in str(user) else "basic")
        first = (transport if isinstance(transport, list) else str(transport).split(","))[0]
        out["winrm.auth"] = {"ssl": "basic", "plaintext": "basic"}.get(first, first)
        validation = hv.get("ansible_winrm_server_cert_validation", "validate")
    else:
        protocol = hv.get("ansible_psrp_protocol")
        if protocol is None:
            scheme = "http" if port == 5985 else "https"
            out["port"] = int(port or 5986)
        else:
            scheme = protocol
            out["port"] = int(port or (5986 if protocol == "https" else 5985))
        auth = hv.get("ansible_psrp_auth", "negotiate")
        out["winrm.auth"] = "ntlm" if auth == "negotiate" else auth
        validation = hv.get("ansible_psrp_cert_validation", "validate")
    out["winrm.scheme"] = scheme
    out["winrm.cert_validation"] = str(validation) != "ignore"
    return out


def _arc_expected(hv: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, value in hv.items():
        if not var.startswith("arc_"):
            continue
        assert var in ARC_FIELDS, f"the differential test does not compare {var} yet"
        if _templated(value):
            continue
        if var == "arc_location":
            value = normalize_location(str(value))
        elif var == "arc_tags" and isinstance(value, str) and value.startswith("{"):
            value = {str(k): str(v) for k, v in ast.literal_eval(value).items()}
        elif var == "arc_tags" and isinstance(value, str):
            value = dict(item.split("=", 1) for item in value.split(",") if item)
        elif var == "arc_tags":
            value = {str(k): str(v) for k, v in value.items()}
        elif var == "arc_connect_timeout_s":
            value = float(value)
        elif var == "arc_winrm_allow_basic_over_http":
            value = str(value).lower() in _TRUE
        else:
            value = str(value)
        out[ARC_FIELDS[var]] = value
    return out


def _field(dump: dict[str, Any], path: str) -> Any:
    value: Any = dump
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _check_hosts(case: str, engine: str, hosts: dict[str, ResolvedHost],
                 listing: dict[str, Any]) -> None:
    expected_hosts = _ansible_hosts(listing)
    assert sorted(hosts) == sorted(expected_hosts), f"{case} ({engine}): other hosts than Ansible"
    extra = _meta(case).get("expect", {})
    for name, hv in expected_hosts.items():
        dump = hosts[name].model_dump(mode="json")
        wanted = {**_expected(name, hv), **_arc_expected(hv), **extra.get(name, {})}
        differences = {path: (_field(dump, path), value) for path, value in wanted.items()
                       if _field(dump, path) != value}
        assert not differences, f"{case} ({engine}) host {name}: arcfleet vs Ansible " \
                                f"{differences}"


def _check_refusal(case: str, engine: str, outcome: Outcome,
                   refusals: list[dict[str, Any]]) -> None:
    assert isinstance(outcome, list), f"{case} ({engine}): expected a refusal, got hosts"
    for wanted in refusals:
        hits = [p for p in outcome if p.host == wanted["host"]
                and wanted["field"] in (p.field or "")]
        assert hits, f"{case} ({engine}): no refusal of {wanted}; got {outcome}"


@pytest.mark.parametrize("case", CASES)
def test_arcfleet_reads_the_inventory_as_ansible_does(case: str, results: dict[str, Any]) -> None:
    meta = _meta(case)
    listing = results["listing"][case]
    outcomes: dict[str, Outcome] = {}
    for engine in meta["engines"]:
        outcome = results["ansible"][case] if engine == "ansible" else \
            _arcfleet(case, results["env"][case], "native")
        outcomes[engine] = outcome
        refusals = meta.get("refuse")
        if isinstance(refusals, dict):
            refusals = refusals.get(engine)
        if refusals:
            _check_refusal(case, engine, outcome, refusals)
            continue
        assert isinstance(outcome, dict), f"{case} ({engine}) refused: {outcome}"
        _check_hosts(case, engine, outcome, listing)
    native, ansible = outcomes.get("native"), outcomes.get("ansible")
    if isinstance(native, dict) and isinstance(ansible, dict):
        assert _comparable(native) == _comparable(ansible), \
            f"{case}: the native and ansible engines disagree"


def _comparable(hosts: dict[str, ResolvedHost]) -> dict[str, Any]:
    """Resolved hosts minus what only says where they were read from; groups as a set (their
    order follows ansible_group_priority, which ansible-inventory does not print)."""
    out: dict[str, Any] = {}
    for name, host in hosts.items():
        dump = host.model_dump(mode="json", exclude={"source": True})
        dump["groups"] = sorted(dump["groups"])
        out[name] = dump
    return out


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    kinds = " ".join(CASES)
    for needed in ("ini", "yaml", "group-vars", "children", "priority", "ranges", "vault",
                   "constructed", "ansible-cfg", "jinja", "script"):
        assert needed in kinds, f"the corpus has no {needed} case"
