"""``{{ }}`` in Ansible variables, rendered with Jinja2 against the host's own variables.

Ansible templates a variable when a plugin reads it; arcfleet renders the variables it reads
(``ansible_*`` it uses and every ``arc_*``) the same way, in a sandbox, with the filters plain
Jinja2 has. A lookup, an unknown filter or an undefined variable is an error naming the variable:
arcfleet never guesses a value. The one lookup understood is the secret reference
``{{ lookup('env', 'NAME') }}`` / ``{{ lookup('file', 'PATH') }}`` for passwords, which is kept
as a reference and never read here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_LOOKUP_RE = re.compile(
    r"""^\{\{\s*lookup\(\s*['"](env|file)['"]\s*,\s*['"]([^'"]+)['"]\s*\)\s*\}\}$"""
)
_MAX_ROUNDS = 20


class TemplateProblem(Exception):
    def __init__(self, var: str, message: str) -> None:
        super().__init__(message)
        self.var = var
        self.message = message


def secret_lookup(value: str) -> dict[str, str] | None:
    """``{{ lookup('env', 'X') }}`` -> ``{"env": "X"}`` (a reference, never the value)."""
    match = _LOOKUP_RE.match(value.strip())
    if not match:
        return None
    kind, target = match.groups()
    return {kind: target}


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _has_template(value: Any, depth: int = 0) -> bool:
    if isinstance(value, dict):
        return depth < 64 and any(_has_template(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return depth < 64 and any(_has_template(v, depth + 1) for v in value)
    return _is_template(value)


def render_variables(
    variables: Mapping[str, Any], *, host: str, groups: list[str], wanted: set[str]
) -> dict[str, Any]:
    """A copy of ``variables`` whose ``wanted`` templated values are rendered.

    Raises :class:`TemplateProblem` naming the first variable that cannot be rendered.
    """
    todo = [k for k in wanted if k in variables and _has_template(variables[k])
            and not (isinstance(variables[k], str) and secret_lookup(variables[k]))]
    if not todo:
        return dict(variables)
    from jinja2 import StrictUndefined, TemplateError, UndefinedError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    out = dict(variables)
    context: dict[str, Any] = {
        **variables, "inventory_hostname": host,
        "inventory_hostname_short": host.split(".", 1)[0], "group_names": sorted(groups),
    }

    def render(var: str, value: str, depth: int) -> Any:
        if depth > _MAX_ROUNDS:
            raise TemplateProblem(var, "templates refer to each other too deeply (a loop?)")
        context["lookup"] = _no_lookup(var)
        context["query"] = context["q"] = _no_lookup(var)
        try:
            template = env.from_string(value)
            text = template.render(context)
        except UndefinedError as exc:
            raise TemplateProblem(var, f"template uses an undefined variable ({exc.message})") \
                from None
        except TemplateProblem:
            raise
        except TemplateError as exc:
            raise TemplateProblem(var, f"cannot render the template: {exc.message}") from None
        except Exception as exc:  # a filter's own error on a bad input
            raise TemplateProblem(var, f"cannot render the template: {exc}") from None
        if _is_template(text) and text != value:
            return render(var, text, depth + 1)
        return _native(text)

    def deep(var: str, value: Any, depth: int) -> Any:
        if isinstance(value, dict):
            return {key: deep(var, item, depth + 1) for key, item in value.items()}
        if isinstance(value, list):
            return [deep(var, item, depth + 1) for item in value]
        if _is_template(value) and depth < 64:
            return render(var, str(value), 0)
        return value

    for var in sorted(todo):
        # Referenced variables are rendered first, so a chain of templates resolves.
        for name, other in list(context.items()):
            if name != var and _is_template(other) and name in variables and name in _refs(
                repr(out[var])
            ):
                context[name] = render(name, str(other), 1)
        out[var] = deep(var, out[var], 0)
        context[var] = out[var]
    return out


def _refs(template: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", template))


def _native(text: str) -> Any:
    """Ansible's native types, minimal: an integer or boolean rendered as text is kept as text
    here because arcfleet's readers accept both."""
    return text


def _no_lookup(var: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TemplateProblem(var, "uses a lookup, which arcfleet does not run; only "
                              "{{ lookup('env', 'NAME') }} / {{ lookup('file', 'PATH') }} as a "
                              "whole password value are understood")

    return refuse
