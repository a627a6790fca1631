"""The inventory's shortcuts give what the long way gives (issue 15).

A set of variables is converted once for all hosts that share it (fleet.inventory.vars_memo) and
INI values that cannot be Python literals skip ``ast.literal_eval``: each is checked here against
the long way (the same host loaded alone; the literal parser itself).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from _inventory_util import ARC_VARS_INI, load, problems_of, write

from fleet.inventory.ansible import literal_or_text, parse_ini_value

# Host lines that differ in their address only, or in an address Ansible reads differently.
_LINES = [
    "h1 ansible_host=10.0.0.1 arc_tags=rack=r1",
    "h2 ansible_host=10.0.0.2 arc_tags=rack=r1",
    "h3 ansible_host=10 arc_tags=rack=r1",
    "h4 ansible_host=host-4.example.com arc_tags=rack=r1",
    "h5 ansible_ssh_host=10.0.0.5 ansible_host=10.0.0.50 arc_tags=rack=r1",
    "h6 ansible_host=10.0.0.6 ansible_ssh_host=10.0.0.60 arc_tags=rack=r1",
    "h7 ansible_host=10.0.0.7 ansible_winrm_host=w7 ansible_connection=winrm "
    "arc_winrm_password_env=PW arc_tags=rack=r1",
    "h8 ansible_host=10.0.0.8 ansible_winrm_host=w8 ansible_connection=winrm "
    "arc_winrm_password_env=PW arc_tags=rack=r1",
    "h9 ansible_host=10.0.0.9 arc_tags=rack=r2",
    "h10 ansible_host=10.0.0.10 arc_tags=rack=r1 ansible_port=2222",
    "h11 ansible_host=10.0.0.11 arc_tags=rack=r1 ansible_port=2222",
]


def _shown(host: Any) -> dict[str, Any]:
    return {"address": host.address, "port": host.port, "transport": host.transport,
            "tags": host.azure.tags, "winrm_user": host.winrm.user}


def test_hosts_sharing_variables_resolve_as_each_alone(tmp_path: Path) -> None:
    together = write(tmp_path, "all.ini", ARC_VARS_INI + "\n[grp]\n" + "\n".join(_LINES) + "\n")
    hosts = {h.name: _shown(h) for h in load(together).hosts}
    assert hosts["h1"]["address"] == "10.0.0.1" and hosts["h2"]["address"] == "10.0.0.2"
    assert hosts["h3"]["address"] == "10" and hosts["h5"]["address"] == "10.0.0.5"
    assert hosts["h6"]["address"] == "10.0.0.60" and hosts["h8"]["address"] == "w8"
    for index, line in enumerate(_LINES):
        alone = write(tmp_path, f"alone{index}.ini", ARC_VARS_INI + f"\n[grp]\n{line}\n")
        (host,) = load(alone).hosts
        assert hosts[host.name] == _shown(host), line


def test_a_bad_address_among_shared_variables_is_still_reported(tmp_path: Path) -> None:
    lines = [f"h{n} ansible_host=10.0.0.{n} arc_tags=rack=r1" for n in range(5)]
    lines.insert(3, "bad ansible_host='10.0.0.9 x' arc_tags=rack=r1")
    path = write(tmp_path, "hosts.ini", ARC_VARS_INI + "\n[grp]\n" + "\n".join(lines) + "\n")
    problems = problems_of(path)
    assert [(p.host, p.field) for p in problems] == [("bad", "ansible_host")], problems


def test_ini_values_read_as_the_literal_parser_reads_them() -> None:
    rng = random.Random(15)
    alphabet = "abTrueFalseNone0123456789._=:/@e,+-'[]{}j "
    texts = ["True", "False", "None", "True,False", "10.0.0.1", "1.5", "1..2", "u'x'", "r'x'",
             "b'x'", "x=1", "a.b", "1e5", "0x1F", "-1", "True+1j", ""]
    for _ in range(20_000):
        if rng.random() < 0.3:
            texts.append(".".join(str(rng.randint(0, 300)) for _ in range(rng.randint(1, 4))))
        else:
            texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))))
    for text in texts:
        fast, slow = parse_ini_value(text), literal_or_text(text)
        assert (type(fast), fast) == (type(slow), slow), text
