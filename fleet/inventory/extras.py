"""Optional Python packages a host's settings need, checked before any host is contacted."""

from __future__ import annotations

from functools import cache

# WinRM auth -> the arcfleet extra that installs what pywinrm needs for it.
AUTH_EXTRAS = {"kerberos": "kerberos", "credssp": "credssp"}


@cache
def auth_available(auth: str) -> bool:
    """Whether pywinrm can use ``auth`` here (the same test its transport makes)."""
    if auth not in AUTH_EXTRAS:
        return True
    import winrm.transport

    flag = "HAVE_KERBEROS" if auth == "kerberos" else "HAVE_CREDSSP"
    return bool(getattr(winrm.transport, flag, False))


def missing_extra_message(auth: str) -> str | None:
    if auth_available(auth):
        return None
    extra = AUTH_EXTRAS[auth]
    return (f"{auth} authentication needs Python packages that are not installed; install "
            f"them with: pip install 'arcfleet[{extra}]'")
