"""Ansible INI and YAML inventories: every supported variable, children, ranges, vars dirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from _inventory_util import (
    ARC_VARS_INI,
    ARC_VARS_YAML,
    CLIENT,
    load,
    one_problem,
    problems_of,
    write,
)

from fleet.inventory.model import ResolvedHost, Transport

# (INI value, YAML value, check on the resolved host)
CASES: dict[str, tuple[str, Any, Any]] = {
    "ansible_host": ("10.9.9.9", "10.9.9.9", lambda h: h.address == "10.9.9.9"),
    "ansible_port": ("2222", 2222, lambda h: h.port == 2222),
    "ansible_user": ("deploy", "deploy", lambda h: h.ssh.user == "deploy"),
    "ansible_ssh_private_key_file": ("keys/id", "keys/id",
                                     lambda h: h.ssh.key_file.name == "id"
                                     and h.ssh.key_file.is_absolute()),
    "ansible_become": ("true", True, lambda h: h.ssh.become is True),
    "ansible_ssh_common_args": ("'-o ProxyJump=a.example,ops@b:2222 -o StrictHostKeyChecking=no'",
                                "-o ProxyJump=a.example,ops@b:2222",
                                lambda h: h.ssh.jump_hosts == ("a.example", "ops@b:2222")),
    "arc_resource_name": ("custom-name", "custom-name",
                          lambda h: h.azure.resource_name == "custom-name"),
    "arc_tags": ("'env=prod,team=ops'", {"env": "prod", "team": "ops"},
                 lambda h: h.azure.tags == {"env": "prod", "team": "ops"}),
    "arc_location": ("northeurope", "northeurope", lambda h: h.azure.location == "northeurope"),
    "arc_resource_group": ("rg-other", "rg-other",
                           lambda h: h.azure.resource_group == "rg-other"),
    "arc_correlation_id": (CLIENT, CLIENT, lambda h: h.azure.correlation_id == CLIENT),
    "arc_proxy_url": ("http://proxy:3128", "http://proxy:3128",
                      lambda h: h.azure.proxy_url == "http://proxy:3128"),
    "arc_connect_timeout_s": ("30", 30, lambda h: h.ssh.connect_timeout_s == 30.0),
}

WINRM_BASE = {"ansible_connection": "winrm", "arc_winrm_password_env": "WINPW",
              "ansible_winrm_transport": "ntlm"}
WINRM_CASES: dict[str, tuple[str, Any, Any]] = {
    "ansible_connection": ("psrp", "psrp", lambda h: h.transport is Transport.WINRM),
    "ansible_winrm_transport": ("ssl", "ssl", lambda h: h.winrm.auth == "basic"),
    # Ansible's winrm plugin keeps its default port 5986 whatever the scheme...
    "ansible_winrm_scheme": ("http", "http", lambda h: h.winrm.scheme == "http"
                             and h.port == 5986),
    # ...and port 5985 alone means http.
    "ansible_port": ("5985", 5985, lambda h: h.winrm.scheme == "http" and h.port == 5985),
    "ansible_winrm_server_cert_validation": ("ignore", "ignore",
                                             lambda h: h.winrm.cert_validation is False),
    "arc_winrm_password_file": ("pw.txt", "pw.txt",
                                lambda h: h.winrm.password.file.name == "pw.txt"),
    "ansible_password": ("\"{{ lookup('env', 'MYPW') }}\"", "{{ lookup('env', 'MYPW') }}",
                         lambda h: h.winrm.password.env == "MYPW"),
}


def _ini(tmp_path: Path, host_vars: dict[str, str]) -> ResolvedHost:
    line = "h1 " + " ".join(f"{k}={v}" for k, v in host_vars.items())
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[grp]\n{line}\n")
    return load(path).hosts[0]


def _yaml(tmp_path: Path, host_vars: dict[str, Any]) -> ResolvedHost:
    doc = {"all": {"vars": ARC_VARS_YAML, "children": {"grp": {"hosts": {"h1": host_vars}}}}}
    path = write(tmp_path, "inv.yml", yaml.safe_dump(doc, sort_keys=False))
    return load(path).hosts[0]


@pytest.mark.parametrize("var", sorted(CASES))
def test_variable_from_ini_and_yaml(tmp_path: Path, var: str) -> None:
    ini_value, yaml_value, check = CASES[var]
    assert check(_ini(tmp_path / "ini", {var: ini_value}))
    assert check(_yaml(tmp_path / "yaml", {var: yaml_value}))


@pytest.mark.parametrize("var", sorted(WINRM_CASES))
def test_winrm_variable_from_ini_and_yaml(tmp_path: Path, var: str) -> None:
    ini_value, yaml_value, check = WINRM_CASES[var]
    base = dict(WINRM_BASE)
    if var == "ansible_password" or var == "arc_winrm_password_file":
        base.pop("arc_winrm_password_env")
    host_ini = _ini(tmp_path / "ini", {**base, var: ini_value})
    host_yaml = _yaml(tmp_path / "yaml", {**base, var: yaml_value})
    for host in (host_ini, host_yaml):
        assert host.transport is Transport.WINRM and check(host)


def test_ssh_extra_forms(tmp_path: Path) -> None:
    host = _ini(tmp_path, {"ansible_ssh_common_args":
                           "'-J jump1 -o UserKnownHostsFile=kh -o ConnectTimeout=7'"})
    assert host.ssh.jump_hosts == ("jump1",)
    assert host.ssh.known_hosts == tmp_path / "kh" and host.ssh.connect_timeout_s == 7
    host2 = _yaml(tmp_path / "y", {"ansible_ssh_common_args":
                                   "-o ProxyCommand=\"ssh -W %h:%p -q ops@bastion -p 2200\""})
    assert host2.ssh.jump_hosts == ("ops@bastion:2200",)


@pytest.mark.parametrize("var", ["ansible_password", "ansible_winrm_password"])
def test_literal_password_refused(tmp_path: Path, var: str) -> None:
    path = write(tmp_path, "hosts",
                 f"{ARC_VARS_INI}\n[w]\nh1 ansible_connection=winrm {var}=Hunter2Secret\n")
    problems = problems_of(path)
    text = "\n".join(str(p) for p in problems)
    assert "Hunter2Secret" not in text
    hit = [p for p in problems if p.field == var]
    assert hit and hit[0].host == "h1" and "arc_winrm_password_env" in hit[0].message
    doc = {"all": {"vars": ARC_VARS_YAML, "hosts": {"h1": {var: "Hunter2Secret"}}}}
    problems = problems_of(write(tmp_path, "y.yml", yaml.safe_dump(doc, sort_keys=False)))
    assert "Hunter2Secret" not in "\n".join(str(p) for p in problems)
    assert any(p.field == var and p.host == "h1" for p in problems)


def test_vault_value_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yml", "all:\n  hosts:\n    h1:\n      ansible_password: !vault |\n"
                 "        $ANSIBLE_VAULT;1.1;AES256\n        6162\n")
    problem = next(p for p in problems_of(path) if p.field == "ansible_password")
    assert "vault" in problem.message


def test_unknown_arc_var_is_error_unknown_ansible_var_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts",
                 f"{ARC_VARS_INI}\n[g]\nh1 ansible_python_interpreter=/usr/bin/python3 "
                 "arc_lcation=westeurope\n")
    problem = one_problem(path)
    assert (problem.host, problem.field) == ("h1", "arc_lcation")
    path = write(tmp_path, "hosts2", f"{ARC_VARS_INI}\n[g]\nh1 ansible_shell_type=sh\n")
    assert load(path).hosts[0].name == "h1"


def test_ini_groups_children_vars_and_ranges(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", f"""\
loose.example.com
{ARC_VARS_INI}
[web]
web[01:03].example.com
web-x:2201 ansible_host=10.0.0.50

[db]
db-[a:b]

[eu:children]
web
eu-west

[eu-west]
euw1

[eu:vars]
arc_location=northeurope
arc_tags=zone=eu

[web:vars]
ansible_port=2200
arc_tags="role=web"
""")
    inv = load(path)
    names = [h.name for h in inv.hosts]
    assert names == ["loose.example.com", "web01.example.com", "web02.example.com",
                     "web03.example.com", "web-x", "db-a", "db-b", "euw1"]
    assert inv.groups["eu"] == ["web01.example.com", "web02.example.com", "web03.example.com",
                                "web-x", "euw1"]
    assert inv.groups["ungrouped"] == ["loose.example.com"]
    by = inv.by_name()
    assert by["web01.example.com"].port == 2200
    assert by["web-x"].port == 2201 and by["web-x"].address == "10.0.0.50"
    assert by["web02.example.com"].azure.location == "northeurope"
    # arc_tags replaces as a whole, as Ansible's default hash_behaviour does.
    assert by["web02.example.com"].azure.tags == {"role": "web"}
    assert by["db-a"].azure.location == "westeurope"
    assert by["web01.example.com"].resource_name == "web01"


def test_yaml_nested_children(tmp_path: Path) -> None:
    doc = {"all": {"vars": ARC_VARS_YAML, "children": {
        "prod": {"vars": {"arc_tags": {"env": "prod"}}, "children": {
            "web": {"hosts": {"w1": None, "w[2:3]": {"ansible_port": 2022}},
                    "vars": {"arc_tags": {"role": "web"}}},
            "db": {"hosts": {"d1": {"arc_tags": {"env": "dbprod"}}}},
        }},
    }}}
    inv = load(write(tmp_path, "inv.yaml", yaml.safe_dump(doc, sort_keys=False)))
    by = inv.by_name()
    assert inv.groups["prod"] == ["w1", "w2", "w3", "d1"]
    assert by["w1"].azure.tags == {"role": "web"}  # the child group's replaces the parent's
    assert by["w3"].port == 2022
    assert by["d1"].azure.tags == {"env": "dbprod"}
    assert set(by["w1"].groups) == {"prod", "web"}


def test_group_vars_and_host_vars_dirs(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[web]\nw1\nw2\n")
    write(tmp_path, "group_vars/all.yml", yaml.safe_dump(ARC_VARS_YAML))
    write(tmp_path, "group_vars/web/main.yaml", "arc_tags: {role: web}\nansible_port: 2200\n")
    write(tmp_path, "host_vars/w2.yml", "ansible_host: 10.0.0.2\narc_tags: {owner: bob}\n")
    by = load(path).by_name()
    assert by["w1"].port == 2200 and by["w1"].azure.tags == {"role": "web"}
    assert by["w2"].address == "10.0.0.2"
    assert by["w2"].azure.tags == {"owner": "bob"}


def test_two_ansible_files_merge(tmp_path: Path) -> None:
    first = write(tmp_path, "a.ini", f"{ARC_VARS_INI}\n[web]\nh1 ansible_port=1\n")
    second = write(tmp_path, "b.ini", "[db]\nh1 ansible_port=2\nh2\n")
    inv = load(first, second)
    by = inv.by_name()
    assert by["h1"].port == 2 and set(by["h1"].groups) == {"web", "db"}
    assert [h.name for h in inv.hosts] == ["h1", "h2"]


def test_ini_duplicate_host_in_section(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[web]\nh1\nh1 ansible_port=2\n")
    problem = one_problem(path)
    assert problem.host == "h1" and problem.field == "[web]" and "twice" in problem.message


def test_yaml_duplicate_host_key(tmp_path: Path) -> None:
    text = "all:\n  hosts:\n    h1: {ansible_port: 1}\n    h1: {ansible_port: 2}\n"
    problem = next(p for p in problems_of(write(tmp_path, "i.yml", text)) if p.host == "h1")
    assert "twice" in problem.message


def test_unsupported_connection(tmp_path: Path) -> None:
    problem = one_problem(write(tmp_path, "hosts",
                                f"{ARC_VARS_INI}\n[g]\nh1 ansible_connection=docker\n"))
    assert (problem.host, problem.field) == ("h1", "ansible_connection")


def test_bad_value_names_ansible_variable(tmp_path: Path) -> None:
    problem = one_problem(write(tmp_path, "hosts",
                                f"{ARC_VARS_INI}\n[g]\nh1 arc_location=west_europe\n"))
    assert (problem.host, problem.field) == ("h1", "arc_location")
    problem = one_problem(write(tmp_path, "h2", f"{ARC_VARS_INI}\n[g]\nh1\n[g:vars]\n"
                                "arc_resource_group=bad/rg\n"))
    assert problem.field == "[g:vars] arc_resource_group" and problem.file.endswith("h2")


def test_inventory_directory(tmp_path: Path) -> None:
    write(tmp_path, "inv/01-hosts.ini", "[web]\nw1\n")
    write(tmp_path, "inv/02-more.yml", "all:\n  children:\n    db:\n      hosts:\n        d1:\n")
    write(tmp_path, "inv/group_vars/all.yml", yaml.safe_dump(ARC_VARS_YAML))
    write(tmp_path, "inv/notes.md", "# not an inventory [\n")
    inv = load(tmp_path / "inv")
    assert [h.name for h in inv.hosts] == ["w1", "d1"]
    assert inv.by_name()["d1"].azure.location == "westeurope"


def test_group_priority_orders_same_depth_groups(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", f"""\
{ARC_VARS_INI}
[alpha]
h1
[zulu]
h1
[alpha:vars]
ansible_port=1001
ansible_group_priority=10
[zulu:vars]
ansible_port=1002
""")
    assert load(path).hosts[0].port == 1001  # alpha's higher priority beats zulu's name


def test_ini_tags_dict_literal_and_ipv6_host(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[g]\nfd00::5 arc_tags=\"{{'a': 'b'}}\" "
                 "arc_resource_name=v6host\n")
    host = load(path).hosts[0]
    assert host.name == "fd00::5" and host.address == "fd00::5" and host.port == 22
    assert host.azure.tags == {"a": "b"}


def test_sp_certificate_from_arc_vars(tmp_path: Path) -> None:
    text = ARC_VARS_INI.replace("arc_sp_secret_env=ARC_SP_SECRET", "arc_sp_certificate_file=sp.pem")
    host = load(write(tmp_path, "hosts", f"{text}\n[g]\nh1\n")).hosts[0]
    sp = host.azure.service_principal
    assert sp is not None and sp.certificate_file == tmp_path / "sp.pem" and sp.client_id == CLIENT


def test_sp_with_two_credentials_names_the_variable(tmp_path: Path) -> None:
    text = ARC_VARS_INI + "arc_sp_secret_file=sp.txt\n"
    problem = one_problem(write(tmp_path, "hosts", f"{text}\n[g]\nh1\n"))
    assert problem.field == "[all:vars] arc_sp_secret_file"
    assert "only one" in problem.message


def test_ssh_config_and_common_args_through_asyncssh(tmp_path: Path) -> None:
    """~/.ssh/config applies to Ansible hosts as OpenSSH applies it; Ansible's own variables and
    -o options win over it; ProxyJump may be ssh://user@[IPv6]:port."""
    home = tmp_path / "home"
    write(home, ".ssh/config", "Host web*\n  User deploy\n  Port 2022\n"
          "  HostName %h.example.net\n  ProxyJump ssh://ops@[fd00::1]:2200,jump2\n"
          f"Host *\n  UserKnownHostsFile {home}/kh\n")
    path = write(tmp_path, "hosts", ARC_VARS_INI.replace("ansible_user=arc\n", "") +
                 "[web]\nweb1\nweb2 ansible_user=own ansible_port=22 "
                 "ansible_ssh_common_args='-o ProxyJump=none -o ConnectTimeout=9'\n"
                 "[db]\ndb1 ansible_user=dba ansible_ssh_common_args='-J [fd00::2]:2201'\n")
    by = load(path, env={"HOME": str(home)}).by_name()
    web1 = by["web1"]
    assert (web1.ssh.user, web1.port, web1.address) == ("deploy", 2022, "web1.example.net")
    assert web1.ssh.jump_hosts == ("ops@[fd00::1]:2200", "jump2")
    assert web1.ssh.known_hosts == home / "kh"
    web2 = by["web2"]
    assert (web2.ssh.user, web2.port, web2.ssh.jump_hosts) == ("own", 22, ())
    assert web2.ssh.connect_timeout_s == 9
    assert by["db1"].ssh.jump_hosts == ("[fd00::2]:2201",)
    assert by["db1"].address == "db1"


def test_bad_ssh_config_is_one_problem_naming_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home, ".ssh/config", "Host *\n  Port notaport\n")
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[web]\nweb1\n")
    problems = problems_of(path, env={"HOME": str(home)})
    assert len(problems) == 1 and str(home / ".ssh" / "config") in str(problems[0])


def test_templates_inside_a_mapping_are_rendered_or_refused(tmp_path: Path) -> None:
    write(tmp_path, "group_vars/all.yml", yaml.safe_dump(
        {**ARC_VARS_YAML, "team": "ops", "arc_tags": {"owner": "{{ team | upper }}"}}))
    path = write(tmp_path, "hosts", "[web]\nw1\nw2 arc_tags=\"{'x': '{{ nosuch }}'}\"\n")
    problems = problems_of(path)
    assert [(p.host, p.field) for p in problems] == [("w2", "arc_tags")]
    assert "undefined" in problems[0].message
    write(tmp_path, "hosts", "[web]\nw1\n")
    assert load(path).hosts[0].azure.tags == {"owner": "OPS"}
