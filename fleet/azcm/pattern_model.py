"""The shape of a message pattern (see :mod:`fleet.azcm.patterns` for the list and its order)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleet.azcm.catalog import TROUBLESHOOT_URL
from fleet.azcm.diagnosis import Action, ActionKind, Category
from fleet.azcm.diagnosis import Remediation as Rm

MAX_LINE = 4096

C = Category
DISCONNECT_LOCAL = Action(ActionKind.REMEDIATE, Rm.DISCONNECT_LOCAL)
SP_SCOPE = "service_principal"  # client id + tenant
SUBSCRIPTION_SCOPE = "subscription"
RG_SCOPE = "resource_group"  # subscription + resource group
LOGIN_HOST = r"login\.(?:windows\.net|microsoftonline\.com|microsoftonline\.us|chinacloudapi\.cn)"


@dataclass(frozen=True)
class MessagePattern:
    """One recognisable message and what it means."""

    name: str
    regex: re.Pattern[str]
    keywords: tuple[str, ...]  # lower-case literals; one must occur in the line
    category: Category
    action: Action
    cause: str
    fix: str
    doc_url: str = TROUBLESHOOT_URL
    code: str | None = None  # the code this message belongs to, when it has one
    only_with_codes: tuple[str, ...] = ()  # applies only when one of these codes was found
    sample: str = ""  # a line it matches (tests and `arcfleet codes --list` use it)
    # What a fail_run cause is about, so the breaker stops only hosts that share it:
    # "service_principal" (client id + tenant), "subscription", "resource_group" (sub + RG).
    scope: str | None = None
    field: str | None = None  # the inventory field an invalid_input cause points at

    def search(self, line: str) -> re.Match[str] | None:
        return self.regex.search(line)


def pattern(
    name: str,
    regex: str,
    keywords: tuple[str, ...],
    category: Category,
    action: Action,
    cause: str,
    fix: str,
    sample: str,
    *,
    doc_url: str = TROUBLESHOOT_URL,
    code: str | None = None,
    only_with_codes: tuple[str, ...] = (),
    scope: str | None = None,
    field: str | None = None,
) -> MessagePattern:
    return MessagePattern(
        name, re.compile(regex, re.IGNORECASE), keywords, category, action, cause, fix,
        doc_url=doc_url, code=code, only_with_codes=only_with_codes, sample=sample, scope=scope,
        field=field,
    )
