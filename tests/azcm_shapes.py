"""The three output shapes azcmagent prints, for building synthetic samples in tests.

- ``logrus``: the pre-1.21 text format (``time=... level=fatal msg=...``);
- ``progress``: the current ``INFO``/``ERROR`` lines with a progress bar redrawn with carriage
  returns and ANSI colours, as a terminal receives them;
- ``json``: ``--json`` output. Microsoft does not document the failure schema; this mirrors the
  install scripts' ``{"status": "failed", "error": {"code", "message"}}`` shape.
"""

from __future__ import annotations

import json

SHAPES = ("logrus", "progress", "json")

_T = 'time="2024-05-01T10:00:{s:02d}Z"'


def _q(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render(shape: str, message: str, code: str | None = None, name: str = "") -> str:
    """One failed connect in ``shape``: some progress, then the code line and the message."""
    if shape == "logrus":
        lines = [
            f'{_T.format(s=1)} level=info msg="Onboarding Machine. It takes a while."',
            f'{_T.format(s=2)} level=info msg="Check network connectivity to all endpoints..."',
        ]
        if code:
            lines.append(f'{_T.format(s=3)} level=info msg="Exit Code:  {code}: {name}"')
        lines.append(f'{_T.format(s=3)} level=fatal msg="{_q(message)}"')
        return "\n".join(lines) + "\n"
    if shape == "progress":
        head = code + ": " + name + ": " if code else ""
        return (
            "\x1b[36mINFO\x1b[0m    Connecting machine to Azure... This might take a few "
            "minutes.\r\n\x1b[36mINFO\x1b[0m    Testing connectivity to endpoints that are "
            "needed to connect to Azure... This might take a few minutes.\r\n"
            "  20% [==>            ]\r  30% [===>           ]\r  40% [=====>         ]\r"
            f"\x1b[31mERROR\x1b[0m   {head}{message}\r\n"
        )
    if shape == "json":
        error: dict[str, str] = {"message": message}
        if code:
            error["code"] = code
        return json.dumps({"status": "failed", "error": error}) + "\n"
    raise ValueError(shape)
