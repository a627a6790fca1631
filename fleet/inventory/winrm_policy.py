"""What a host's WinRM settings allow, decided before anything is contacted (no pywinrm import).

Used by the transport's constructor, the inventory checks and ``inventory show``/``validate``.
Basic authentication sends the password itself, so it is refused over plain HTTP and over HTTPS
whose certificate is not validated, unless the inventory opts in for that host
(``allow_basic_over_http``, ``allow_unverified_tls``). NTLM and CredSSP without validation are
warned about: a server in the middle gets a challenge response, not the password.
"""

from __future__ import annotations

import os

from fleet.errors import Problem
from fleet.inventory.model import ResolvedHost, Transport


def winrm_settings_problem(host: ResolvedHost) -> Problem | None:
    """Why these WinRM settings cannot be used, or None. Checked before anything is contacted."""
    settings = host.winrm
    where = host.source or "<inventory>"
    plain_basic = settings.auth == "basic" and settings.scheme == "http"
    if plain_basic and not settings.allow_basic_over_http:
        return Problem(
            where,
            host.name,
            "winrm.auth",
            "basic authentication over plain HTTP sends the password readable; use "
            "https, another auth, or set winrm.allow_basic_over_http",
        )
    if unverified_basic(host) and not settings.allow_unverified_tls:
        return Problem(
            where,
            host.name,
            "winrm.cert_validation",
            "basic authentication over HTTPS without certificate validation sends the password "
            "to whoever answers; validate the certificate (winrm.ca_file for an internal CA), "
            "or set winrm.allow_unverified_tls for this host",
        )
    if settings.user is None and settings.auth != "kerberos":
        return Problem(where, host.name, "winrm.user", f"required for {settings.auth} auth")
    return None


def unverified_basic(host: ResolvedHost) -> bool:
    """Basic auth over HTTPS whose certificate is not checked: the password goes to anyone."""
    settings = host.winrm
    return settings.auth == "basic" and settings.scheme == "https" and not settings.cert_validation


def unverified_challenge(host: ResolvedHost) -> bool:
    """NTLM or CredSSP over HTTPS without certificate validation: a server in the middle gets a
    challenge response it can relay or attack offline (a warning, not a refusal)."""
    settings = host.winrm
    return (settings.auth in ("ntlm", "credssp") and settings.scheme == "https"
            and not settings.cert_validation)


def validation_state(host: ResolvedHost) -> str:
    """How this host's WinRM endpoint is authenticated, in words (``inventory show``)."""
    settings = host.winrm
    if settings.scheme == "http":
        return "http (no TLS)"
    if not settings.cert_validation:
        return "NOT validated" + (" (allowed for this host)" if settings.allow_unverified_tls
                                  else "")
    if settings.ca_file is not None:
        return f"validated against {settings.ca_file}"
    if os.environ.get("REQUESTS_CA_BUNDLE"):
        return "validated against REQUESTS_CA_BUNDLE"
    return "validated against the system trust store"



def winrm_warning(host: ResolvedHost) -> str | None:
    """One line for the operator when the settings are allowed but weak, or None."""
    if host.transport is not Transport.WINRM:
        return None
    if unverified_challenge(host):
        return (f"{host.source or '<inventory>'}: host {host.name}: winrm.cert_validation: "
                f"{host.winrm.auth} over HTTPS without certificate validation; a server in the "
                "middle receives a challenge response it can relay or crack offline "
                "(set winrm.ca_file for an internal CA)")
    return None
