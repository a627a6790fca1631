"""Host patterns for --limit, as Ansible users write them."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inventory_util import ARC_VARS_INI, load, write

from fleet.errors import InventoryError
from fleet.inventory import Inventory, select_hosts


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    path = write(tmp_path, "hosts", f"""\
{ARC_VARS_INI}
[web]
web1
web2
web3
[db]
db1
db2
[eu]
web1
db1
[prod:children]
web
db
[stage]
st1
""")
    return load(path)


def names(inventory: Inventory, pattern: str | None) -> list[str]:
    return [h.name for h in select_hosts(inventory, pattern)]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, ["web1", "web2", "web3", "db1", "db2", "st1"]),
        ("all", ["web1", "web2", "web3", "db1", "db2", "st1"]),
        ("*", ["web1", "web2", "web3", "db1", "db2", "st1"]),
        ("web2", ["web2"]),
        ("db", ["db1", "db2"]),
        ("prod", ["web1", "web2", "web3", "db1", "db2"]),
        ("web*", ["web1", "web2", "web3"]),
        ("*1", ["web1", "db1", "st1"]),
        ("st*", ["st1"]),  # glob over group names too: stage
        ("db:stage", ["db1", "db2", "st1"]),
        ("db,stage", ["db1", "db2", "st1"]),
        ("prod:&eu", ["web1", "db1"]),
        ("prod:!eu", ["web2", "web3", "db2"]),
        ("web:db:&eu:!db1", ["web1"]),
        ("!web", ["db1", "db2", "st1"]),
        ("~^web[12]$", ["web1", "web2"]),
        ("db2,web1", ["web1", "db2"]),  # inventory order, not pattern order
        # Subscripts as ansible-core applies them (the end is inclusive).
        ("web[0]", ["web1"]),
        ("web[-1]", ["web3"]),
        ("web[0:1]", ["web1", "web2"]),
        ("web[1:]", ["web2", "web3"]),
        ("prod[3]:stage", ["db1", "st1"]),
        ("web[1]:&eu", []),
    ],
)
def test_pattern(inventory: Inventory, pattern: str | None, expected: list[str]) -> None:
    if not expected:
        with pytest.raises(InventoryError):
            names(inventory, pattern)
        return
    assert names(inventory, pattern) == expected


def test_at_file(inventory: Inventory, tmp_path: Path) -> None:
    listing = write(tmp_path, "retry", "# failed last time\nweb3\n\ndb1  # note\n")
    assert names(inventory, f"@{listing}") == ["web3", "db1"]
    assert names(inventory, f"@{listing}:!db") == ["web3"]


def test_at_file_unknown_host(inventory: Inventory, tmp_path: Path) -> None:
    listing = write(tmp_path, "retry", "web1\nghost\n")
    with pytest.raises(InventoryError) as info:
        select_hosts(inventory, f"@{listing}")
    problem = info.value.problems[0]
    assert (problem.file, problem.host, problem.field) == (str(listing), "ghost", "line 2")


def test_at_file_missing(inventory: Inventory, tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as info:
        select_hosts(inventory, f"@{tmp_path / 'nope'}")
    assert info.value.problems[0].file == str(tmp_path / "nope")


@pytest.mark.parametrize("pattern", ["nosuch", "db:&nosuch*", "~^zz"])
def test_pattern_selecting_nothing_is_an_error_naming_it(inventory: Inventory,
                                                          pattern: str) -> None:
    warnings: list[str] = []
    with pytest.raises(InventoryError) as info:
        select_hosts(inventory, pattern, source_hint="--limit", warn=warnings.append)
    problem = info.value.problems[0]
    assert problem.file == "--limit" and "selects no host" in problem.message
    assert warnings == []  # one error line says it all


def test_unmatched_term_is_ignored_with_ansibles_warning(inventory: Inventory) -> None:
    warnings: list[str] = []
    hosts = select_hosts(inventory, "web:nosuch", warn=warnings.append)
    assert [h.name for h in hosts] == ["web1", "web2", "web3"]
    assert warnings == ["Could not match supplied host pattern, ignoring: nosuch"]


def test_empty_result_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(InventoryError) as info:
        select_hosts(inventory, "web:&db")
    assert "web:&db" in str(info.value)
