"""Loaders on random and mutated input: an Inventory or an InventoryError, nothing else."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from _inventory_util import ARC_VARS_INI, arcfleet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.errors import InventoryError
from fleet.inventory import Inventory, load_inventory, select_hosts

SEEDS = [
    arcfleet("groups:\n  g: {hosts: [h1], azure: {tags: {a: b}}}\nhosts:\n  h1: {port: 22}\n"
             "  h2: {transport: winrm, winrm: {user: u, password: {env: P}}}\n"),
    f"{ARC_VARS_INI}\n[web]\nweb[01:05] ansible_port=2222\n[web:vars]\narc_tags=a=b\n"
    "[all:children]\nweb\n",
    "all:\n  vars: {arc_location: westeurope}\n  children:\n    g:\n      hosts:\n"
    "        h1: {ansible_host: 10.0.0.1, ansible_connection: winrm}\n",
]
NASTY = ["\x00", "\x1b[31m", "\ufeff", "[", "]", ":", "{", "}", "'", '"', "\n", "=", "*",
         "&", "!", "@", "[1:99999999]", "!vault", "<<: *a", "&a", "x" * 5000, "\t", "\r"]


def _check(data: bytes, pattern: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inventory"
        path.write_bytes(data)
        try:
            inventory = load_inventory([path], env={})
        except InventoryError as exc:
            assert exc.problems and all(p.file for p in exc.problems)
            return
        assert isinstance(inventory, Inventory)
        if pattern is not None:
            with contextlib.suppress(InventoryError):
                select_hosts(inventory, pattern)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(text)))
        choice = draw(st.integers(0, 2))
        if choice == 0:
            text = text[:position] + draw(st.sampled_from(NASTY)) + text[position:]
        elif choice == 1:
            text = text[:position] + text[position + draw(st.integers(1, 40)):]
        else:
            text = text[:position] + draw(st.text(max_size=20)) + text[position:]
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=20))  # possibly invalid UTF-8
    return data


FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(mutated(), st.one_of(st.none(), st.text(max_size=12)))
def test_mutated_inventories(data: bytes, pattern: str | None) -> None:
    _check(data, pattern)


@FAST
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@FAST
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    _check(text.encode("utf-8", "surrogatepass"))


def test_huge_line_and_deep_nesting() -> None:
    _check(b"h" * 2_000_000 + b"\n")
    _check(b"[" * 50_000)
    _check(b"all:\n" + b"  children:\n" * 10 + b"{" * 5000)
