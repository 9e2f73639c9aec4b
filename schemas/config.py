"""Frozen dataclass configs loaded from YAML with `--set key=value` overrides.

One config dataclass per stage (STYLE.md point 2). Nested dataclasses become nested YAML mappings and
dotted override keys (`--set crop.mode=square`). A run's config is a stack: `--config A.yaml --config B.yaml`
(each file after the files its `_base_` key names, as detectron2's `_BASE_` and mmdet's `_base_` do), merged left
to right, then `--set`. An unknown key, a wrong type, a value where a section belongs, a value out of range and a
`_base_` cycle are errors that name the dotted key and the file (or --set) that set it.

Why our loader rather than OmegaConf or pydantic: the configs are plain frozen dataclasses with `Literal` choices,
which OmegaConf's structured configs do not type (they take Enums), neither library layers files by a `_base_` key,
and the whole loader is this one file with no dependency beyond PyYAML.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A config file or override that does not fit the config dataclass."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass inside `tp` (itself, or the non-None member of `X | None`)."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1 and dataclasses.is_dataclass(members[0]):
            return members[0]
    return None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the field type where the conversion is lossless (lists → tuples, int → float);
    anything else of the wrong type is a ConfigError naming `key` (a bool is not an int, a number not a string)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, members[0], key) if len(members) == 1 else value
    if origin is typing.Literal:
        # `True == 1` in Python: a bool matches only a bool choice, a number only a number of its own type.
        if not any(value == choice and type(value) is type(choice) for choice in typing.get_args(tp)):
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{key}[]") for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads "1e-4" (no dot) as a string; it is plainly meant as a number.
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"config key {key!r}: expected {tp.__name__}, got the boolean {value!r}")
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"config key {key!r}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[C], data: dict, prefix: str = "") -> C:
    """Build `cls` from a nested mapping; unknown keys, wrong types, a value where a section belongs and values
    out of range (the dataclass's own checks) raise ConfigError naming the full dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {data!r}")
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r} (valid keys here: {', '.join(sorted(types_))})")
    kwargs = {}
    for name, value in data.items():
        tp, key = types_[name], prefix + name
        nested = _dataclass_in(tp)
        if nested is not None and isinstance(value, dict):
            kwargs[name] = from_dict(nested, value, key + ".")
        elif nested is not None and not (value is None and _allows_none(tp)):
            raise ConfigError(f"config key {key!r} is a section: give it a mapping of its keys "
                              f"({', '.join(sorted(_field_types(nested)))}), not {value!r}")
        else:
            kwargs[name] = _coerce(value, tp, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        # The dataclasses' range checks name their dotted key from the run's root already.
        raise ConfigError(str(error)) from error


def _allows_none(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def to_dict(config: Any) -> dict:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {'.'.join(parts[:depth + 1])!r} is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`key.sub=value` → (`key.sub`, YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {text}: the value is not valid YAML ({error.problem})") from error


BASE_KEY = "_base_"


def read_config_layers(paths: str | Path | Sequence[str | Path] | None) -> list[tuple[Path, dict]]:
    """The YAML layers of `paths` in merge order: for each file, its `_base_` files first (a path or a list of
    paths, relative to the file that names them, themselves layered the same way), then the file itself without
    its `_base_` key. A file reached twice through different bases is read once, at its first place. A cycle is
    a ConfigError naming the chain."""
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    layers: list[tuple[Path, dict]] = []
    seen: set[Path] = set()

    def visit(path: Path, chain: tuple[Path, ...], named_by: str) -> None:
        resolved = path.resolve()
        if resolved in chain:
            cycle = " -> ".join(str(p) for p in (*chain[chain.index(resolved):], resolved))
            raise ConfigError(f"config files include each other through {BASE_KEY}: {cycle}")
        if resolved in seen:
            return
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} ({named_by})")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        bases = loaded.pop(BASE_KEY, [])
        bases = [bases] if isinstance(bases, str) else bases
        if not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
            raise ConfigError(f"config file {path}: {BASE_KEY} must be a path or a list of paths, got {bases!r}")
        for base in bases:
            visit(path.parent / base, (*chain, resolved), f"{BASE_KEY} of {path}")
        seen.add(resolved)
        layers.append((path, loaded))

    for path in paths:
        visit(Path(path), (), "flag --config")
    return layers


def merged_config_data(paths: str | Path | Sequence[str | Path] | None,
                       overrides: Iterable[str] = ()) -> tuple[dict, dict[str, str]]:
    """The config layers of `paths` merged in order, then the `key=value` overrides. Returns the merged data and,
    for every dotted key a layer or override set, where it was last set (a file path or "--set")."""
    data: dict = {}
    origins: dict[str, str] = {}
    for path, layer in read_config_layers(paths):
        _merge(data, layer, "", str(path), origins)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
        origins[key] = "--set"
    return data, origins


def with_origin(error: Exception, origins: dict[str, str]) -> Exception:
    """`error` with the file (or --set) that set the key it names, when one did: a quoted key ('crop.mode') or
    its section first, else the longest set key the message names as a word (range checks name it unquoted).
    The error keeps its type (a ConfigError when that type cannot be built from a message); `error` itself when
    it names no key a layer set."""
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    origin = None
    for key in (part for part in message.split("'")[1::2] if part):
        origin = next((origins[c] for c in _key_and_parents(key.rstrip("[]")) if c in origins), None)
        if origin:
            break
    if origin is None:
        origin = next((origins[key] for key in sorted(origins, key=len, reverse=True)
                       if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message)), None)
    if origin is None:
        return error
    try:
        return type(error)(f"{message} (set in {origin})")
    except TypeError:
        return ConfigError(f"{message} (set in {origin})")


@contextlib.contextmanager
def origins_named(origins: dict[str, str]):
    """Errors raised inside (a missing file, a wrong model, a check before any work) come out naming the config
    file or --set that set the key their message names."""
    try:
        yield
    except (ValueError, OSError, KeyError) as error:
        named = with_origin(error, origins)
        if named is error:
            raise
        raise named from error


def _key_and_parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:end]) for end in range(len(parts), 0, -1)]


def build_config(cls: type[C], data: dict, origins: dict[str, str] | None = None) -> C:
    """The defaults of `cls` updated by `data` (merged config layers); errors name the file that set the key."""
    merged = to_dict(cls())
    _merge(merged, data, "", "", {})
    try:
        return from_dict(cls, merged)
    except ConfigError as error:
        raise with_origin(error, origins or {}) from error


def load_config(cls: type[C], paths: str | Path | Sequence[str | Path] | None = None,
                overrides: Iterable[str] = ()) -> C:
    """Defaults of `cls`, updated by the YAML files at `paths` (each after its `_base_` files), left to right,
    updated by `key=value` overrides. Errors name the dotted key and the file or --set that set it."""
    return build_config(cls, *merged_config_data(paths, overrides))


def load_config_and_origins(cls: type[C], paths: str | Path | Sequence[str | Path] | None = None,
                            overrides: Iterable[str] = ()) -> tuple[C, dict[str, str]]:
    """load_config, and where each key a layer set was set (for later errors: origins_named)."""
    data, origins = merged_config_data(paths, overrides)
    return build_config(cls, data, origins), origins


def _merge(base: dict, update: dict, prefix: str, origin: str, origins: dict[str, str]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{prefix}{key}.", origin, origins)
        else:
            base[key] = copy.deepcopy(value)
            origins[prefix + key] = origin


def config_hash(config: Any) -> str:
    """sha256 of the canonical JSON of the config: same settings, same hash."""
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="YAML file with this stage's settings; repeatable, merged left to right (each after "
                             f"the files its {BASE_KEY} key names)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set crop.mode=square (repeatable)")
