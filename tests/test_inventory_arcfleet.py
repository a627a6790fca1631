"""arcfleet YAML format: inheritance, merging, paths, secrets, env fallback, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inventory_util import CLIENT, SUB, TENANT, arcfleet, load, one_problem, problems_of, write

from fleet.inventory.loader import detect_format
from fleet.inventory.model import Cloud, OsFamily, Transport


def test_inheritance_scalars_override_and_tags_merge(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        """\
groups:
  web:
    port: 2200
    ssh: {become: true}
    azure: {tags: {role: web, owner: web-team}, resource_group: rg-web}
hosts:
  web1:
    groups: [web]
    ssh: {user: root}
    azure: {tags: {owner: alice}}
  db1: {address: 10.0.0.9}
""",
        defaults_extra="  port: 22\n",
    ).replace("    location: westeurope\n", "    location: westeurope\n    tags: {env: prod}\n"))
    inv = load(path)
    web1, db1 = inv.hosts
    assert web1.port == 2200 and db1.port == 22
    assert web1.ssh.user == "root" and db1.ssh.user == "arc"
    assert web1.ssh.become is True and db1.ssh.become is False
    assert web1.azure.tags == {"env": "prod", "role": "web", "owner": "alice"}
    assert db1.azure.tags == {"env": "prod"}
    assert web1.azure.resource_group == "rg-web"
    assert db1.azure.resource_group == "rg-arc"
    assert web1.azure.tenant_id == TENANT
    assert db1.address == "10.0.0.9" and web1.address == "web1"
    assert web1.groups == ("web",)


def test_group_order_parents_before_children_then_name(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        """\
groups:
  parent: {children: [child], port: 1000, azure: {tags: {t: parent}}}
  child: {port: 2000}
  alpha: {port: 3000, azure: {tags: {t: alpha}}}
  zulu: {port: 4000}
hosts:
  h1: {groups: [child]}
  h2: {groups: [zulu, alpha]}
  h3: {groups: [child, alpha]}
"""))
    inv = load(path)
    by = inv.by_name()
    assert by["h1"].port == 2000  # child (depth 2) after parent (depth 1)
    assert by["h2"].port == 4000  # same depth: alphabetical, zulu last
    # h3: alpha and parent are depth 1 (alpha before parent), child depth 2 last.
    assert by["h3"].port == 2000
    assert by["h3"].azure.tags["t"] == "parent"
    assert inv.groups["parent"] == ["h1", "h3"]
    assert inv.groups["all"] == ["h1", "h2", "h3"]


def test_group_hosts_list_and_nested_children(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        """\
groups:
  web: {children: [web-eu, web-us], hosts: [w0]}
  web-eu: {children: [web-eu-west], hosts: [w1]}
  web-us: {hosts: [w2]}
  web-eu-west: {hosts: [w3], azure: {location: northeurope}}
hosts: {w0: {}, w1: {}, w2: {}, w3: {}}
"""))
    inv = load(path)
    assert inv.groups["web"] == ["w0", "w1", "w2", "w3"]
    assert inv.groups["web-eu"] == ["w1", "w3"]
    assert inv.by_name()["w3"].azure.location == "northeurope"
    assert set(inv.by_name()["w3"].groups) == {"web", "web-eu", "web-eu-west"}


def test_nested_blocks_merge_key_by_key_and_sp_replaced_whole(tmp_path: Path) -> None:
    cert = "certificate_file: sp.pem"
    path = write(tmp_path, "inv.yaml", arcfleet(
        f"""\
groups:
  certs:
    azure: {{service_principal: {{client_id: {CLIENT}, {cert}}}}}
hosts:
  h1: {{groups: [certs], ssh: {{key_file: k}}}}
"""))
    host = load(path).hosts[0]
    assert host.ssh.user == "arc" and host.ssh.key_file == tmp_path / "k"
    sp = host.azure.service_principal
    assert sp is not None and sp.secret is None and sp.certificate_file == tmp_path / "sp.pem"


def test_relative_paths_resolve_against_file_dir(tmp_path: Path) -> None:
    path = write(tmp_path, "sub/inv.yaml", arcfleet(
        "hosts:\n  h1:\n    ssh: {key_file: keys/id, known_hosts: kh}\n"
    ).replace("secret: {env: ARC_SP_SECRET}", "secret: {file: sp.txt}"))
    host = load(path).hosts[0]
    base = tmp_path / "sub"
    assert host.ssh.key_file == base / "keys/id"
    assert host.ssh.known_hosts == base / "kh"
    assert host.azure.service_principal is not None
    assert host.azure.service_principal.secret is not None
    assert host.azure.service_principal.secret.file == base / "sp.txt"


def test_winrm_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        """\
groups:
  win:
    transport: winrm
    winrm: {user: 'CORP\\arcsvc', password: {env: WINPW}}
  plain:
    winrm: {scheme: http}
hosts:
  w1: {groups: [win]}
  w2: {groups: [win, plain]}
"""))
    by = load(path).by_name()
    assert by["w1"].transport is Transport.WINRM and by["w1"].os is OsFamily.WINDOWS
    assert by["w1"].port == 5986 and by["w2"].port == 5985
    assert by["w1"].winrm.user == "CORP\\arcsvc"
    assert by["w1"].winrm.password is not None and by["w1"].winrm.password.env == "WINPW"


@pytest.mark.parametrize(
    ("snippet", "field"),
    [
        ("azure: {service_principal: {client_id: " + CLIENT + ", secret: 'S3cr3t-Literal'}}",
         "azure.service_principal.secret"),
        ("azure: {service_principal: {client_id: " + CLIENT + ", client_secret: 'S3cr3t-Literal'}}",
         "azure.service_principal"),
        ("winrm: {password: 'S3cr3t-Literal'}", "winrm.password"),
        ("winrm: {password: {value: 'S3cr3t-Literal'}}", "winrm.password"),
    ],
)
def test_literal_secret_refused_without_echo(tmp_path: Path, snippet: str, field: str) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(f"hosts:\n  h1: {{{snippet}}}\n"))
    problems = problems_of(path)
    text = "\n".join(str(p) for p in problems)
    assert "S3cr3t-Literal" not in text
    match = [p for p in problems if p.field == field]
    assert match, text
    assert match[0].host == "h1" and match[0].file == str(path)
    assert "{env: VARIABLE_NAME} or {file: PATH}" in match[0].message


def test_yaml_syntax_error_does_not_echo_line(tmp_path: Path) -> None:
    text = "arcfleet: 1\nhosts:\n  h1: {winrm: {password: 'S3cr3t-Lit\n"
    path = write(tmp_path, "inv.yaml", text)
    problem = one_problem(path)
    assert "S3cr3t" not in str(problem)
    assert problem.file == str(path) and "line" in problem.message


def test_env_fallback_without_service_principal(tmp_path: Path) -> None:
    text = (
        "arcfleet: 1\ndefaults:\n  ssh: {user: arc}\n  azure: {resource_group: rg, "
        "location: westeurope}\nhosts:\n  h1: {}\n  h2: {azure: {tenant_id: "
        "99999999-2222-3333-4444-555555555555}}\n"
    )
    path = write(tmp_path, "inv.yaml", text)
    env = {"AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": "not-read-here",
           "AZURE_TENANT_ID": TENANT, "AZURE_SUBSCRIPTION_ID": SUB}
    by = load(path, env=env).by_name()
    sp = by["h1"].azure.service_principal
    assert sp is not None and sp.client_id == CLIENT
    assert sp.secret is not None and sp.secret.env == "AZURE_CLIENT_SECRET"
    assert by["h1"].azure.tenant_id == TENANT and by["h1"].azure.subscription_id == SUB
    assert by["h2"].azure.tenant_id == "99999999-2222-3333-4444-555555555555"
    cert_env = {"AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_CERTIFICATE_PATH": "/etc/sp.pem",
                "AZURE_TENANT_ID": TENANT, "AZURE_SUBSCRIPTION_ID": SUB}
    sp2 = load(path, env=cert_env).hosts[0].azure.service_principal
    assert sp2 is not None and sp2.certificate_file == Path("/etc/sp.pem") and sp2.secret is None


def test_env_fallback_not_used_when_inventory_names_a_principal(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet("hosts:\n  h1: {}\n"))
    env = {"AZURE_CLIENT_ID": "bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee", "AZURE_CLIENT_SECRET": "x"}
    sp = load(path, env=env).hosts[0].azure.service_principal
    assert sp is not None and sp.client_id == CLIENT


def test_env_fallback_bad_guid_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet("hosts:\n  h1: {}\n"))
    problem = one_problem(path, env={"AZURE_TENANT_ID": "nope"})
    assert (problem.file, problem.field) == ("<environment>", "AZURE_TENANT_ID")


def test_missing_service_principal_everywhere(tmp_path: Path) -> None:
    text = arcfleet("hosts:\n  h1: {}\n").replace(
        f"    service_principal:\n      client_id: {CLIENT}\n"
        "      secret: {env: ARC_SP_SECRET}\n", "")
    problem = one_problem(write(tmp_path, "inv.yaml", text))
    assert (problem.host, problem.field) == ("h1", "azure.service_principal")


def test_azure_overrides_win_and_tags_merge(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet("hosts:\n  h1: {azure: {tags: {a: '1'}}}\n"))
    host = load(path, azure_overrides={
        "location": "eastus", "resource_group": "rg-cli", "tags": {"b": "2"}, "cloud": None,
    }).hosts[0]
    assert host.azure.location == "eastus" and host.azure.resource_group == "rg-cli"
    assert host.azure.tags == {"a": "1", "b": "2"}
    problem = one_problem(path, azure_overrides={"subscription_id": "bad"})
    assert (problem.file, problem.field) == ("<command line>", "subscription_id")


def test_cloud_and_location_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        "hosts:\n  h1: {azure: {cloud: azureusgovernment, location: US Gov Virginia}}\n"))
    host = load(path).hosts[0]
    assert host.azure.cloud is Cloud.US_GOVERNMENT and host.azure.location == "usgovvirginia"


def test_resource_name_derived_from_fqdn_and_ip(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        "hosts:\n  web1.example.com: {}\n  10.1.2.3: {}\n  plain_name: {}\n"))
    names = [h.resource_name for h in load(path).hosts]
    assert names == ["web1", "10-1-2-3", "plain_name"]


def test_multiple_files_merge_later_wins(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", arcfleet(
        "groups:\n  g1: {hosts: [h1]}\nhosts:\n  h1: {port: 1, azure: {tags: {x: a}}}\n"))
    second = write(tmp_path, "b/b.yaml",
                   "arcfleet: 1\ngroups:\n  g2: {hosts: [h1]}\nhosts:\n  h1: {port: 2}\n")
    inv = load(first, second)
    host = inv.hosts[0]
    assert host.port == 2 and set(host.groups) == {"g1", "g2"}
    assert host.azure.tags == {"x": "a"} and host.source == str(second)
    assert inv.sources == [str(first), str(second)]
    assert len(inv.digest) == 64 and inv.digest == load(first, second).digest
    assert inv.digest != load(second, first).digest


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet("hosts:\n  h1: {ssh: {usr: x}}\n"))
    problem = one_problem(path)
    assert (problem.host, problem.field) == ("h1", "ssh.usr")
    assert "unknown field" in problem.message


def test_undefined_references(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        "groups:\n  g: {hosts: [ghost], children: [nochild]}\nhosts:\n  h1: {groups: [nogroup]}\n"
    ))
    fields = {(p.host, p.field) for p in problems_of(path)}
    assert fields == {(None, "groups.g.hosts"), (None, "groups.g.children"), ("h1", "groups")}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("arcfleet: 1\nhosts: {}\n", "arcfleet"),
        ("all:\n  hosts:\n    h1:\n", "ansible-yaml"),
        ("[web]\nh1\n", "ansible-ini"),
        ("h1\nh2 ansible_port=22\n", "ansible-ini"),
        ("web:\n  children:\n    x:\n", "ansible-yaml"),
    ],
)
def test_detect_format_from_content(tmp_path: Path, text: str, expected: str) -> None:
    assert detect_format(text, tmp_path / "inventory") == expected
