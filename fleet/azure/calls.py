"""One Azure SDK or Entra ID call, its exceptions turned into :class:`CallFailed` (kind,
status, ARM code), and Entra's refusals read with the catalog's message patterns.

Shared by the preflight, the breaker's confirmer and token mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fleet.azcm.diagnosis import Category
from fleet.azcm.patterns import PATTERNS, by_name

T = TypeVar("T")
MAX_LINE = 2000


class CallFailed(Exception):
    """An ARM or Entra call that did not give an answer the check can use."""

    def __init__(self, kind: str, message: str, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # unreachable | refused | http | sign_in
        self.status = status
        self.code = code

    @property
    def reached(self) -> bool:
        """Azure answered: the check ran (a 429 or 5xx past the retries did not)."""
        return self.kind in ("sign_in", "http") and not (
            self.status is not None and (self.status == 429 or self.status >= 500))


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:MAX_LINE]
    return text[:MAX_LINE]


def call(fn: Callable[[], T]) -> T:
    """Run one SDK call, turning its exceptions into :class:`CallFailed`."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.identity import CredentialUnavailableError

    try:
        return fn()
    except CredentialUnavailableError as exc:
        raise CallFailed("unavailable", first_line(str(exc))) from None
    except ClientAuthenticationError as exc:
        # Entra refused the sign-in when it says so (AADSTS) or answered 400/401; a 5xx or a
        # broken answer on the way is Entra not reached, and stops nobody.
        text = sign_in_text(exc)
        if "AADSTS" in text or exc.status_code in (400, 401):
            raise CallFailed("sign_in", text, exc.status_code) from None
        if exc.status_code is not None and exc.status_code < 500:
            raise CallFailed("http", first_line(str(exc.message)), exc.status_code,
                              exc.error.code if exc.error else None) from None
        raise CallFailed("unavailable", text, exc.status_code) from None
    except HttpResponseError as exc:
        raise CallFailed("http", first_line(str(exc.message)), exc.status_code,
                          exc.error.code if exc.error else None) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise CallFailed("unreachable", first_line(str(exc))) from None


def sign_in_text(exc: BaseException) -> str:
    """The Entra error in ``exc`` or its causes (MSAL hides a discovery 400 in a ValueError)."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(texts) < 5:
        texts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    joined = " ".join(texts)
    if "Unable to get authority configuration" in joined and "AADSTS" not in joined:
        joined = "AADSTS90002: Tenant not found (OpenID discovery refused: " + first_line(
            joined) + ")"
    return first_line(joined)


def sign_in_result(text: str) -> tuple[str, str]:
    """(cause, fix) of an Entra refusal from the catalog's message patterns."""
    for pattern in PATTERNS:
        if pattern.category is Category.CREDENTIALS and pattern.search(text[:MAX_LINE]):
            return f"{pattern.cause} Entra ID said: {text}", pattern.fix
    fallback = by_name("aad_error")
    return f"Entra ID refused the sign-in: {text}", fallback.fix
