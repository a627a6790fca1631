"""The agent's ``--tags`` syntax, as the lab simulator reads it.

``Name=Value`` pairs separated by commas; a name or value with whitespace is enclosed in single
quotes (reference: the ``--tags`` flag, and the AZCM0013 fix text of the 2021 code table:
"any names or values with spaces are enclosed in single quotes"). The quotes are syntax: they are
not part of the tag.
"""

from __future__ import annotations


class TagSyntaxError(ValueError):
    """The text is not the agent's tag syntax; the message says where."""


def parse_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in _split(text, ","):
        parts = _split(item, "=", limit=1)
        if len(parts) != 2:
            raise TagSyntaxError(f"tag {item!r} is not Name=Value")
        name, value = (_unquote(part) for part in parts)
        if not name:
            raise TagSyntaxError(f"tag {item!r} has an empty name")
        tags[name] = value
    return tags


def _split(text: str, sep: str, *, limit: int = -1) -> list[str]:
    """Split on ``sep`` outside single quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == "'":
            quoted = not quoted
        if char == sep and not quoted and limit != 0:
            parts.append("".join(current))
            current = []
            limit -= 1
            continue
        current.append(char)
    if quoted:
        raise TagSyntaxError(f"unbalanced single quote in {text!r}")
    parts.append("".join(current))
    return parts


def _unquote(part: str) -> str:
    if len(part) >= 2 and part[0] == part[-1] == "'":
        inner = part[1:-1]
        if "'" in inner:
            raise TagSyntaxError(f"stray single quote in {part!r}")
        return inner
    if "'" in part:
        raise TagSyntaxError(f"stray single quote in {part!r}")
    if any(char.isspace() for char in part):
        raise TagSyntaxError(f"{part!r} has spaces but is not enclosed in single quotes")
    return part
