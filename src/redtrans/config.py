"""The one config layer: stage configs are pydantic v2 models, read from YAML + ``--set a.b=v`` overrides.

Every stage config derives from `StageConfig`: unknown fields are refused, types and ranges are checked, and
each field's docstring is its description (so ``--help``, `model_json_schema()` and docs show it). One loader
serves every stage:

```python
cfg = load_config(SampleConfig, "sample.yaml", parse_overrides(["m1.parallel=2", "corpora.0.max_rows=40"]))
```

Override values are parsed as YAML (``3``, ``1e-4``, ``true``, ``[q_proj, v_proj]``, ``null``); dotted keys
reach into nested models and lists (``corpora.0.max_rows``). A validation failure raises `ConfigError` naming
the source and every field that is wrong. Serving adds environment variables through pydantic-settings
(`redtrans.serve.config`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from redtrans.errors import ConfigError

__all__ = [
    "ConfigError",
    "StageConfig",
    "apply_override",
    "format_validation_error",
    "load_config",
    "parse_overrides",
    "read_yaml_mapping",
    "validate_config",
]

M = TypeVar("M", bound=BaseModel)


class StageConfig(BaseModel):
    """Base of stage configs: unknown fields refused, docstrings as field descriptions, checked assignment."""

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
        validate_default=True,
    )


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One readable line per problem: ``source: field.sub: message (got value)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # our own validator's message, without pydantic's "Value error, "
        got = err.get("input")
        shown = "" if err["type"] in {"missing", "extra_forbidden"} or isinstance(got, Mapping) else f" (got {got!r})"
        lines.append(f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}")
    return f"{source}: " + "; ".join(lines)


def validate_config(cls: type[M], values: Mapping[str, Any], source: str = "config") -> M:
    """Build `cls` from plain data, turning pydantic's ValidationError into one ConfigError."""
    try:
        return cls.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["a=1", "b.c=[x, y]"]`` → ``{"a": 1, "b.c": ["x", "y"]}`` (values parsed as YAML; keys stay dotted)."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (dotted keys, YAML values), got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key.strip()}: invalid YAML value {raw!r}: {exc}") from None
    return out


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c`` = value inside nested dicts/lists (lists indexed by number), creating mappings."""
    keys = dotted.split(".")
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            try:
                index = int(key)
                if last:
                    node[index] = value
                    return
                node = node[index]
            except (ValueError, IndexError):
                raise ConfigError(f"--set {dotted}: {key!r} is not an index of a {len(node)}-item list") from None
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {'.'.join(keys[:i])} is not a mapping")
        if last:
            node[key] = value
            return
        if not isinstance(node.get(key), dict | list):
            node[key] = {} if node.get(key) is None else node[key]
            if not isinstance(node[key], dict | list):
                raise ConfigError(f"--set {dotted}: {'.'.join(keys[: i + 1])} is {node[key]!r}, not a mapping")
        node = node[key]


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file (empty file = {}); ConfigError naming the file otherwise."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"{p}: expected a mapping of field: value, got {type(loaded).__name__}")
    return dict(loaded)


def merge_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A deep copy of `values` with dotted `overrides` applied (None values are skipped: unset CLI options)."""
    data = copy.deepcopy(dict(values))
    for key, value in (overrides or {}).items():
        if value is not None:
            apply_override(data, key, value)
    return data


def load_config(cls: type[M], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> M:
    """Read `path` (YAML mapping, optional), apply dotted `overrides` on top and validate as `cls`."""
    values: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    return validate_config(cls, merge_overrides(values, overrides), str(path) if path else "config")
