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
    ],
)
def test_pattern(inventory: Inventory, pattern: str | None, expected: list[str]) -> None:
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


@pytest.mark.parametrize("pattern", ["nosuch", "web:nosuch", "db:&nosuch*", "~^zz"])
def test_pattern_matching_nothing_is_named(inventory: Inventory, pattern: str) -> None:
    with pytest.raises(InventoryError) as info:
        select_hosts(inventory, pattern, source_hint="--limit")
    problem = info.value.problems[0]
    assert problem.file == "--limit" and "matches no host" in problem.message


def test_empty_result_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(InventoryError) as info:
        select_hosts(inventory, "web:&db")
    assert "web:&db" in str(info.value)
