"""YAML reading for inventories: safe, duplicate keys reported, errors without file content.

PyYAML keeps the last of two equal keys silently; for an inventory that hides a duplicated host,
so this loader records every duplicate with its line. Error messages carry the position and the
parser's complaint but never the offending line (it might hold a secret).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from fleet.inventory.vault_values import VaultValue

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class YamlResult:
    data: Any = None
    error: str | None = None
    duplicates: list[tuple[str, int]] = field(default_factory=list)


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(_Base):  # type: ignore[misc,valid-type]
    pass


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
    explicit = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
    loader.flatten_mapping(node)
    # Keys pulled in by a `<<` merge come first and may be overridden: only explicit repeats count.
    merged = len(node.value) - explicit
    result: dict[Any, Any] = {}
    written: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key is not a plain value", key_node.start_mark
            ) from None
        if index >= merged:
            if key in written:
                loader.arcfleet_duplicates.append((str(key), key_node.start_mark.line + 1))
            written.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _construct_vault(loader: Any, node: yaml.Node) -> VaultValue:
    return VaultValue()


def _construct_unsafe(loader: Any, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    return None


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("!vault", _construct_vault)
_Loader.add_constructor("!unsafe", _construct_unsafe)


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "invalid YAML"
    if mark is not None:
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    position = getattr(exc, "position", None)
    if position is not None:
        return f"YAML reader error at character {position}: {problem}"
    return f"YAML error: {problem}"


def load_yaml(text: str) -> YamlResult:
    """Parse one YAML document; never raises for bad input."""
    loader = _Loader(text)
    loader.arcfleet_duplicates = []
    result = YamlResult()
    try:
        result.data = loader.get_single_data()
    except yaml.YAMLError as exc:
        result.error = describe_yaml_error(exc)
    except RecursionError:
        result.error = "YAML nesting is too deep"
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        result.error = f"unreadable value: {exc}"
    finally:
        loader.dispose()
    result.duplicates = list(loader.arcfleet_duplicates)
    return result
