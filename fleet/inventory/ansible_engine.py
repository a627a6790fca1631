"""``ansible-inventory`` as the inventory engine: whatever Ansible can read, arcfleet can read.

ansible-core is GPL and optional, so it is run as a program, never imported. ``ansible-inventory
--list`` gives every host's merged variables (vault files decrypted, inventory plugins and
scripts run, ansible.cfg applied); arcfleet then reads those variables exactly as it reads the
native loader's (:mod:`fleet.inventory.ansible_vars`), templates included.

Inline ``!vault`` values stay encrypted in that output; a password given that way is decrypted
with ``ansible-vault`` (same vault options) and kept in memory only, as a secret
(:class:`fleet.inventory.model.SecretRef` ``vault``), never shown or stored.

``auto`` (the default engine) picks ansible-inventory only when an inventory needs it: an
inventory plugin configuration, a vault-encrypted file, or an executable (dynamic) script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.inventory.ansible import raw_vars
from fleet.inventory.tree import ALL, UNGROUPED, InventoryTree
from fleet.inventory.vault_values import VaultSecret

ENGINES = ("auto", "native", "ansible")
ANSIBLE_INVENTORY = "ansible-inventory"
_TIMEOUT_S = 300
_PLUGIN_KEYS = ("plugin:",)


@dataclass(frozen=True)
class VaultOptions:
    """Vault options passed through to ansible-inventory and ansible-vault unchanged."""

    password_files: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    ask: bool = False

    def args(self) -> list[str]:
        out: list[str] = []
        for path in self.password_files:
            out += ["--vault-password-file", path]
        for vault_id in self.ids:
            out += ["--vault-id", vault_id]
        if self.ask:
            out.append("--ask-vault-pass")
        return out

    @property
    def given(self) -> bool:
        return bool(self.password_files or self.ids or self.ask)


@dataclass
class EngineChoice:
    engine: str
    reasons: list[str] = field(default_factory=list)


def program(environ: Mapping[str, str], name: str = ANSIBLE_INVENTORY) -> str | None:
    return shutil.which(name, path=environ.get("PATH"))


def _needs_ansible(path: Path) -> str | None:
    """Why this inventory file can only be read by ansible-inventory, if it can only."""
    try:
        if path.is_file() and os.access(path, os.X_OK):
            return f"{path} is an executable (dynamic inventory script)"
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if head.lstrip().startswith(b"$ANSIBLE_VAULT"):
        return f"{path} is vault-encrypted"
    text = head.decode("utf-8", "replace")
    for line in text.splitlines():
        if line.strip().startswith(_PLUGIN_KEYS) and not line.startswith((" ", "\t")):
            return f"{path} configures an inventory plugin"
    return None


def _vaulted_vars_files(directory: Path) -> list[str]:
    found: list[str] = []
    for kind in ("group_vars", "host_vars"):
        root = directory / kind
        if not root.is_dir():
            continue
        for count, file in enumerate(sorted(root.rglob("*"))):
            if count > 10_000:
                break
            if not file.is_file():
                continue
            try:
                with file.open("rb") as handle:
                    head = handle.read(32)
            except OSError:
                continue
            if head.lstrip().startswith(b"$ANSIBLE_VAULT"):
                found.append(f"{file} is vault-encrypted")
    return found


def choose_engine(
    paths: Sequence[Path], requested: str, vault: VaultOptions, environ: Mapping[str, str]
) -> EngineChoice:
    if requested != "auto":
        return EngineChoice(requested)
    reasons: list[str] = []
    for given in paths:
        path = Path(given)
        try:
            files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        except OSError:
            continue  # reported by the loader
        for file in files:
            reason = _needs_ansible(file)
            if reason:
                reasons.append(reason)
        directory = path if path.is_dir() else path.parent
        reasons += _vaulted_vars_files(directory)
    if vault.given:
        reasons.append("vault options were given")
    for name in ("ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST"):
        if environ.get(name):
            reasons.append(f"{name} is set")
    return EngineChoice("ansible" if reasons else "native", reasons)


def _source_label(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def _run(args: list[str], stdin: str | None, tree: InventoryTree, source: str,
         field_name: str, environ: Mapping[str, str], host: str | None = None) -> str | None:
    try:
        result = subprocess.run(args, input=stdin, capture_output=True, text=True,
                                timeout=_TIMEOUT_S, check=False, env=dict(environ))
    except (OSError, subprocess.TimeoutExpired) as exc:
        tree.problem(source, host, field_name, f"{args[0]} did not run: {exc}")
        return None
    if result.returncode != 0:
        stderr = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in stderr if line.startswith(("ERROR", "[ERROR]"))]
        reasons = [line.removeprefix("[WARNING]: ") for line in stderr
                   if line.startswith("[WARNING]: Failed to parse")]
        text = (errors or stderr[-1:] or ["failed"])[0]
        if reasons:
            text += " " + "; ".join(reasons)
        tree.problem(source, host, field_name,
                     f"{Path(args[0]).name} failed (exit {result.returncode}): {text[:400]}")
        return None
    return result.stdout


def load_with_ansible(
    paths: Sequence[Path], tree: InventoryTree, vault: VaultOptions, environ: Mapping[str, str]
) -> None:
    """Fill ``tree`` from ``ansible-inventory --list`` over every path, in order."""
    source = _source_label(paths)
    tree.sources.extend(str(p) for p in paths)
    executable = program(environ)
    if executable is None:
        tree.problem(source, None, "--inventory-engine", "ansible-inventory is not on PATH; "
                     "install ansible-core, or use --inventory-engine native")
        return
    args = [executable, "--list"]
    for path in paths:
        args += ["-i", str(path)]
    # An inventory source Ansible cannot parse is an error, not a warning and no hosts.
    environ = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", **environ}
    output = _run(args + vault.args(), None, tree, source, "ansible-inventory", environ)
    if output is None:
        return
    try:
        document = json.loads(output)
    except json.JSONDecodeError as exc:
        tree.problem(source, None, "ansible-inventory", f"printed no JSON ({exc.msg})")
        return
    tree.contents.append((source, output.encode("utf-8")))
    _fill(document, paths, tree, source, vault, environ)


def _fill(document: dict[str, Any], paths: Sequence[Path], tree: InventoryTree, source: str,
          vault: VaultOptions, environ: Mapping[str, str]) -> None:
    hostvars: dict[str, Any] = document.get("_meta", {}).get("hostvars", {})
    base_dir = Path(paths[0]).resolve()
    base_dir = base_dir if base_dir.is_dir() else base_dir.parent
    seen: set[str] = set()

    def walk(group: str, depth: int) -> None:
        if group in seen or depth > 64:
            return
        seen.add(group)
        body = document.get(group) or {}
        tree.group(group)
        for host in body.get("hosts", []):
            tree.host(host, source, ansible=True)
            if group not in (ALL, UNGROUPED):
                tree.add_member(group, host)
        for child in body.get("children", []):
            tree.add_child(group, child)
            walk(child, depth + 1)

    walk(ALL, 0)
    for host, node in tree.hosts.items():
        variables = {name: _unwrap(value) for name, value in hostvars.get(host, {}).items()}
        before = len(tree.problems)
        for name, value in list(variables.items()):
            if isinstance(value, dict) and set(value) == {"__ansible_vault"}:
                variables[name] = _decrypt(name, host, str(value["__ansible_vault"]), tree,
                                           source, vault, environ)
        raw, _priority = raw_vars(variables, base_dir=base_dir, source=source, host=host,
                                  prefix="", tree=tree)
        # A value that could not be decrypted is reported; the host's other checks would
        # only repeat it.
        raw.broken = raw.broken or len(tree.problems) > before
        node.ansible_vars.append(raw)


def _unwrap(value: Any) -> Any:
    """ansible-inventory marks values it must not template as ``{"__ansible_unsafe": v}``."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return _unwrap(value["__ansible_unsafe"])
        return {key: _unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


def _decrypt(name: str, host: str, ciphertext: str, tree: InventoryTree, source: str,
             vault: VaultOptions, environ: Mapping[str, str]) -> Any:
    from fleet.inventory.ansible_vars import PASSWORD_VARS, read_variables

    if name not in PASSWORD_VARS:
        if name.startswith("arc_") or name in read_variables():
            tree.problem(source, host, name, "is vault-encrypted; arcfleet uses vault values "
                         "for passwords only (it would have to show this one)")
        return None
    executable = program(environ, "ansible-vault")
    if executable is None:
        tree.problem(source, host, name, "is vault-encrypted and ansible-vault is not on PATH")
        return None
    plaintext = _run([executable, "decrypt", "--output", "-", *vault.args(), "-"],
                     ciphertext, tree, source, name, environ, host)
    if plaintext is None:
        return None
    return VaultSecret(plaintext.rstrip("\n"))
