"""Every validation rule: one failing example each; the problem names file, host and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inventory_util import CLIENT, SUB, TENANT, arcfleet, load, one_problem, problems_of, write

WIN = "transport: winrm, winrm: {user: u, password: {env: PW}}"

# (host settings in flow YAML, expected field, a word the message must contain)
HOST_RULES = [
    ("azure: {tags: {'a/b': x}}", "azure.tags", "forbidden"),
    ("azure: {tags: {ok: '" + "v" * 257 + "'}}", "azure.tags", "256"),
    ("azure: {tags: {" + ", ".join(f"t{i}: v" for i in range(51)) + "}}", "azure.tags", "50"),
    ("azure: {tags: {'': v}}", "azure.tags", "empty"),
    ("azure: {tags: {a: \"it's\"}}", "azure.tags", "forbidden"),
    # The agent's --tags syntax quotes with '"' (docs/inventory.md): refused where it is read.
    ("azure: {tags: {a: 'say \"hi\"'}}", "azure.tags", "forbidden"),
    ("azure: {cloud: AzureMoon}", "azure.cloud", "AzureCloud"),
    ("azure: {tenant_id: not-a-guid}", "azure.tenant_id", "GUID"),
    ("azure: {subscription_id: My Subscription}", "azure.subscription_id", "GUID"),
    ("azure: {correlation_id: '1234'}", "azure.correlation_id", "GUID"),
    ("azure: {service_principal: {client_id: app-name, secret: {env: X}}}",
     "azure.service_principal.client_id", "GUID"),
    ("azure: {resource_name: 'web.example'}", "azure.resource_name", "hyphens"),
    ("azure: {resource_name: 'web-'}", "azure.resource_name", "end"),
    ("azure: {resource_name: web_}", "azure.resource_name", "end"),
    ("azure: {resource_name: " + "a" * 55 + "}", "azure.resource_name", "54"),
    ("azure: {location: west-europe}", "azure.location", "region name"),
    ("azure: {location: usgovvirginia}", "azure.location", "AzureCloud"),
    ("azure: {resource_group: 'rg/bad'}", "azure.resource_group", "resource group"),
    ("azure: {resource_group: 'rg.'}", "azure.resource_group", "resource group"),
    ("azure: {private_link_scope: /subscriptions/x}", "azure.private_link_scope", "ARM"),
    ("azure: {gateway_id: 'gw1'}", "azure.gateway_id", "ARM"),
    ("azure: {proxy_url: 'proxy:3128'}", "azure.proxy_url", "http"),
    ("azure: {service_principal: {client_id: " + CLIENT + "}}", "azure.service_principal",
     "exactly one"),
    ("azure: {service_principal: {client_id: " + CLIENT
     + ", secret: {env: A}, certificate_file: c}}", "azure.service_principal", "exactly one"),
    ("azure: {service_principal: {client_id: " + CLIENT + ", secret: {env: A, file: f}}}",
     "azure.service_principal.secret", "exactly one"),
    ("ssh: {user: ''}", "ssh.user", "empty"),
    ("ssh: {jump_hosts: ['a b']}", "ssh.jump_hosts", "jump host"),
    ("ssh: {connect_timeout_s: 0}", "ssh.connect_timeout_s", "greater"),
    ("port: 70000", "port", "65535"),
    ("transport: telnet", "transport", "ssh"),
    ("address: 'a b'", "address", "whitespace"),
    ("transport: winrm, winrm: {password: {env: PW}}", "winrm.user", "user"),
    ("transport: winrm, winrm: {user: u}", "winrm.password", "password"),
    (WIN + ", os: linux", "os", "Windows"),
    ("transport: winrm, winrm: {user: u, password: {env: PW}, auth: basic, scheme: http}",
     "winrm.auth", "http"),
    ("winrm: {auth: digest}", "winrm.auth", "ntlm"),
    ("ssh: {password: hunter2x}", "ssh.password", "literal secret"),
]


@pytest.mark.parametrize(("settings", "field", "word"), HOST_RULES,
                         ids=[f"{r[1]}-{i}" for i, r in enumerate(HOST_RULES)])
def test_host_rule(tmp_path: Path, settings: str, field: str, word: str) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(f"hosts:\n  good: {{}}\n  h1: {{{settings}}}\n"))
    problem = one_problem(path)
    assert (problem.file, problem.host, problem.field) == (str(path), "h1", field)
    assert word.lower() in problem.message.lower(), problem.message
    assert str(path) in str(problem) and "host h1" in str(problem)
    assert "hunter2x" not in str(problem)


def test_basic_over_http_allowed_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        "hosts:\n  h1: {transport: winrm, winrm: {user: u, password: {env: PW}, auth: basic, "
        "scheme: http, allow_basic_over_http: true}}\n"))
    assert load(path).hosts[0].winrm.allow_basic_over_http is True


@pytest.mark.parametrize("missing", ["tenant_id", "subscription_id", "resource_group",
                                     "location"])
def test_required_azure_fields(tmp_path: Path, missing: str) -> None:
    text = "\n".join(line for line in arcfleet("hosts:\n  h1: {}\n").splitlines()
                     if not line.strip().startswith(f"{missing}:")) + "\n"
    problem = one_problem(write(tmp_path, "inv.yaml", text))
    assert (problem.host, problem.field) == ("h1", f"azure.{missing}")


def test_ssh_user_required(tmp_path: Path) -> None:
    text = arcfleet("hosts:\n  h1: {}\n").replace("  ssh: {user: arc}\n", "")
    problem = one_problem(write(tmp_path, "inv.yaml", text))
    assert (problem.host, problem.field) == ("h1", "ssh.user")


def test_defaults_and_group_errors_name_their_place(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        "groups:\n  g: {azure: {location: no-where}, hosts: [h1]}\nhosts:\n  h1: {}\n",
        defaults_extra="  port: 0\n"))
    fields = {(p.host, p.field) for p in problems_of(path)}
    assert fields == {(None, "defaults.port"), (None, "groups.g.azure.location")}


def test_duplicate_host_within_one_file(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet("hosts:\n  h1: {}\n  h2: {}\n  h1: {port: 2}\n"))
    problem = one_problem(path)
    assert (problem.file, problem.host, problem.field) == (str(path), "h1", "hosts")
    assert "twice" in problem.message


def test_duplicate_address_and_port(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        "hosts:\n  a: {address: 10.0.0.1}\n  b: {address: 10.0.0.1}\n"
        "  c: {address: 10.0.0.1, port: 2222}\n"))
    problem = one_problem(path)
    assert (problem.host, problem.field) == ("b", "address") and "'a'" in problem.message


def test_duplicate_address_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", arcfleet("hosts:\n  a: {address: 10.0.0.1}\n"))
    second = write(tmp_path, "b.yaml", "arcfleet: 1\nhosts:\n  b: {address: 10.0.0.1}\n")
    problem = one_problem(first, second)
    assert (problem.file, problem.host, problem.field) == (str(second), "b", "address")


def test_resource_name_collision_same_group(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        "hosts:\n  web1.eu.example.com: {}\n  WEB1.us.example.com: {}\n"
        "  other: {azure: {resource_name: web1, resource_group: rg-other}}\n"))
    problem = one_problem(path)
    assert (problem.host, problem.field) == ("WEB1.us.example.com", "azure.resource_name")
    assert "AZCM0044" in problem.message


def test_invalid_host_name_as_resource_name(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet("hosts:\n  'bad!name': {address: 10.0.0.1}\n"))
    problem = one_problem(path)
    assert (problem.host, problem.field) == ("bad!name", "azure.resource_name")
    path = write(tmp_path, "inv2.yaml", arcfleet("hosts:\n  'two words': {azure: "
                                                 "{resource_name: ok}}\n"))
    problem = one_problem(path)
    assert (problem.host, problem.field) == ("two words", "name")


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        "hosts:\n  a: {azure: {location: x}}\n  b: {port: -1}\n  c: {ssh: {nope: 1}}\n"))
    bad = write(tmp_path, "bad.ini", "[g\n")
    problems = problems_of(path, bad)
    assert {p.host for p in problems} == {"a", "b", "c", None}
    assert any(p.file == str(bad) for p in problems)


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00abc")
    latin = tmp_path / "latin"
    latin.write_bytes(b"h\xe9llo\n")
    problems = problems_of(missing, binary, latin)
    assert [p.file for p in problems] == [str(missing), str(binary), str(latin)]


def test_empty_inventory(tmp_path: Path) -> None:
    problem = one_problem(write(tmp_path, "empty", "# nothing\n"))
    assert "no hosts" in problem.message


def test_group_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[a:children]\nb\n[b:children]\na\n[a]\nh1\n")
    assert any("cycle" in p.message for p in problems_of(path))


def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[web]\n\x1b[31mevil\x07 ansible_port=x\n")
    problems = problems_of(path)
    text = "\n".join(str(p) for p in problems)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[31mevil\\x07" in text


def test_same_problem_on_many_hosts_is_summarised(tmp_path: Path) -> None:
    hosts = "".join(f"h{i:02d}\n" for i in range(25))
    path = write(tmp_path, "hosts", f"[web]\n{hosts}[web:vars]\nansible_user=arc\n")
    env = {"AZURE_TENANT_ID": TENANT, "AZURE_SUBSCRIPTION_ID": SUB, "AZURE_CLIENT_ID": CLIENT,
           "AZURE_CLIENT_SECRET": "x"}
    problems = problems_of(path, env=env, azure_overrides={"resource_group": "rg"})
    assert [p.host for p in problems[:10]] == [f"h{i:02d}" for i in range(10)]
    assert len(problems) == 11 and problems[10].host is None
    assert problems[10].field == "azure.location (arc_location)"
    assert "15 more hosts" in problems[10].message
