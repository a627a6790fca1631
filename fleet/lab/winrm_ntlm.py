"""NTLM for the lab WinRM endpoint: the HTTP handshake and WinRM message encryption (MS-WSMV
2.2.9.1.1), with pyspnego's NTLM acceptor.

NTLM authenticates a TCP connection, not a request: the context lives as long as the connection.
Over plain HTTP pywinrm then seals every message; the body is a two-part MIME message whose second
part is ``<uint32 LE signature length><signature><sealed SOAP>``.

pyspnego's acceptor reads the accepted users from the file named by the ``NTLM_USER_FILE``
environment variable (``DOMAIN:USER:PASSWORD`` lines); that is process-wide state, set by
:func:`use_user_file` when a lab server with NTLM starts.
"""

from __future__ import annotations

import base64
import os
import re
import struct
from pathlib import Path

import spnego
import spnego.exceptions

PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
CONTENT_TYPE = f'multipart/encrypted;protocol="{PROTOCOL}";boundary="Encrypted Boundary"'
_BOUNDARY = b"--Encrypted Boundary"
_LENGTH = re.compile(rb"Length=(\d+)")


def use_user_file(path: Path, users: dict[str, str]) -> str | None:
    """Write the accepted users and point pyspnego's acceptor at them; returns the previous
    value of ``NTLM_USER_FILE`` for :func:`restore_user_file`."""
    path.touch(mode=0o600)
    lines = "".join(f":{user}:{password}\n" for user, password in users.items())
    path.write_text(lines, encoding="utf-8")
    previous = os.environ.get("NTLM_USER_FILE")
    os.environ["NTLM_USER_FILE"] = str(path)
    return previous


def restore_user_file(previous: str | None) -> None:
    if previous is None:
        os.environ.pop("NTLM_USER_FILE", None)
    else:
        os.environ["NTLM_USER_FILE"] = previous


class NtlmError(Exception):
    pass


class NtlmConnection:
    """The NTLM state of one HTTP connection."""

    def __init__(self) -> None:
        self._context: spnego.ContextProxy | None = None
        self.user: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    def step(self, token_b64: str) -> str | None:
        """Feed one ``Authorization: NTLM <token>``; returns the challenge to send back, or None
        when the handshake completed (then :attr:`user` is set)."""
        try:
            token = base64.b64decode(token_b64, validate=True)
            if self._context is None or self._context.complete:
                self._context = spnego.server(protocol="ntlm")
                self.user = None
            answer = self._context.step(token)
        except (ValueError, spnego.exceptions.SpnegoError) as exc:
            self._context = None
            raise NtlmError(str(exc)) from None
        if self._context.complete:
            principal = self._context.client_principal or ""
            self.user = principal.rsplit("\\", 1)[-1]
            return None
        return base64.b64encode(answer or b"").decode("ascii")

    def decrypt(self, body: bytes) -> bytes:
        """The SOAP text of an encrypted request body."""
        if self._context is None or not self.authenticated:
            raise NtlmError("encrypted message before authentication")
        parts = [p for p in body.split(_BOUNDARY + b"\r\n") if p]
        if len(parts) < 2:
            raise NtlmError("not an encrypted WinRM message")
        match = _LENGTH.search(parts[0])
        payload = parts[1]
        if payload.endswith(_BOUNDARY + b"--\r\n"):
            payload = payload[: -len(_BOUNDARY + b"--\r\n")]
        payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        (signature_length,) = struct.unpack("<i", payload[:4])
        signature = payload[4 : 4 + signature_length]
        sealed = payload[4 + signature_length :]
        try:
            message = self._context.unwrap(signature + sealed).data
        except spnego.exceptions.SpnegoError as exc:
            raise NtlmError(str(exc)) from None
        if match is None or int(match.group(1)) != len(message):
            raise NtlmError("encrypted message length does not match")
        return message

    def encrypt(self, message: bytes) -> bytes:
        if self._context is None or not self.authenticated:
            raise NtlmError("cannot encrypt before authentication")
        wrapped = self._context.wrap(message, encrypt=True).data
        signature, sealed = wrapped[:16], wrapped[16:]
        return (
            _BOUNDARY + b"\r\n"
            + f"\tContent-Type: {PROTOCOL}\r\n".encode()
            + f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={len(message)}"
            "\r\n".encode()
            + _BOUNDARY + b"\r\n"
            + b"\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(signature)) + signature + sealed
            + _BOUNDARY + b"--\r\n"
        )
