"""``load_inventory``: read inventory files of any supported format into one :class:`Inventory`.

The format is recognised from content, not the file name: a YAML mapping with an ``arcfleet`` key
is the arcfleet format, a YAML mapping of groups (``hosts``/``vars``/``children``) is an Ansible
YAML inventory, and anything else that is text (``[group]`` sections, bare host lines) is read as
an Ansible INI inventory.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleet.errors import InventoryError, Problem
from fleet.inventory.ansible import load_ansible_yaml, load_ini, looks_like_ansible_yaml, raw_vars
from fleet.inventory.ansible_cfg import AnsibleConfig, read_config
from fleet.inventory.ansible_engine import (
    ENGINES,
    VaultOptions,
    choose_engine,
    load_with_ansible,
)
from fleet.inventory.ansible_precedence import load_vars_dirs
from fleet.inventory.arcfleet_yaml import load_arcfleet
from fleet.inventory.model import ResolvedHost
from fleet.inventory.resolve import EnvironmentFallback, Resolver
from fleet.inventory.spec import AzureSpec
from fleet.inventory.tree import InventoryTree, clean_problems, validation_problems

COMMAND_LINE = "<command line>"
MAX_FILE_BYTES = 64 * 1024 * 1024
_INI_SECTION_LINE = re.compile(r"^\[[^\]\n]+\][ \t]*(?:[#;].*)?$", re.MULTILINE)
_YAML_EXTENSIONS = (".yml", ".yaml", ".json")
# What Ansible skips in an inventory directory.
_IGNORED_SUFFIXES = ("~", ".orig", ".bak", ".cfg", ".retry", ".pyc", ".pyo", ".md", ".rst")


@dataclass
class Inventory:
    """Every host, ready for the engine, plus what it was read from."""

    hosts: list[ResolvedHost]
    groups: dict[str, list[str]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    digest: str = ""

    def by_name(self) -> dict[str, ResolvedHost]:
        return {host.name: host for host in self.hosts}


def detect_format(text: str, path: Path) -> str:
    """``arcfleet``, ``ansible-yaml`` or ``ansible-ini`` (``yaml-error`` if YAML is broken)."""
    if _INI_SECTION_LINE.search(text) and not text.lstrip().startswith(("{", "---")):
        return "ansible-ini"
    from fleet.inventory.yamlio import load_yaml  # PyYAML only for what may be YAML

    result = load_yaml(text)
    if result.error is not None:
        looks_yaml = path.suffix.lower() in _YAML_EXTENSIONS or re.search(
            r"^(arcfleet|all)\s*:", text, re.MULTILINE
        )
        return "yaml-error" if looks_yaml else "ansible-ini"
    if isinstance(result.data, dict):
        return "arcfleet" if "arcfleet" in result.data else "ansible-yaml"
    return "ansible-ini"


def _directory_files(directory: Path) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
        return [
            entry for entry in entries
            if entry.is_file() and not entry.name.startswith(".")
            and not entry.name.endswith(_IGNORED_SUFFIXES)
        ]
    except OSError:
        return []


def _read(path: Path, tree: InventoryTree) -> str | None:
    source = str(path)
    try:
        if not path.is_file():
            # A FIFO or device could block or never end; inventories are regular files.
            reason = "does not exist" if not path.exists() else "is not a regular file"
            tree.problem(source, None, None, reason)
            return None
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            tree.problem(source, None, None, f"is {size} bytes; inventories are limited to "
                         f"{MAX_FILE_BYTES} bytes")
            return None
        raw = path.read_bytes()
    except OSError as exc:
        tree.problem(source, None, None, f"cannot read: {exc.strerror or exc}")
        return None
    tree.contents.append((source, raw))
    if b"\x00" in raw:
        tree.problem(source, None, None, "contains NUL bytes; not a text inventory")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        tree.problem(source, None, None, f"is not UTF-8 text (bad byte at offset {exc.start})")
        return None
    return text.removeprefix("\ufeff")


def _load_file(path: Path, tree: InventoryTree) -> None:
    source = str(path)
    tree.sources.append(source)
    text = _read(path, tree)
    if text is None:
        return
    kind = detect_format(text, path)
    if kind == "ansible-ini":
        load_ini(text, path, source, tree)
        return
    from fleet.inventory.yamlio import load_yaml

    result = load_yaml(text)
    if result.error is not None:
        tree.problem(source, None, None, result.error)
        return
    data: Any = result.data
    if kind == "arcfleet":
        load_arcfleet(data, path, source, tree, result.duplicates)
    elif looks_like_ansible_yaml(data):
        load_ansible_yaml(data, path, source, tree, result.duplicates)
    elif isinstance(data, dict) and "plugin" in data:
        tree.problem(source, None, "plugin", "configures an Ansible inventory plugin, which only "
                     "ansible-inventory runs: use --inventory-engine ansible or auto (needs "
                     "ansible-core)")
    else:
        tree.problem(source, None, None, "not a recognised inventory: expected `arcfleet: 1` or "
                     "Ansible groups with hosts/vars/children")


def _overrides(raw: Mapping[str, object] | None, problems: list[Problem]) -> dict[str, Any]:
    cleaned = {k: v for k, v in (raw or {}).items() if v is not None and v != {}}
    if not cleaned:
        return {}
    try:
        spec = AzureSpec.model_validate(cleaned, context={"base_dir": Path.cwd()})
    except ValidationError as exc:
        problems.extend(validation_problems(exc, COMMAND_LINE, None, "", None))
        return {}
    return spec.model_dump(exclude_unset=True, exclude_none=True)


def _apply_config(tree: InventoryTree, config: AnsibleConfig) -> None:
    tree.hash_behaviour = config.hash_behaviour
    for source, field_name, message in config.problems:
        tree.problem(source, None, field_name, message)
    for variable, value in config.variables.items():
        raw, _ = raw_vars({variable: value}, base_dir=Path.cwd(),
                          source=config.sources[variable], host=None, prefix="", tree=tree)
        tree.ansible_defaults.append(raw)


def load_inventory(
    paths: Sequence[Path],
    *,
    azure_overrides: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    engine: str | None = None,
    vault: VaultOptions | None = None,
) -> Inventory:
    """Read, merge, resolve and validate; raises :class:`InventoryError` with every problem.

    ``engine``: ``native``, ``ansible`` (run ansible-inventory) or ``auto`` (ansible-inventory
    only when an inventory needs it); default: ``$ARCFLEET_INVENTORY_ENGINE`` or ``auto``.
    """
    with _cycle_collection_paused():
        return _load(paths, azure_overrides=azure_overrides, env=env, engine=engine,
                     vault=vault)


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """Loading makes hundreds of thousands of objects that live on (a 5,000-host inventory):
    the cycle collector would walk them over and over (a tenth of the load time) and find
    nothing to free.

    Turned back on, it would walk all of them at once (they would all be young): they are
    handed to the oldest generation instead (freeze, then unfreeze), whose next full
    collection frees whatever cycles loading left."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def _load(
    paths: Sequence[Path],
    *,
    azure_overrides: Mapping[str, object] | None,
    env: Mapping[str, str] | None,
    engine: str | None,
    vault: VaultOptions | None,
) -> Inventory:
    tree = InventoryTree()
    environ = os.environ if env is None else env
    config = read_config(environ, Path.cwd())
    _apply_config(tree, config)
    home = environ.get("HOME")
    user_ssh_config = Path(home) / ".ssh" / "config" if home else None
    tree.ssh_config = user_ssh_config if user_ssh_config and user_ssh_config.is_file() else None
    if not paths:
        paths = config.inventory
    if not paths:
        raise InventoryError(Problem(COMMAND_LINE, None, "-i", "no inventory file given"))
    vault = vault or VaultOptions()
    requested = (engine or environ.get("ARCFLEET_INVENTORY_ENGINE") or "auto").strip().lower()
    if requested not in ENGINES:
        raise InventoryError(Problem(COMMAND_LINE, None, "--inventory-engine",
                                     f"unknown engine '{requested}'; use auto, native or ansible"))
    choice = choose_engine(paths, requested, vault, environ)
    if choice.engine == "ansible":
        load_with_ansible(paths, tree, vault, environ)
        return _finish(tree, azure_overrides, environ)
    vars_dirs: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            # An Ansible inventory directory: every file in it, in name order.
            files = _directory_files(path)
            if not files:
                tree.problem(str(path), None, None, "directory holds no inventory file")
            for file in files:
                _load_file(file, tree)
            directory = path.resolve()
        else:
            _load_file(path, tree)
            directory = path.parent.resolve()
        if directory not in vars_dirs:
            vars_dirs.append(directory)
    load_vars_dirs(vars_dirs, tree)
    return _finish(tree, azure_overrides, environ)


def _finish(
    tree: InventoryTree, azure_overrides: Mapping[str, object] | None, environ: Mapping[str, str]
) -> Inventory:
    problems = tree.problems
    overrides = _overrides(azure_overrides, problems)
    fallback = EnvironmentFallback.read(environ, problems)
    resolver = Resolver(tree, overrides=overrides, env=fallback, problems=problems)
    resolver.link()
    hosts = resolver.resolve_all()
    if not tree.hosts and not problems:
        problems.append(Problem(", ".join(tree.sources), None, None, "no hosts in the inventory"))
    if problems:
        raise InventoryError(clean_problems(problems))
    digest = hashlib.sha256()
    for _source, raw in tree.contents:
        digest.update(len(raw).to_bytes(8, "big"))
        digest.update(raw)
    return Inventory(hosts=hosts, groups=resolver.group_members(), sources=list(tree.sources),
                     digest=digest.hexdigest())
