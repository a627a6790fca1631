"""Token mode: the jump host mints ARM access tokens for the hosts' service principals.

With ``auth: token`` (inventory), ``arc_auth=token`` (Ansible) or ``--auth token``, a host's
``--config`` file carries ``access-token`` instead of the service principal's secret, so the
secret never leaves the jump host. One token serves every host of a service principal (same
cloud, tenant, client id and secret or certificate) until it nears its expiry; then the next host
that needs one gets a fresh token. "Nears" is ``min(5 minutes, half the token's lifetime)`` before
``expires_on``, so a connect that starts with a token still has minutes of validity (a lab token
that lives seconds is refreshed after half its life).

Every token is registered for redaction the moment it is minted (:func:`fleet.redact.
register_secret`), like a secret. A refusal from Entra ID ends the host with a credentials
diagnosis that names the service principal and the AADSTS code (the breaker then asks Azure
itself before it stops other hosts of that service principal).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from fleet.azcm.diagnosis import FAIL_HOST, FAIL_RUN, Category, Diagnosis
from fleet.azure.calls import CallFailed, call, sign_in_result
from fleet.azure.clouds import endpoints_for
from fleet.azure.session import ArmSession, Identity
from fleet.engine.host_state import HostFinished
from fleet.engine.secrets import SecretBook
from fleet.inventory.model import ResolvedHost
from fleet.redact import register_secret

log = structlog.get_logger("fleet.azure.tokens")

REFRESH_BEFORE_S = 300.0


def token_mode(host: ResolvedHost) -> bool:
    return host.azure.auth == "token"


def _identity_key(host: ResolvedHost) -> tuple[Any, ...]:
    sp = host.azure.service_principal
    return (host.azure.cloud, (host.azure.tenant_id or "").lower(),
            sp.client_id.lower() if sp else None, sp.secret if sp else None,
            sp.certificate_file if sp else None, host.azure.endpoints_file)


@dataclass
class _Minted:
    """The current token of one service principal (never printed: redacted once registered)."""

    session: ArmSession | None = None
    token: str = ""
    expires_on: float = 0.0
    lifetime_s: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    minted: int = 0

    def fresh(self, now: float) -> bool:
        margin = min(REFRESH_BEFORE_S, self.lifetime_s / 2)
        return bool(self.token) and self.expires_on - now > margin


class TokenMinter:
    """Hands each token-mode host an ARM access token for its service principal."""

    def __init__(self, hosts: Sequence[ResolvedHost], secrets: SecretBook) -> None:
        self.secrets = secrets
        self._minted: dict[tuple[Any, ...], _Minted] = {}
        self.hosts = [h for h in hosts if token_mode(h)]

    @property
    def minted(self) -> int:
        """How many tokens were minted in this run (refreshes included)."""
        return sum(m.minted for m in self._minted.values())

    async def token_for(self, host: ResolvedHost) -> str:
        """A token for ``host``'s service principal, minted or refreshed when needed; raises
        :class:`HostFinished` with a credentials diagnosis when Entra ID refuses."""
        minted = self._minted.setdefault(_identity_key(host), _Minted())
        async with minted.lock:  # one refresh per service principal, however many hosts wait
            if not minted.fresh(time.time()):
                await asyncio.to_thread(self._mint, host, minted)
            return minted.token

    def _mint(self, host: ResolvedHost, minted: _Minted) -> None:
        if minted.session is None:
            sp = host.azure.service_principal
            identity = Identity(host.azure.tenant_id, sp.client_id if sp else None,
                                self.secrets.sp_secret(host), sp.certificate_file if sp else None)
            minted.session = ArmSession(identity, endpoints_for(host.azure.cloud,
                                                                host.azure.endpoints_file))
        session = minted.session
        quiet = logging.getLogger("azure")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            # azure-identity (and MSAL under it) serve a cached token only while more than
            # 5 minutes of it remain: at our margin (at most 5 minutes) they ask Entra ID anew.
            access = call(lambda: session.credential.get_token(session.endpoints.arm_scope))
        except CallFailed as failed:
            raise HostFinished(_refused(host, failed)) from None
        finally:
            quiet.setLevel(level)
        register_secret(access.token)
        now = time.time()
        minted.token = access.token
        minted.expires_on = float(access.expires_on)
        minted.lifetime_s = max(0.0, minted.expires_on - now)
        minted.minted += 1
        sp = host.azure.service_principal
        log.info("access token minted", client_id=sp.client_id if sp else None,
                 tenant_id=host.azure.tenant_id, valid_for_s=round(minted.lifetime_s),
                 refresh=minted.minted > 1)

    def close(self) -> None:
        for minted in self._minted.values():
            if minted.session is not None:
                minted.session.close()


def _refused(host: ResolvedHost, failed: CallFailed) -> Diagnosis:
    sp = host.azure.service_principal
    who = f"service principal {sp.client_id if sp else '?'} in tenant {host.azure.tenant_id}"
    if failed.kind == "sign_in":
        cause, fix = sign_in_result(str(failed))
        return Diagnosis(Category.CREDENTIALS, FAIL_RUN, name="token mode: sign-in refused",
                         cause=f"the jump host could not mint an access token for {who}: {cause}",
                         fix=fix, rule="azure:token", evidence_line=str(failed)[:300],
                         extra={"breaker_scope": "service_principal"})
    return Diagnosis(Category.NETWORK, FAIL_HOST, name="token mode: Entra ID not reached",
                     cause=f"the jump host could not reach Entra ID to mint an access token for "
                     f"{who} ({failed.kind}): {failed}",
                     fix="Check the jump host's route or proxy (HTTPS_PROXY) to Entra ID, then "
                     "rerun the failed hosts.", rule="azure:token",
                     evidence_line=str(failed)[:300])
