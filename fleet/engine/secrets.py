"""Resolve each secret reference once per run, register it for redaction, hand it out on demand."""

from __future__ import annotations

from fleet.errors import Problem, SecretUnavailable, UsageError
from fleet.inventory.model import ResolvedHost, SecretRef, Transport
from fleet.redact import register_secret


class SecretBook:
    def __init__(self) -> None:
        self._values: dict[SecretRef, str] = {}

    def _resolve(self, ref: SecretRef) -> str:
        if ref not in self._values:
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
                        continue
                    problems.append(Problem(host.source, host.name, field, "no reference given"))
                    continue
                try:
                    self._resolve(ref)
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
        return self._resolve(sp.secret)

    def winrm_password(self, host: ResolvedHost) -> str:
        if host.winrm.password is None:
            raise SecretUnavailable("winrm.password", "no reference given")
        return self._resolve(host.winrm.password)
