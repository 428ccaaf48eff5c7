"""The one set of configuration checks. Each names the key, the value and what is allowed.

A setting's rule is declared once, on its dataclass field (`field(default=..., metadata=number(0, 1))`),
and `section` reads a whole TOML table by those rules, so a bad file stops start-up with one
line that says how to fix it. The same checks serve the page forms and the CLI.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A configuration value that is missing or not allowed."""


def fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key} = {value!r} is not allowed: expected {allowed}")


def get(table: dict, key: str, prefix: str, kind: type | tuple, default: Any, allowed: str) -> Any:
    if key not in table:
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # TOML booleans are ints in Python; never accept one where a number is expected.
    if isinstance(value, bool) and bool not in kinds:
        raise fail(f"{prefix}{key}", value, allowed)
    if not isinstance(value, kinds):
        raise fail(f"{prefix}{key}", value, allowed)
    return value


def number(table, key, prefix, default, lo=0.0, hi=None, lo_open=False) -> float:
    allowed = f"a number {'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
    v = get(table, key, prefix, (int, float), default, allowed)
    # NaN and infinity compare false with every bound: refuse them by name.
    if not math.isfinite(v) or (v < lo or (lo_open and v == lo)) or (hi is not None and v > hi):
        raise fail(f"{prefix}{key}", v, allowed)
    return float(v)


def integer(table, key, prefix, default, lo=0, hi=None) -> int:
    allowed = f"a whole number >= {lo}" + (f" and <= {hi}" if hi is not None else "")
    v = get(table, key, prefix, int, default, allowed)
    if v is not None and (v < lo or (hi is not None and v > hi)):
        raise fail(f"{prefix}{key}", v, allowed)
    return v


def text(table, key, prefix, default, choices=None) -> str | None:
    allowed = "one of " + ", ".join(repr(c) for c in choices) if choices else "a non-empty string"
    v = get(table, key, prefix, str, default, allowed)
    if v is None:
        return v
    if (choices and v not in choices) or not v.strip():
        raise fail(f"{prefix}{key}", v, allowed)
    return v


def flag(table, key, prefix, default) -> bool:
    return get(table, key, prefix, bool, default, "true or false")


def check_keys(table: dict, known: set[str], prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{prefix}{key} is not a known setting: expected one of {', '.join(sorted(known))}")


# --- rules declared on dataclass fields ------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How one setting is read: a number or whole number in a range, a string, a choice, a flag."""

    kind: str
    lo: float = 0
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()

    def read(self, table: dict, key: str, prefix: str, default: Any) -> Any:
        if self.kind == "number":
            return number(table, key, prefix, default, self.lo, self.hi, self.lo_open)
        if self.kind == "whole":
            return integer(table, key, prefix, default, int(self.lo), self.hi)
        if self.kind == "flag":
            return flag(table, key, prefix, default)
        return text(table, key, prefix, default, self.choices or None)


def in_range(lo: float = 0.0, hi: float | None = None, *, lo_open: bool = False) -> dict:
    """Field metadata: a number from `lo` (excluded when `lo_open`) to `hi`."""
    return {"rule": Rule("number", lo, hi, lo_open)}


def whole(lo: int = 0, hi: int | None = None) -> dict:
    """Field metadata: a whole number from `lo` to `hi`."""
    return {"rule": Rule("whole", lo, hi)}


def one_of(*choices: str) -> dict:
    return {"rule": Rule("text", choices=tuple(choices))}


FLAG = {"rule": Rule("flag")}


def section(cls: type, table: dict, prefix: str, known: set[str] | None = None, **given: Any) -> Any:
    """An instance of the dataclass `cls` from a TOML table, every field checked by its rule.

    `known` is the table's allowed keys (default: the fields). Fields without a rule come in
    `given`, checked by the caller (the irregular ones: lists, names, cross-references)."""
    check_keys(table, known if known is not None else {f.name for f in fields(cls)}, prefix)
    values = dict(given)
    for f in fields(cls):
        if f.name in given or "rule" not in f.metadata:
            continue
        default = f.default if f.default is not MISSING else None
        values[f.name] = f.metadata["rule"].read(table, f.name, prefix, default)
    return cls(**values)
