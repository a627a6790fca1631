"""Host patterns as Ansible users write them for ``--limit``.

A pattern is a list of terms separated by ``,`` (or ``:``): a host name, a group name, a glob
(``web*``), ``~regex``, or ``@FILE`` (one host name per line, ``#`` comments). A term prefixed
with ``&`` intersects, with ``!`` excludes. As in Ansible, unions are taken first, then
intersections, then exclusions, whatever their order in the pattern. A term may end in a
subscript as in Ansible: ``web[0]``, ``web[-1]``, ``web[0:1]`` (inclusive, as ansible-core's
``_apply_subscript``), ``web[1:]``. A term that matches nothing is ignored with Ansible's warning
("Could not match supplied host pattern, ignoring: X"); a pattern that selects no host at all is
an error.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fleet.errors import InventoryError, Problem
from fleet.inventory.model import ResolvedHost
from fleet.inventory.tree import clean_problems

if TYPE_CHECKING:
    from fleet.inventory.loader import Inventory

_GLOB_CHARS = set("*?[")
# ansible-core's PATTERN_WITH_SUBSCRIPT: name[3], name[-1], name[1:3], name[2:].
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")


def _stderr_warning(message: str) -> None:
    sys.stderr.write(f"[WARNING]: {message}\n")


def _subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    match = _SUBSCRIPT.match(term)
    if not match:
        return term, None
    name, index, start, _sep, end = match.groups()
    if index is not None:
        return name, (int(index), None)
    return name, (int(start), int(end) if end else -1)


def _apply_subscript(hosts: list[str], subscript: tuple[int, int | None] | None) -> list[str]:
    if not hosts or subscript is None:
        return hosts
    start, end = subscript
    if end is not None:
        if end == -1:
            end = len(hosts) - 1
        return hosts[start:end + 1]
    try:
        return [hosts[start]]
    except IndexError:
        return []


def _split(pattern: str, known: set[str]) -> list[str]:
    if "," in pattern:
        return [t.strip() for t in pattern.split(",") if t.strip()]
    if pattern in known or pattern.startswith("~"):
        return [pattern]
    if pattern.startswith("@") and Path(pattern[1:]).is_file():
        return [pattern]
    # ':' separates terms, except inside an IPv6 address that names a host or a [subscript].
    if "[" in pattern:
        terms = re.findall(r"(?:[^\s:\[\]]|\[[^\]]*\])+", pattern)
    else:
        terms = [t.strip() for t in re.split(r":(?=[&!]?[^:])", pattern) if t.strip()]
    return terms or [pattern]


def _from_file(term: str, source_hint: str, inventory: Inventory) -> set[str]:
    path = Path(term[1:])
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InventoryError(
            clean_problems([Problem(str(path), None, source_hint, f"cannot read: {reason}")])
        ) from None
    names = {h.name for h in inventory.hosts}
    found: set[str] = set()
    problems: list[Problem] = []
    for number, line in enumerate(lines, start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if name not in names:
            problems.append(Problem(str(path), name, f"line {number}",
                                    "host is not in the inventory"))
        found.add(name)
    if problems:
        raise InventoryError(clean_problems(problems))
    return found


def _match(term: str, inventory: Inventory, source_hint: str) -> set[str]:
    names = [h.name for h in inventory.hosts]
    if term not in inventory.groups and term not in names and not term.startswith("~"):
        base, subscript = _subscript(term)
        if subscript is not None:
            order = {name: index for index, name in enumerate(names)}
            if base in inventory.groups:
                matched = list(inventory.groups[base])
            else:
                matched = sorted(_match(base, inventory, source_hint), key=order.__getitem__)
            return set(_apply_subscript(matched, subscript))
    if term.startswith("@"):
        return _from_file(term, source_hint, inventory)
    if term in inventory.groups:
        return set(inventory.groups[term])
    if term in ("*", "all"):
        return set(names)
    name_set = set(names)
    if term in name_set:
        return {term}
    found: set[str] = set()
    if term.startswith("~"):
        try:
            regex = re.compile(term[1:])
        except re.error as exc:
            raise InventoryError(
                clean_problems([Problem(source_hint, None, term, f"bad regex: {exc}")])
            ) from None
        found |= {n for n in names if regex.search(n)}
        for group, members in inventory.groups.items():
            if regex.search(group):
                found |= set(members)
    elif _GLOB_CHARS & set(term):
        found |= set(fnmatch.filter(names, term))
        for group in fnmatch.filter(list(inventory.groups), term):
            found |= set(inventory.groups[group])
    return found


def select_hosts(
    inventory: Inventory, pattern: str | None, *, source_hint: str = "--limit",
    warn: Callable[[str], None] | None = None,
) -> list[ResolvedHost]:
    """The hosts a pattern names, in inventory order. A term that matches nothing is passed to
    ``warn`` (default: a warning on stderr, as Ansible prints it); selecting nothing is an error."""
    warn = warn or _stderr_warning
    if pattern is None or not pattern.strip():
        return list(inventory.hosts)
    known = {h.name for h in inventory.hosts} | set(inventory.groups)
    unions: set[str] = set()
    intersections: list[set[str]] = []
    exclusions: set[str] = set()
    problems: list[Problem] = []
    has_union = False
    unmatched: list[str] = []
    for term in _split(pattern.strip(), known):
        op = term[0] if term[0] in "&!" else ""
        body = term[len(op):].strip()
        matched = _match(body, inventory, source_hint) if body else set()
        if not matched:
            if not body:
                problems.append(Problem(source_hint, None, term, "empty pattern term"))
            unmatched.append(body)
            if op == "&":
                intersections.append(set())
            has_union = has_union or not op
            continue
        if op == "&":
            intersections.append(matched)
        elif op == "!":
            exclusions |= matched
        else:
            has_union = True
            unions |= matched
    if problems:
        raise InventoryError(clean_problems(problems))
    selected = unions if has_union else {h.name for h in inventory.hosts}
    for group in intersections:
        selected &= group
    selected -= exclusions
    if not selected:
        detail = f"; nothing matches {', '.join(unmatched)}" if unmatched else ""
        raise InventoryError(clean_problems(
            [Problem(source_hint, None, pattern, f"pattern '{pattern}' selects no host{detail}")]
        ))
    for body in unmatched:
        warn(f"Could not match supplied host pattern, ignoring: {body}")
    return [h for h in inventory.hosts if h.name in selected]
