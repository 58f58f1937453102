"""YAML that remembers where each value came from, so that every error can say `file:line`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from patchwave.errors import InputError

M = TypeVar("M", bound=BaseModel)
UNIT_NAME = re.compile(r"^[A-Za-z0-9@._\-]+$")  # a systemd unit (service) name

# how every YAML file Patchwave reads is validated: unknown keys and wrong types are errors
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class Located(dict[str, Any]):
    """A mapping that knows the line of each of its keys (1-based) and its own."""

    line: int = 0
    key_lines: dict[str, int]


class LocatedList(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    result = Located()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(None, None, f"keys must be strings, not {key!r}",
                                                    key_node.start_mark)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise InputError(f"{path}:{line}: invalid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from exc


def line_of(data: Any, loc: tuple[str | int, ...]) -> int:
    """The line of the deepest node on `loc` that exists in the loaded document."""
    line = getattr(data, "line", 1) or 1
    node = data
    for part in loc:
        if isinstance(node, Located) and isinstance(part, str) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, LocatedList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        elif not (isinstance(node, Located) and isinstance(part, str)):
            break
        # else: a name pydantic adds that is not in the file (the tag of a union member): skip it
    return line


def where(path: Path, data: Any, loc: tuple[str | int, ...]) -> str:
    """`file:line` of the deepest node on `loc`."""
    return f"{path}:{line_of(data, loc)}"


def loc_text(loc: tuple[str | int, ...]) -> str:
    """('waves', 0, 'size') → 'waves[0].size'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def require_unique(values: list[str], what: str) -> None:
    """A model validator's check: ValueError naming the repeated `values` ("wave names", ...)."""
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"{what} must be unique: {', '.join(dupes)}")


GroupPlaces = list[tuple[tuple[str | int, ...], list[str]]]


def unknown_group(path: Path, data: Any, places: GroupPlaces, known: set[str]) -> str | None:
    """`file:line: where: unknown group ...` for the first group in `places` (location, names)
    that the inventory does not have; None when all are known."""
    for loc, groups in places:
        for position, group in enumerate(groups):
            if group not in known:
                return (f"{where(path, data, (*loc, position))}: {loc_text(loc)}: unknown group {group!r}; "
                        f"the inventory has {', '.join(sorted(known)) or 'no groups'}")
    return None


def time_zone(value: str) -> str:
    """A validator body for every `timezone` key: an IANA zone name, or a ValueError saying so."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") from exc
    return value


def plain(value: Any) -> Any:
    """Located containers → plain dict/list (pydantic strict mode wants exact types)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def validate(model: type[M], data: Any, path: Path, what: str, docs: str,
                           error: type[InputError] = InputError) -> M:
    """Validate loaded YAML against a pydantic model; every problem becomes `file:line: where: what`."""
    try:
        return model.model_validate(plain(data))
    except ValidationError as exc:
        lines = []
        for problem in exc.errors():
            loc = tuple(p for p in problem["loc"]
                        if not (isinstance(p, str) and p.startswith(("function-", "int", "str"))))
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] == "extra_forbidden":
                message = f"unknown key (check the spelling; see {docs})"
            lines.append(f"{where(path, data, loc)}: {loc_text(loc) or what}: {message}")
        raise error("\n".join(dict.fromkeys(lines))) from exc
