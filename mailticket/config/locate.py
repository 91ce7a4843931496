"""Find the line of a key path in a TOML text, so every config problem names its line.

tomllib gives plain dicts without positions. Validation works on those dicts and
names a problem by its key path (``("contracts", 1, "sla_plan")``); this module
maps such a path back to the line where the admin wrote it, and renders the path
the way the admin would write it (``contracts[1].sla_plan``).
"""

from __future__ import annotations

import bisect
import contextlib
import re
import tomllib

Key = tuple[str | int, ...]
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def format_key(path: Key) -> str:
    """``("contracts", 1, "sla_plan")`` → ``contracts[1].sla_plan``; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
            out += f".{text}" if out else text
    return out


class Locator:
    """Maps key paths to 1-based line numbers by scanning TOML that tomllib already accepted.

    tomllib returns plain dicts without positions, so this re-reads the text:
    table headers (``[[x]]`` counted by occurrence), dotted keys, inline tables
    and array elements. It is best effort; :meth:`line_of` falls back to the
    nearest enclosing key that was found, then to line 1.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[Key, int] = {}
        self.counts: dict[Key, int] = {}
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        # A construct this small scanner does not know stops it; keep what it found.
        with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError):
            self._document()

    def line_of(self, path: Key) -> int:
        """The line of ``path`` or of its nearest located ancestor."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1

    def _line(self) -> int:
        """The 1-based line of the scan position."""
        return bisect.bisect_left(self.newlines, self.pos) + 1

    def _record(self, path: Key) -> None:
        """Remember the first line where ``path`` appears."""
        self.lines.setdefault(path, self._line())

    def _skip(self, newlines: bool) -> None:
        """Skip blanks and comments (and newlines when ``newlines``)."""
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self.pos += 1
            elif c == "#":
                while self.pos < len(text) and text[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    def _document(self) -> None:
        """Scan the whole text: table headers and key/value pairs."""
        table: Key = ()
        while True:
            self._skip(newlines=True)
            if self.pos >= len(self.text):
                return
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                base = self._resolve(self._key(), keep_last=False)
                self.counts[base] = self.counts.get(base, -1) + 1
                table = (*base, self.counts[base])
                self._record(base)
                self._record(table)
                self.pos = self.text.index("]]", self.pos) + 2
            elif self.text[self.pos] == "[":
                self.pos += 1
                table = self._resolve(self._key(), keep_last=True)
                for end in range(1, len(table) + 1):
                    self._record(table[:end])
                self.pos = self.text.index("]", self.pos) + 1
            else:
                self._pair(table)

    def _resolve(self, keys: Key, keep_last: bool) -> Key:
        """Header keys to a full path, with the current index of each array of tables."""
        # A header below an array of tables refers to that array's latest element.
        path: Key = ()
        for i, part in enumerate(keys):
            path = (*path, part)
            last = i == len(keys) - 1
            if path in self.counts and not (last and not keep_last):
                path = (*path, self.counts[path])
        return path

    def _pair(self, table: Key) -> None:
        """One ``key = value``, recording every prefix of a dotted key."""
        keys = self._key()
        for end in range(1, len(keys) + 1):
            self._record((*table, *keys[:end]))
        self._skip(newlines=False)
        self.pos += 1  # the "="
        self._skip(newlines=False)
        self._value((*table, *keys))

    def _key(self) -> Key:
        """A bare, quoted or dotted key as its parts."""
        parts: list[str | int] = []
        text = self.text
        while True:
            self._skip(newlines=False)
            c = text[self.pos]
            if c in "\"'":
                start = self.pos
                self._string()
                parts.append(tomllib.loads("k = " + text[start : self.pos])["k"])
            else:
                match = _BARE.match(text, self.pos)
                if match is None:
                    raise ValueError("no key")
                parts.append(match.group())
                self.pos = match.end()
            self._skip(newlines=False)
            if text[self.pos] != ".":
                return tuple(parts)
            self.pos += 1

    def _string(self) -> None:
        """Skip a basic, literal or multi-line string."""
        text = self.text
        quote = text[self.pos]
        if text.startswith(quote * 3, self.pos):
            self.pos += 3
            while not text.startswith(quote * 3, self.pos):
                self.pos += 2 if quote == '"' and text[self.pos] == "\\" else 1
            # Up to two quotes may sit right before the closing delimiter.
            while self.pos < len(text) and text[self.pos] == quote:
                self.pos += 1
            return
        self.pos += 1
        while text[self.pos] != quote:
            self.pos += 2 if quote == '"' and text[self.pos] == "\\" else 1
        self.pos += 1

    def _value(self, path: Key) -> None:
        """Skip one value, recording array elements and inline-table keys."""
        text = self.text
        c = text[self.pos]
        if c in "\"'":
            self._string()
        elif c == "[":
            self.pos += 1
            index = 0
            while True:
                self._skip(newlines=True)
                if text[self.pos] == "]":
                    self.pos += 1
                    return
                self._record((*path, index))
                self._value((*path, index))
                index += 1
                self._skip(newlines=True)
                if text[self.pos] == ",":
                    self.pos += 1
        elif c == "{":
            self.pos += 1
            while True:
                self._skip(newlines=False)
                if text[self.pos] == "}":
                    self.pos += 1
                    return
                self._pair(path)
                self._skip(newlines=False)
                if text[self.pos] == ",":
                    self.pos += 1
        else:
            while self.pos < len(text) and text[self.pos] not in ",]}#\n":
                self.pos += 1
