"""The inventory's shortcuts give what the long way gives (issue 15).

A set of variables is converted once for all hosts that share it (fleet.inventory.vars_memo), the
groups' variables are merged once per list of groups (fleet.inventory.ansible_host), hosts of the
same groups share their plan and hosts of the same values their checks (fleet.inventory.resolve),
INI values that cannot be Python literals skip ``ast.literal_eval``, ``inventory show --json``
lets pydantic write each host's JSON, and host names that cannot be IP addresses skip
``ipaddress``: each is checked here against the long way (the same host loaded alone; every memo
turned off; the literal parser; ``json.dumps``; ``ipaddress``). Loading pauses the cycle
collector: it is left as it was found, and the loaded tree is freed without it.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import json
import random
import weakref
from pathlib import Path
from typing import Any

import pytest
from _inventory_gen import random_inventory
from _inventory_util import ARC_VARS_INI, arcfleet, load, problems_of, write

from fleet.cli.inventory import json_row, json_row_plain
from fleet.errors import InventoryError
from fleet.inventory import tree as tree_module
from fleet.inventory.ansible import literal_or_text, parse_ini_value
from fleet.inventory.model import ResolvedHost
from fleet.inventory.resolve import Resolver, _is_ip, _maybe_ip
from fleet.inventory.tree import InventoryTree

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


def _outcome(path: Path) -> object:
    """Everything a load gives: each host's JSON row and the groups, or every problem."""
    try:
        inventory = load(path, env={"PW": "x"})
    except InventoryError as exc:
        return [str(problem) for problem in exc.problems]
    return [json_row_plain(host) for host in inventory.hosts], inventory.groups


def test_shared_work_gives_what_each_host_worked_out_alone_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The memos (groups' variables merged once, the names read, the frozen variables, the
    # conversion, the groups' ancestors, the checks and models of a host's values) against the
    # long way, on random inventories whose hosts share most of their values; each memo is hit
    # many times (counted below).
    rng = random.Random(1515)
    hits = {"groups": 0, "frozen": 0, "conversions": 0, "problems": 0, "hosts": 0}
    for case in range(120):
        path = random_inventory(tmp_path / f"c{case}", rng, rng.choice((3, 10, 40)))
        monkeypatch.setattr(tree_module, "MEMOIZE", False)
        slow = _outcome(path)
        monkeypatch.setattr(tree_module, "MEMOIZE", True)
        tree = InventoryTree()
        assert tree.memoize
        fast = _outcome(path)
        assert fast == slow, path.read_text()
        if isinstance(fast, list):
            hits["problems"] += 1
        else:
            hits["hosts"] += len(fast[0])
    resolver = _resolver_after(random_inventory(tmp_path / "big", random.Random(7), 200),
                               monkeypatch)
    hosts = len(resolver.tree.hosts)
    hits["groups"] = hosts - len(resolver.tree.group_vars_cache)
    hits["frozen"] = hosts - len(resolver.tree.frozen_cache)
    hits["conversions"] = hosts - len(resolver.tree.vars_cache)
    hits["builds"] = hosts - len(resolver._built)
    assert hits["problems"] > 20 and hits["hosts"] > 500, hits
    assert min(hits["groups"], hits["frozen"], hits["conversions"], hits["builds"]) > 50, hits


def test_hosts_sharing_blocks_but_not_scalars_are_built_each_as_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # arcfleet format: every host shares the defaults' ssh, winrm and azure blocks (the same
    # dicts), while port, transport and os are the host's own: the build memo must tell them
    # apart.
    body = "hosts:\n" + "".join(
        f"  h{n}: {{address: 10.0.0.{n}{extra}}}\n" for n, extra in enumerate([
            "", ", port: 2222", "", ", port: 2222", ", os: linux", ", port: 22",
            ", transport: winrm", ", transport: winrm, port: 5985", ", os: windows",
            ", azure: {resource_name: named}", ""]))
    path = write(tmp_path, "fleet.yaml", arcfleet(
        body, defaults_extra="  winrm: {user: u, password: {env: PW}}\n"))
    monkeypatch.setattr(tree_module, "MEMOIZE", False)
    slow = _outcome(path)
    monkeypatch.setattr(tree_module, "MEMOIZE", True)
    assert _outcome(path) == slow
    hosts = {row["name"]: row for row in map(json.loads, slow[0])}  # type: ignore[index]
    assert (hosts["h0"]["port"], hosts["h1"]["port"], hosts["h6"]["port"]) == (22, 2222, 5986)
    assert (hosts["h6"]["transport"], hosts["h8"]["os"]) == ("winrm", "windows")


def _resolver_after(path: Path, monkeypatch: pytest.MonkeyPatch) -> Resolver:
    """The resolver of a load, its memos filled (watched, not replaced)."""
    resolvers: list[Resolver] = []
    original = Resolver.resolve_all

    def watched(self: Resolver) -> list[ResolvedHost]:
        resolvers.append(self)
        return original(self)

    monkeypatch.setattr(Resolver, "resolve_all", watched)
    with contextlib.suppress(InventoryError):
        load(path, env={"PW": "x"})
    monkeypatch.setattr(Resolver, "resolve_all", original)
    return resolvers[0]


def test_json_rows_are_what_the_long_way_writes(tmp_path: Path) -> None:
    # pydantic's own JSON writer against model_dump + json.dumps: same JSON values, and the
    # long way for text json would escape (a non-ASCII name, tag or path).
    path = write(tmp_path, "hosts.ini", ARC_VARS_INI + "[g]\n"
                 "h1 ansible_host=10.0.0.1 arc_tags=\"{'owner': 'Zoë', 'q': 'a\\\"b'}\"\n"
                 "höst2 ansible_host=10.0.0.2 ansible_ssh_private_key_file=/k/ключ\n"
                 "w3 ansible_connection=winrm arc_winrm_password_env=PW\n"
                 "w4 ansible_connection=winrm arc_winrm_password_env=PW "
                 "ansible_winrm_server_cert_validation=ignore ansible_winrm_transport=ntlm\n")
    rng = random.Random(3)
    inventories = [path] + [random_inventory(tmp_path / f"r{n}", rng, 20) for n in range(40)]
    rows = 0
    for inventory in inventories:
        with contextlib.suppress(InventoryError):
            for host in load(inventory, env={"PW": "x"}).hosts:
                fast, slow = json_row(host), json_row_plain(host)
                assert json.loads(fast) == json.loads(slow), (fast, slow)
                assert fast.isascii(), fast
                rows += 1
    assert rows > 100


def test_resource_names_derived_as_ipaddress_reads_addresses() -> None:
    # The cheap test for "cannot be an IP address" against ipaddress itself.
    rng = random.Random(99)
    alphabet = "0123456789abcdef.:%-xz"
    names = ["10.0.0.1", "fd00::1", "fe80::1%eth0", "1.2.3", "01.2.3.4", "::", "a.b", ""]
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
              for _ in range(20_000)]
    names += [".".join(str(rng.randint(0, 300)) for _ in range(4)) for _ in range(2_000)]
    for name in names:
        try:
            ipaddress.ip_address(name)
            is_ip = True
        except ValueError:
            is_ip = False
        assert _maybe_ip(name) or not is_ip, name
        assert (_maybe_ip(name) and _is_ip(name)) == is_ip, name


def test_loading_leaves_the_cycle_collector_as_it_found_it(tmp_path: Path) -> None:
    # Loading pauses the collector; after a load or a refusal it is on (or off) as before,
    # nothing stays frozen out of its reach, and garbage cycles older than the load are freed.
    good = write(tmp_path, "good.ini", ARC_VARS_INI + "[g]\nh1 ansible_host=10.0.0.1\n")
    bad = write(tmp_path, "bad.ini", ARC_VARS_INI + "[g]\nh1 ansible_port=x\n")
    was_enabled = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            load(good)
            assert problems_of(bad)
            assert gc.isenabled() is enabled
            assert gc.get_freeze_count() == 0
        gc.enable()
        watched = _garbage_cycle()
        load(good)
        gc.collect()
        assert watched() is None
    finally:
        (gc.enable if was_enabled else gc.disable)()


class _Node:
    def __init__(self) -> None:
        self.me = self


def _garbage_cycle() -> weakref.ref[_Node]:
    return weakref.ref(_Node())


def test_a_loaded_tree_is_freed_without_the_cycle_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing of the load may sit in a reference cycle holding the tree (the whole inventory):
    # it would stay until the collector runs (at exit, a walk over everything).
    path = write(tmp_path, "hosts.ini", ARC_VARS_INI + "[web]\nw[1:9] arc_tags=a=b\n[db]\nd1\n"
                 "[dc:children]\nweb\ndb\n[all:children]\ndc\n")
    trees: list[weakref.ref[InventoryTree]] = []
    original = Resolver.resolve_all

    def watched(self: Resolver) -> list[ResolvedHost]:
        trees.append(weakref.ref(self.tree))
        return original(self)

    monkeypatch.setattr(Resolver, "resolve_all", watched)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        inventory = load(path, env={"PW": "x"})
        assert inventory.hosts
        assert trees[0]() is None
    finally:
        if was_enabled:
            gc.enable()
