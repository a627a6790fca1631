"""Ansible vault values in an inventory, kept apart from the YAML reader so that reading them
needs no YAML library (an INI inventory is read without importing PyYAML)."""

from __future__ import annotations

__all__ = ["VaultSecret", "VaultValue"]


class VaultValue:
    """An Ansible ``!vault`` value: encrypted, and a literal secret as far as arcfleet cares."""

    def __repr__(self) -> str:
        return "<vault>"


class VaultSecret:
    """A vault value decrypted by ansible-vault: held in memory only, never printed."""

    __slots__ = ("_plaintext",)

    def __init__(self, plaintext: str) -> None:
        self._plaintext = plaintext

    def reveal(self) -> str:
        return self._plaintext

    def __repr__(self) -> str:
        return "<vault>"

    __str__ = __repr__
