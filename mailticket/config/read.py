"""Shared tools for validating config sections: a problem collector and typed readers.

Every section reader in ``config_validate``, ``config_sla`` and ``config_contracts``
uses these to read a value of the type its dataclass field declares, to apply the
common checks (ports, ranges, choices, files, addresses) and to report each
mistake with its key path instead of stopping at the first one.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from mailticket.config.locate import Key, Locator, format_key
from mailticket.errors import ConfigProblem


class Problems:
    """Collects problems with their lines, so validation can go on after the first one."""

    def __init__(self, file: str, locator: Locator | None) -> None:
        self.file = file
        self.locator = locator
        self.items: list[ConfigProblem] = []

    def add(self, path: Key, reason: str) -> None:
        line = self.locator.line_of(path) if self.locator else 1
        self.items.append(ConfigProblem(self.file, line, format_key(path), reason))

    def line(self, path: Key) -> int:
        return self.locator.line_of(path) if self.locator else 1


def describe(value: object) -> str:
    """A short rendering of a wrong value for a reason text."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def check_keys(p: Problems, table: Mapping[str, Any], path: Key, known: Iterable[str]) -> None:
    """Report each key of ``table`` not in ``known``, with a close match if there is one."""
    names = list(known)
    for key in table:
        if key in names:
            continue
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"did you mean {close[0]}?" if close else f"expected one of {', '.join(names)}"
        p.add((*path, key), f"unknown key; {hint}")


def as_table(p: Problems, value: object, path: Key) -> dict[str, Any] | None:
    """``value`` if it is a table, else report it and return None."""
    if isinstance(value, dict):
        return value
    p.add(path, f"expected a table, got {describe(value)}")
    return None


_BAD = object()


def _convert(p: Problems, path: Key, value: object, hint: Any) -> Any:
    """Check ``value`` against a dataclass field type; report and return ``_BAD`` on mismatch."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint):
        hint = args[0]
    if hint is bool:
        ok, expected = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a number"
        value = float(value) if ok else value  # type: ignore[arg-type]
    elif hint is str:
        ok, expected = isinstance(value, str), "a string"
    elif hint is Path:
        ok, expected = isinstance(value, str) and value != "", "a path"
        value = Path(value) if ok else value  # type: ignore[arg-type]
    else:  # tuple[str, ...]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        expected = "a list of strings"
        value = tuple(value) if ok else value  # type: ignore[arg-type]
    if ok:
        return value
    p.add(path, f"expected {expected}, got {describe(value)}")
    return _BAD


def read_fields(
    p: Problems, table: Mapping[str, Any], path: Key, cls: type, extra: Iterable[str] = ()
) -> tuple[dict[str, Any], bool]:
    """Read dataclass ``cls``'s fields from ``table``; also say whether every required one came."""
    hints = typing.get_type_hints(cls)
    check_keys(p, table, path, [*(f.name for f in fields(cls)), *extra])
    values: dict[str, Any] = {}
    complete = True
    for f in fields(cls):
        required = f.default is MISSING and f.default_factory is MISSING
        if f.name not in table:
            if required:
                p.add((*path, f.name), "missing required key")
                complete = False
            continue
        value = _convert(p, (*path, f.name), table[f.name], hints[f.name])
        if value is _BAD:
            complete = complete and not required
        else:
            values[f.name] = value
    return values, complete


def check_choice(
    p: Problems, values: dict[str, Any], path: Key, key: str, choices: Iterable[str]
) -> None:
    """Report a value outside ``choices`` and drop it, so the default applies."""
    options = list(choices)
    if key in values and values[key] not in options:
        p.add((*path, key), f"must be one of {', '.join(options)}")
        # Fall back to the default so later checks do not repeat this mistake.
        del values[key]


def check_minimum(p: Problems, values: dict[str, Any], path: Key, key: str, low: float) -> None:
    """Report a number below ``low``."""
    if key in values and values[key] < low:
        p.add((*path, key), f"must be at least {low:g}")


def check_positive(p: Problems, values: dict[str, Any], path: Key, *keys: str) -> None:
    """Report numbers that are not above zero."""
    for key in keys:
        if key in values and values[key] <= 0:
            p.add((*path, key), "must be greater than 0")


def check_port(p: Problems, values: dict[str, Any], path: Key) -> None:
    """Report a TCP port outside 1-65535."""
    if "port" in values and not 1 <= values["port"] <= 65535:
        p.add((*path, "port"), "port must be 1-65535")


def check_retry_range(p: Problems, values: dict[str, Any], path: Key) -> None:
    """Check a backoff pair: both positive, the maximum not below the base."""
    check_positive(p, values, path, "retry_base_seconds", "retry_max_seconds")
    base, top = values.get("retry_base_seconds"), values.get("retry_max_seconds")
    if base is not None and top is not None and 0 < top < base:
        p.add((*path, "retry_max_seconds"), f"must be at least retry_base_seconds ({base:g})")


def resolve_file(p: Problems, values: dict[str, Any], path: Key, key: str, base: Path) -> None:
    """Resolve a path key against the config directory and require that the file exists."""
    if key in values:
        values[key] = absolute(base, values[key])
        if not values[key].is_file():
            p.add((*path, key), f"file not found: {values[key]}")


def absolute(base: Path, path: Path) -> Path:
    """``path`` made absolute against ``base`` (the config file's directory)."""
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


def is_loopback(host: str) -> bool:
    """Whether binding or connecting to ``host`` stays on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def domain_problem(domain: str) -> str | None:
    """Why ``domain`` is not an ASCII host name, or None."""
    if not domain.isascii():
        return f"invalid domain {domain!r}: write it in punycode (xn--…)"
    if len(domain) > 253 or not _DOMAIN_NAME.fullmatch(domain):
        return f"invalid domain {domain!r}"
    return None


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a plain ASCII addr-spec, or None."""
    if not address.isascii():
        return f"invalid address {address!r}: use ASCII (a domain in punycode, xn--…)"
    local, at, domain = address.rpartition("@")
    if not at or not local or not _LOCAL_PART.fullmatch(local) or len(local) > 64:
        return f"invalid address {address!r}"
    return f"invalid address {address!r}" if domain_problem(domain) else None


def read_addresses(
    p: Problems,
    items: Iterable[str],
    path: Key,
    seen: dict[str, Key] | None = None,
    plus: bool = True,
) -> tuple[str, ...]:
    """Validate and lower-case a list of addresses, reporting bad ones and duplicates.

    :param seen: shared between calls to find the same address in two lists.
    :param plus: whether ``+`` may appear in the local part; our own addresses
        must not use it, because plus-addressing carries reply tokens.
    """
    seen = {} if seen is None else seen
    out = []
    for index, raw in enumerate(items):
        address = raw.strip().lower()
        problem = address_problem(address)
        if problem:
            p.add((*path, index), problem)
        elif not plus and "+" in address.rpartition("@")[0]:
            p.add(
                (*path, index),
                f"{address!r} must not contain '+': plus-addressing carries reply tokens",
            )
        elif address in seen:
            p.add(
                (*path, index),
                f"duplicate address {address!r} (also at line {p.line(seen[address])})",
            )
        else:
            seen[address] = (*path, index)
            out.append(address)
    return tuple(out)


def get_value(
    p: Problems,
    table: Mapping[str, Any],
    path: Key,
    key: str,
    hint: Any,
    default: Any = None,
    required: bool = False,
) -> Any:
    """One typed value; a missing required key or a wrong type is reported and gives ``default``."""
    if key not in table:
        if required:
            p.add((*path, key), "missing required key")
        return default
    value = _convert(p, (*path, key), table[key], hint)
    return default if value is _BAD else value


def unknown_reference(kind: str, value: str, known: Iterable[str], plural: str) -> str:
    """ "unknown engineer 'x' (engineers are: a, b)" for a dangling reference."""
    names = sorted(known)
    listed = f"{plural} are: {', '.join(names)}" if names else f"no {plural} are configured"
    return f"unknown {kind} {value!r} ({listed})"


def read_entries(
    p: Problems, raw: object, section: str
) -> list[tuple[Key, str | None, dict[str, Any]]]:
    """``[[section]]`` or ``[section.ID]`` tables, as (path, id taken from the key, table)."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        out: list[tuple[Key, str | None, dict[str, Any]]] = []
        for key, value in raw.items():
            table = as_table(p, value, (section, key))
            if table is not None:
                out.append(((section, key), key, table))
        return out
    if isinstance(raw, list) and all(isinstance(t, dict) for t in raw):
        return [((section, i), None, t) for i, t in enumerate(raw)]
    p.add((section,), f"expected [[{section}]] tables or [{section}.ID] tables")
    return []


ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ID_REASON = "must be letters, digits, '.', '_' or '-'"
