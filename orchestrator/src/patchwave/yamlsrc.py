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
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]{0,30}(?:/[A-Za-z0-9_+\-]{1,30}){0,2}$")  # Europe/Berlin, Etc/GMT+1

# how every YAML file Patchwave reads is validated: unknown keys and wrong types are errors
# (and no .inf or .nan: every number is a real one)
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Located(dict[str, Any]):
    """A mapping that knows the line of each of its keys (1-based) and its own."""

    line: int = 0
    key_lines: dict[str, int]


class LocatedList(list[Any]):
    line: int = 0
    item_lines: list[int]


# What one file may hold before it is refused: Patchwave's files are a few kilobytes, and these
# bounds keep a hostile one (a "billion laughs" alias bomb, nesting thousands deep, gigabytes) from
# taking the memory or the minutes that building it would take.
MAX_BYTES = 10 * 1024 * 1024
MAX_NODES = 1_000_000  # values in the document, every alias counted as what it stands for
MAX_ALIAS_NODES = 100_000  # of those, the ones aliases stand for
MAX_DEPTH = 64  # mappings and lists inside one another

_FAST = getattr(yaml, "CSafeLoader", None)  # libyaml, when PyYAML was built with it
_Base: type[yaml.SafeLoader] = _FAST or yaml.SafeLoader


class _Loader(_Base):  # type: ignore[valid-type,misc]
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value Python cannot make (a 5,000-digit number, the date 2026-13-45) is an error at
        its line, not a traceback."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            text = str(getattr(node, "value", ""))
            if "digits" in str(exc):
                problem = f"a number with {len(text)} digits is too long"
            else:
                problem = f"{text[:40]!r} cannot be read: {exc}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    # keys written here, as opposed to those a merge key (`<<: *defaults`) brings in, which
    # they override (and the later merge overrides the earlier: flatten_mapping orders them so)
    written = {id(key_node) for key_node, _value in node.value if key_node.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)
    result = Located()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    explicit: set[str] = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(None, None, f"keys must be strings, not {key!r}",
                                                    key_node.start_mark)
        if id(key_node) in written:
            if key in explicit:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            explicit.add(key)
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


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    """The file as text: at most `limit` bytes (read no further, whatever the file is), UTF-8."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise InputError(f"{path}: larger than {limit / 1024 / 1024:g} MB, the most a Patchwave file may be; "
                         "not read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from exc


def _check_shape(text: str, max_nodes: int = MAX_NODES, max_alias_nodes: int = MAX_ALIAS_NODES) -> None:
    """Walk the parse events once, building nothing, and refuse a document that would be too big
    once built: too many values, aliases standing for too many (each alias counts as all the
    values of what it names: that is how an alias bomb of a few hundred bytes stands for a
    billion strings), an alias inside what it names, or nesting too deep."""
    sizes: dict[str, int] = {}  # anchor -> values in the node it names (aliases expanded)
    open_: list[tuple[str | None, int]] = []  # the collections not closed yet: (anchor, count at start)
    nodes = from_aliases = 0
    for event in yaml.parse(text, Loader=_Base):
        mark: Any = event.start_mark
        if isinstance(event, yaml.DocumentStartEvent):
            sizes = {}
        elif isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            if any(name == anchor for name, _start in open_):
                raise yaml.composer.ComposerError(None, None, f"alias *{anchor} is inside the node it names "
                                                  "(a recursive structure)", mark)
            size = sizes.get(anchor, 0)  # an undefined alias: the loader says so
            nodes += size
            from_aliases += size
            if from_aliases > max_alias_nodes:
                raise yaml.composer.ComposerError(None, None, f"aliases stand for more than {max_alias_nodes:,} "
                                                  f"values in all (an alias bomb?); *{anchor} is one too many", mark)
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            if len(open_) >= MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            open_.append((event.anchor, nodes))
            nodes += 1
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            named, start = open_.pop()
            if named is not None:
                sizes[named] = nodes - start
        if nodes > max_nodes:
            raise yaml.composer.ComposerError(None, None, f"more than {max_nodes:,} values", mark)


def _line_of_position(text: str, exc: yaml.reader.ReaderError) -> int:
    # libyaml counts bytes of the UTF-8 text, PyYAML's own reader counts characters
    before = text.encode("utf-8")[:exc.position].count(b"\n") if _FAST else text[:exc.position].count("\n")
    return before + 1


def _problem(path: Path, text: str, exc: yaml.YAMLError) -> InputError:
    """`file:line: invalid YAML: what` for anything the parser, the checks or the loader refuse."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = ": ".join(str(part) for part in (exc.context, exc.problem) if part)
        if "cannot start any token" in what and "\t" in (text.splitlines()[line - 1:line] or [""])[0]:
            what += " (a tab: YAML indents with spaces)"
        return InputError(f"{path}:{line}: invalid YAML: {what}")
    if isinstance(exc, yaml.reader.ReaderError):
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return InputError(f"{path}:{_line_of_position(text, exc)}: invalid YAML: {exc.reason} (character #x{code:04x})")
    return InputError(f"{path}: invalid YAML: {exc}")


def load(path: Path, limit: int = MAX_BYTES) -> Any:
    """A YAML file with every mapping and list knowing its lines; every problem (unreadable,
    too big, not UTF-8, not YAML, too big once built, a duplicate key) is `file:line: what`."""
    return parse(read_text(path, limit), path)


def parse(text: str, origin: Path | str) -> Any:
    """YAML text that did not come from a file of its own (a decrypted vault), under the same
    bounds as `load`; `origin` names it in errors."""
    if len(text) > MAX_BYTES:
        raise InputError(f"{origin}: larger than {MAX_BYTES / 1024 / 1024:g} MB, the most a Patchwave file may be")
    try:
        _check_shape(text)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader (plain data, no Python objects)
    except yaml.YAMLError as exc:
        raise _problem(Path(origin), text, exc) from exc


def check_file(path: Path, limit: int = MAX_BYTES, max_nodes: int = MAX_NODES,
               max_alias_nodes: int = MAX_ALIAS_NODES) -> None:
    """What `load` refuses before building anything (size, encoding, syntax, alias bombs,
    nesting), for YAML that another program reads (an Ansible inventory: its tags such as
    !vault are left alone)."""
    text = read_text(path, limit)
    try:
        _check_shape(text, max_nodes, max_alias_nodes)
    except yaml.YAMLError as exc:
        raise _problem(path, text, exc) from exc


def require_mapping(path: Path, data: Any, what: str, docs: str, error: type[InputError] = InputError) -> Located:
    """The top of a loaded file as a mapping. An empty file (nothing, only comments, `null`) is
    an error, never "all defaults": a policy truncated to nothing must not become the default
    policy on every host."""
    if data is None:
        raise error(f"{path}:1: empty {what} file: it holds no settings (only comments, `null` or nothing); "
                    f"write the {what} (see {docs})")
    if not isinstance(data, Located):
        found = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        raise error(f"{path}:{getattr(data, 'line', 1) or 1}: a {what} is a mapping (key: value), not {found}; "
                    f"see {docs}")
    return data


def load_mapping(path: Path, what: str, docs: str, error: type[InputError] = InputError) -> Located:
    """`load` + `require_mapping`: how every Patchwave file whose top is a mapping is read."""
    return require_mapping(path, load(path), what, docs, error)


_TEMPLATE = re.compile(r"\{[{%#]")


def template_marker(value: Any) -> str | None:
    """The Jinja delimiter (`{{`, `{%`, `{#`) in a string, or in a list or mapping of strings
    (keys too), or None."""
    if isinstance(value, str):
        found = _TEMPLATE.search(value)
        return found.group(0) if found else None
    if isinstance(value, dict):
        return next((m for item in value.items() for m in map(template_marker, item) if m), None)
    if isinstance(value, list | tuple):
        return next((m for m in map(template_marker, value) if m), None)
    return None


def refuse_templates(value: Any) -> Any:
    """A pydantic validator body: a ValueError for a value holding template syntax. Values from
    Patchwave's files reach Ansible as data, so none may look like a template: one that did would
    be rendered by whichever layer forgets to mark it unsafe (`{{ lookup('pipe', ...) }}` runs a
    command on the controller)."""
    marker = template_marker(value)
    if marker is not None:
        raise ValueError(f"{marker!r} is Jinja template syntax: values are never templates (Ansible would run "
                         "them); write the text without it")
    return value


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

    problem = ValueError(f"unknown time zone {value[:64]!r} (use an IANA name like Europe/Berlin)")
    if not _ZONE.match(value):
        raise problem
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a directory (Europe), a name too long
        raise problem from exc
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
