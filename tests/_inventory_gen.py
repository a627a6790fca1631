"""Random Ansible INI inventories for the shortcut tests (tests/test_inventory_fastpaths.py).

Hosts share groups, group variables and most of their own variables, as in a real fleet, so
every memo is hit; some values differ in type (``1``/``True``/``'1'``), hold templates, set
the address under another name, or are wrong, so the memos' edges are hit too.
"""

from __future__ import annotations

import random
from pathlib import Path

from _inventory_util import CLIENT, SUB, TENANT

_ALL_VARS = [
    f"arc_tenant_id={TENANT}",
    f"arc_subscription_id={SUB}",
    "arc_resource_group=rg-arc",
    "arc_location=westeurope",
    f"arc_sp_client_id={CLIENT}",
    "arc_sp_secret_env=ARC_SP_SECRET",
    "ansible_user=arc",
]
_GROUP_VARS = [
    "arc_tags=dc=one", "arc_tags=\"{'tier': 1}\"", "ansible_become=true", "ansible_become=yes",
    "ansible_port=2222", "ansible_port='2222'", "ansible_user=ops", "ansible_user=\"{{ 'x' }}ops\"",
    "arc_resource_group=rg-{{ 'other' }}", "arc_location=eastus", "ansible_group_priority=5",
    "arc_tags=dc=two", "ansible_become=1", "ansible_become=True",
    "ansible_ssh_common_args='-o ProxyJump=jump@10.0.0.1'",
]
_COMMON_HOST_VARS = ["arc_tags=rack=r1", "arc_tags=rack=r2",
                     "arc_tags=\"{'rack': 'r1', 'n': 2}\""]
_HOST_VARS = [
    "ansible_port=22", "ansible_port=2200", "ansible_become=false", "ansible_user=admin",
    "ansible_ssh_host=10.8.{n}.8", "ansible_host=host{n}.example.com",
    "arc_resource_name=res{n}", "arc_resource_name=\"r-{{ inventory_hostname }}\"",
    "arc_tags=\"{'h': '{{ inventory_hostname }}'}\"", "ansible_host=\"{{ '10.7.0.' }}{n}\"",
    "arc_location=eastus", "ansible_become=True", "ansible_become=1", "arc_tags=\"{'n': 2}\"",
    "ansible_connection=winrm arc_winrm_password_env=PW ansible_winrm_transport=ntlm",
    "ansible_connection=winrm ansible_winrm_host=w{n} arc_winrm_password_env=PW",
    "ansible_connection=winrm arc_winrm_password_env=PW ansible_winrm_transport=ntlm "
    "ansible_winrm_server_cert_validation=ignore",
]
# Wrong values, and an address given twice: rare, so that most inventories load.
_BAD_HOST_VARS = ["ansible_port=x", "arc_tags=bad", "ansible_host='10.0.0.{n} x'",
                  "ansible_host=10", "ansible_connection=winrm ansible_winrm_scheme=http "
                  "arc_winrm_password_env=PW ansible_winrm_transport=basic", "ansible_user="]
_NAMES = ["srv{n:03d}.example.com", "10.1.{n}.1", "web{n}", "fd00::{n:x}", "Host_{n}",
          "db-{n}.corp"]
# Names that make no Azure resource name (a problem unless arc_resource_name is set).
_BAD_NAMES = ["edge{n}_", "x{n}-.corp"]


def random_inventory(directory: Path, rng: random.Random, hosts: int) -> Path:
    """Write one random inventory (hosts.ini, maybe group_vars/ and host_vars/); its path."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[all:vars]"]
    lines += [v for v in _ALL_VARS if rng.random() > 0.03]
    groups = [f"g{i}" for i in range(rng.randint(1, 4))]
    names: list[tuple[str, str]] = []
    for group in groups:
        lines.append(f"[{group}]")
        earlier = list(names)
        for _ in range(rng.randint(0, hosts)):
            if earlier and rng.random() < 0.05:
                lines.append(" ".join(earlier.pop()))  # a host in several groups
                continue
            n = len(names) + 1
            name = rng.choice(_NAMES if rng.random() < 0.98 else _BAD_NAMES).format(n=n)
            own = [f"ansible_host=10.{n // 65536}.{n // 256 % 256}.{n % 256}"]
            for _ in range(rng.choice((0, 1, 1, 1, 2))):
                # Mostly the common few variables, so that many hosts share every value.
                draw = rng.random()
                pick = rng.choice(_COMMON_HOST_VARS if draw < 0.8 else
                                  _HOST_VARS if draw < 0.985 else _BAD_HOST_VARS)
                own.append(pick.replace("{n}", str(n)))
            names.append((name, " ".join(own)))
            lines.append(" ".join(names[-1]))
        lines.append(f"[{group}:vars]")
        lines += rng.sample(_GROUP_VARS, rng.randint(0, 3))
    if len(groups) > 1 and rng.random() < 0.5:
        lines.append(f"[{groups[0]}:children]")
        lines += groups[1:rng.randint(2, len(groups))]
    path = directory / "hosts.ini"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if rng.random() < 0.3:
        (directory / "group_vars").mkdir(exist_ok=True)
        (directory / "group_vars" / f"{rng.choice(groups)}.yml").write_text(
            rng.choice(["arc_tags: {from: group_vars}\n", "ansible_port: 2022\n",
                        "ansible_become: true\n", "arc_location: northeurope\n"]),
            encoding="utf-8")
    if names and rng.random() < 0.3:
        (directory / "host_vars").mkdir(exist_ok=True)
        (directory / "host_vars" / f"{rng.choice(names)[0]}.yml").write_text(
            "arc_tags: {from: host_vars}\nansible_port: 2023\n", encoding="utf-8")
    return path
