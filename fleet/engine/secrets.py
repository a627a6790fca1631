"""Resolve each secret reference once per run, register it for redaction, hand it out on demand.

A Key Vault reference (``secret: {keyvault: https://VAULT.vault.azure.net/secrets/NAME}``) is
read once per run with the operator's own Azure credential (fleet/azure/keyvault.py). Otherwise
a reference can only name a place meant for a secret: a file private to the operator (regular,
owned by them, no group or other permission bits, as ssh demands of a private key) or an
environment variable in the allow-list (``AZURE_*``, ``ARC_*``, ``ARCFLEET_*``, or one named with
``--allow-secret-env``). Otherwise ``secret: {file: ~/.ssh/id_ed25519}`` or
``{env: AWS_SECRET_ACCESS_KEY}`` would send that value to every host of the inventory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from fleet.engine.sp_certificate import SpCertificate, read_certificate
from fleet.errors import Problem, SecretUnavailable, UsageError
from fleet.inventory.model import ResolvedHost, SecretRef, Transport
from fleet.redact import register_secret

SECRET_ENV_PREFIXES = ("AZURE_", "ARC_", "ARCFLEET_")


def reference_problem(ref: SecretRef, allowed_env: Iterable[str] = ()) -> str | None:
    """Why arcfleet refuses to read this reference, or None when it may."""
    if ref.keyvault:
        return None  # read with the operator's own Azure credential; Key Vault's RBAC decides
    if ref.env:
        if ref.env.startswith(SECRET_ENV_PREFIXES) or ref.env in set(allowed_env):
            return None
        return (
            f"environment variable {ref.env} is not a secret variable arcfleet reads "
            f"({', '.join(p + '*' for p in SECRET_ENV_PREFIXES)}); "
            f"pass --allow-secret-env {ref.env} if it is meant for this"
        )
    if ref.file:
        path = ref.file.expanduser()
        try:
            info = path.stat()
        except OSError:
            return None  # missing or unreadable: resolve() says so
        if not stat.S_ISREG(info.st_mode):
            return f"secret file {path} is not a regular file"
        if info.st_uid != os.geteuid():
            return f"secret file {path} is not owned by the user running arcfleet"
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            return (
                f"secret file {path} is accessible by group or others (mode {mode:04o}); "
                f"chmod 600 {path}"
            )
    return None


class SecretBook:
    def __init__(self, *, allowed_env: Iterable[str] = ()) -> None:
        self._values: dict[SecretRef, str] = {}
        self._certificates: dict[Path, SpCertificate] = {}
        self._allowed_env = frozenset(allowed_env)

    def _certificate(self, path: Path) -> SpCertificate:
        if path not in self._certificates:
            # A key file is held to the rules of a secret file (owner-only).
            problem = reference_problem(SecretRef(file=path), self._allowed_env)
            if problem is not None:
                raise SecretUnavailable(f"file:{path}", problem)
            self._certificates[path] = read_certificate(path)
        return self._certificates[path]

    def _resolve(self, ref: SecretRef, host: ResolvedHost | None = None) -> str:
        if ref not in self._values:
            problem = reference_problem(ref, self._allowed_env)
            if problem is not None:
                raise SecretUnavailable(ref.describe(), problem)
            if ref.keyvault:
                from fleet.azure.keyvault import read_keyvault_secret

                # The host's cloud and endpoints file say where Entra ID is (the lab's fake).
                value = read_keyvault_secret(ref.keyvault, host.azure if host else None)
            else:
                value = ref.resolve()
            register_secret(value)
            self._values[ref] = value
        return self._values[ref]

    def preload(self, hosts: list[ResolvedHost], *, need_sp: bool) -> None:
        """Read every secret the hosts need before any host is contacted (bad input: exit 2)."""
        problems: list[Problem] = []
        for host in hosts:
            refs: list[tuple[str, SecretRef | None]] = []
            sp = host.azure.service_principal
            if need_sp:
                refs.append(("azure.service_principal.secret", sp.secret if sp else None))
            if host.transport is Transport.WINRM:
                refs.append(("winrm.password", host.winrm.password))
            for field, ref in refs:
                if ref is None:
                    if field.startswith("azure") and sp is not None and sp.certificate_file:
                        try:
                            self._certificate(sp.certificate_file)
                        except SecretUnavailable as exc:
                            problems.append(Problem(host.source, host.name,
                                                    "azure.service_principal.certificate_file",
                                                    str(exc)))
                        continue
                    problems.append(Problem(host.source, host.name, field, "no reference given"))
                    continue
                try:
                    self._resolve(ref, host)
                except SecretUnavailable as exc:
                    problems.append(Problem(host.source, host.name, field, str(exc)))
        if problems:
            # Many hosts share one reference: say each problem once.
            unique = list(dict.fromkeys(problems))
            raise UsageError(unique)

    def sp_secret(self, host: ResolvedHost) -> str | None:
        sp = host.azure.service_principal
        if sp is None or sp.secret is None:
            return None
        return self._resolve(sp.secret, host)

    def sp_certificate(self, host: ResolvedHost) -> SpCertificate | None:
        """The certificate the host's agent authenticates with (when it has no secret)."""
        sp = host.azure.service_principal
        if sp is None or sp.secret is not None or sp.certificate_file is None:
            return None
        return self._certificate(sp.certificate_file)

    def winrm_password(self, host: ResolvedHost) -> str:
        if host.winrm.password is None:
            raise SecretUnavailable("winrm.password", "no reference given")
        return self._resolve(host.winrm.password, host)
