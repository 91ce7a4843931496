"""Turn a template name, a locale and a context into a mail's subject, text and HTML.

Every word a customer or an engineer reads lives in ``templates/<locale>/``, not in
Python, so wording can be fixed (and translated) without touching the pipeline.

Template layout
---------------
* One file per message: ``templates/<locale>/<name>.j2``. It extends ``_base.j2``
  of the same locale and fills these blocks:

  - ``subject`` (required): one line; it is stripped and every control character
    (CR, LF, TAB, U+2028 …) becomes a space, so a subject can never break a header;
  - ``text`` (required): the plain-text body, the main part of every mail;
  - ``html`` (optional): an HTML body. Only messages that define this block get
    an HTML alternative.

  ``_base.j2`` wraps them with the shared signature and footer; a message may
  override the ``signature``, ``footer``, ``html_signature`` and ``html_footer``
  blocks. ``_labels.j2`` holds macros (``labels.status``, ``labels.priority``,
  ``labels.timer``) that turn codes into words; the base imports it as ``labels``.
  Other files starting with ``_`` are shared fragments (``_sla_details.j2``),
  never messages; every file in ``ru/`` has a twin in ``en/``.
* The first lines of every message template are a Jinja comment listing the
  context variables it needs. Undefined variables raise (``StrictUndefined``), so
  that comment is the contract callers must fill, in full.
* A message is rendered once with the reserved variable ``_part`` set to
  ``"text"``: ``_base.j2`` emits the subject, the reserved ``_split`` marker
  (random per process, so no mail content can hold it) and the text; then, if
  it has an ``html`` block, once more with ``"html"``. A layout of an older
  release, which emits one part per ``_part`` (``"subject"``, ``"text"``) and
  no marker, still works: the subject is then rendered on its own.
* The text parts are rendered with autoescape off, the HTML part by a second
  environment with autoescape on, so a customer's ``<script>`` stays harmless in
  HTML and stays readable in the text.

Filters: ``datetime(tz)`` (``пт, 20.11.2026 19:50 MSK`` / ``Fri 20 Nov 2026 19:50 MSK``),
``duration`` (minutes → ``2 ч 30 мин`` / ``2 h 30 min``), ``decimal`` (``12,5`` / ``12.5``),
``detag(tag)`` (remove a ticket tag already in a subject) and ``nl2br`` (HTML only).

Locales are ``ru`` and ``en``; anything else (or a message missing in the chosen
locale) falls back to ``en``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import jinja2.meta
from markupsafe import Markup, escape

LOCALES = ("ru", "en")
FALLBACK_LOCALE = "en"

# The variables _base.j2 switches on and splits with; callers may not pass them.
PART_VARIABLE = "_part"
SPLIT_VARIABLE = "_split"
# Between the subject and the text of one render: unguessable, so no content holds it.
_SPLIT = f"\x00{secrets.token_hex(8)}\x00"

# Template names are bare words: no paths, no hidden layout files.
_NAME = re.compile(r"[a-z][a-z0-9_]*")

# Everything that could end a header line, plus the other C0/C1 controls.
_HEADER_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_WEEKDAYS = {
    "ru": ("пн", "вт", "ср", "чт", "пт", "сб", "вс"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNITS = {"ru": ("ч", "мин"), "en": ("h", "min")}
# Genitive months ("7 декабря") and full English names, for promised times.
_MONTHS_RU_GEN = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
                  "сентября", "октября", "ноября", "декабря")
_MONTHS_EN_FULL = ("January", "February", "March", "April", "May", "June", "July", "August",
                   "September", "October", "November", "December")
_DECIMAL_POINT = {"ru": ",", "en": "."}


@dataclass(frozen=True)
class Rendered:
    """One rendered message: a single-line subject, a text body and an optional HTML body."""

    subject: str
    text: str
    html: str | None


def format_datetime(value: datetime, timezone: str, locale: str) -> str:
    """An aware datetime in ``timezone``, the way people of ``locale`` write it."""
    if not isinstance(value, datetime):
        raise TypeError(f"datetime filter needs a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime filter needs an aware datetime")
    local = value.astimezone(ZoneInfo(timezone))
    zone = local.strftime("%Z")
    # Many tzdata zones have no letters ("+05"); say UTC+05 so it reads as an offset.
    if zone[:1] in "+-":
        zone = "UTC" + zone
    weekday = _WEEKDAYS[locale][local.weekday()]
    if locale == "ru":
        return f"{weekday}, {local:%d.%m.%Y %H:%M} {zone}"
    month = _MONTHS_EN[local.month - 1]
    return f"{weekday} {local.day} {month} {local.year} {local:%H:%M} {zone}"


def format_duration(minutes: int | float, locale: str) -> str:
    """Minutes as hours and minutes: ``150`` → ``2 ч 30 мин`` / ``2 h 30 min``."""
    total = round(minutes)
    sign = "-" if total < 0 else ""
    hours, rest = divmod(abs(total), 60)
    hour_unit, minute_unit = _UNITS[locale]
    if hours and rest:
        return f"{sign}{hours} {hour_unit} {rest} {minute_unit}"
    if hours:
        return f"{sign}{hours} {hour_unit}"
    return f"{sign}{rest} {minute_unit}"


def format_promise(value: datetime, timezone: str, locale: str) -> str:
    """A promised instant as a customer reads it: ``10:30 пн, 7 декабря`` / ``10:30 Mon, 7 December``.

    No year and no zone name: a promise lies days ahead, in the customer's own zone.
    """
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError("promise filter needs an aware datetime")
    local = value.astimezone(ZoneInfo(timezone))
    weekday = _WEEKDAYS[locale][local.weekday()]
    months = _MONTHS_RU_GEN if locale == "ru" else _MONTHS_EN_FULL
    return f"{local:%H:%M} {weekday}, {local.day} {months[local.month - 1]}"


def _ru_genitive(count: int, one: str, many: str) -> str:
    """After «в течение»: 1, 21, 31 … take the genitive singular, the rest the plural."""
    return one if count % 10 == 1 and count % 100 != 11 else many


def format_within(minutes: int, locale: str) -> str:
    """A period in words for «в течение …» / "within …": ``30 минут``, ``1 часа``, ``2 hours``."""
    hours, rest = divmod(int(minutes), 60)
    parts: list[str] = []
    if locale == "ru":
        if hours:
            parts.append(f"{hours} {_ru_genitive(hours, 'часа', 'часов')}")
        if rest or not hours:
            parts.append(f"{rest} {_ru_genitive(rest, 'минуты', 'минут')}")
    else:
        if hours:
            parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
        if rest or not hours:
            parts.append(f"{rest} minute{'s' if rest != 1 else ''}")
    return " ".join(parts)


def format_decimal(value: int | float, locale: str, places: int = 1) -> str:
    """A number with the locale's decimal point; whole numbers lose their ``.0``."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.{places}f}".replace(".", _DECIMAL_POINT[locale])


def detag(subject: str, tag: str) -> str:
    """``subject`` without ``tag`` (case-insensitive), so templates can add it exactly once."""
    if not tag:
        return subject
    return " ".join(re.sub(re.escape(tag), " ", subject, flags=re.IGNORECASE).split())


def nl2br(value: str) -> Markup:
    """Escape ``value`` and keep its line breaks as ``<br>`` (HTML only)."""
    return Markup("<br>\n").join(escape(line) for line in str(value).splitlines())


def one_line(value: str) -> str:
    """Collapse a rendered subject to one clean line."""
    return " ".join(_HEADER_BREAKERS.sub(" ", value).split())


def normalise_locale(locale: str) -> str:
    """``ru_RU``/``ru-RU``/``RU`` → ``ru``; an unsupported locale → the fallback."""
    short = locale.strip().lower().replace("-", "_").split("_", 1)[0]
    return short if short in LOCALES else FALLBACK_LOCALE


def _environment(directory: Path, locale: str, *, html: bool) -> jinja2.Environment:
    """One Jinja2 environment for one locale and one part kind."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        # Templates change with a config reload (SIGHUP builds a new Renderer), not
        # under a running one: no stat() of every file on every render.
        auto_reload=False,
    )
    filters: dict[str, Callable[..., Any]] = {
        "datetime": partial(_datetime_filter, locale=locale),
        "duration": partial(format_duration, locale=locale),
        "decimal": partial(format_decimal, locale=locale),
        "promise": partial(_promise_filter, locale=locale),
        "within": partial(format_within, locale=locale),
        "detag": detag,
        "nl2br": nl2br,
    }
    env.filters.update({name: _strict(function) for name, function in filters.items()})
    return env


def _strict(function: Callable[..., Any]) -> Callable[..., Any]:
    """Make a filter raise UndefinedError for an undefined value or argument.

    Jinja hands filters the ``StrictUndefined`` object itself; without this a
    missing variable would surface as a puzzling TypeError inside the filter.
    """

    def checked(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, jinja2.Undefined):
                # str() of a StrictUndefined raises UndefinedError naming the variable.
                str(arg)
        return function(*args, **kwargs)

    return checked


def _datetime_filter(value: datetime, timezone: str, *, locale: str) -> str:
    """Adapter so templates write ``value|datetime(tz)``."""
    return format_datetime(value, timezone, locale)


def _promise_filter(value: datetime, timezone: str, *, locale: str) -> str:
    """Adapter so templates write ``value|promise(tz)``."""
    return format_promise(value, timezone, locale)


class Renderer:
    """Renders message templates from one templates directory (``templates/``)."""

    def __init__(self, templates_dir: Path) -> None:
        self._dir = Path(templates_dir)
        # Two environments per locale: text (no escaping) and HTML (autoescape).
        self._envs = {
            locale: (
                _environment(self._dir / locale, locale, html=False),
                _environment(self._dir / locale, locale, html=True),
            )
            for locale in LOCALES
        }
        # (name, asked locale) → the locale that renders it; files are read once, like
        # the templates themselves.
        self._locales: dict[tuple[str, str], str] = {}

    def names(self, locale: str) -> tuple[str, ...]:
        """Message templates available in ``locale`` (layout files excluded), sorted."""
        folder = self._dir / normalise_locale(locale)
        return tuple(
            sorted(p.stem for p in folder.glob("*.j2") if _NAME.fullmatch(p.stem))
        )

    def locale_for(self, name: str, locale: str) -> str:
        """The locale whose template will render ``name``: the asked one, else ``en``."""
        key = (name, locale)
        chosen = self._locales.get(key)
        if chosen is None:
            chosen = normalise_locale(locale)
            if not (self._dir / chosen / f"{name}.j2").is_file():
                chosen = FALLBACK_LOCALE
            self._locales[key] = chosen
        return chosen

    def compile_all(self) -> list[str]:
        """Compile every template of every locale now; the problems as ``file:line: reason``.

        Templates are otherwise compiled by the first mail that needs them, so an
        admin's syntax error would surface as that mail failing; ``check-config``
        (which ``scripts/serve.sh`` runs before every start) reports them instead.
        Not done by the daemon itself: all of them take about a second.
        """
        problems: list[str] = []
        for locale, (text_env, html_env) in self._envs.items():
            for path in sorted((self._dir / locale).glob("*.j2")):
                try:
                    template = text_env.get_template(path.name)
                    if _NAME.fullmatch(path.stem) and "html" in template.blocks:
                        html_env.get_template(path.name)
                    # extends/import/include are looked up when rendering: check them now.
                    source = path.read_text(encoding="utf-8")
                    for used in jinja2.meta.find_referenced_templates(text_env.parse(source)):
                        if used is not None and not (path.parent / used).is_file():
                            problems.append(f"{path}: uses {used}, which is not in {path.parent}")
                except jinja2.TemplateSyntaxError as error:
                    problems.append(f"{error.filename or path}:{error.lineno}: {error.message}")
        return problems

    def render(self, name: str, locale: str, context: Mapping[str, Any]) -> Rendered:
        """Render message ``name`` in ``locale``; a missing context variable raises.

        :raises jinja2.UndefinedError: the context lacks a variable the template uses.
        :raises jinja2.TemplateNotFound: no such message, not even in ``en``.
        :raises ValueError: a bad name, or a context that sets ``_part``.
        """
        if not _NAME.fullmatch(name):
            raise ValueError(f"bad template name {name!r}")
        if PART_VARIABLE in context or SPLIT_VARIABLE in context:
            raise ValueError(f"{PART_VARIABLE!r} and {SPLIT_VARIABLE!r} are reserved for the layout")
        text_env, html_env = self._envs[self.locale_for(name, locale)]
        template = text_env.get_template(f"{name}.j2")
        both = template.render({**context, PART_VARIABLE: "text", SPLIT_VARIABLE: _SPLIT})
        subject, split, text = both.partition(_SPLIT)
        if not split:  # a layout that renders one part at a time (see the module's docstring)
            text = subject
            subject = template.render({**context, PART_VARIABLE: "subject"})
        html: str | None = None
        if "html" in template.blocks:
            html_template = html_env.get_template(f"{name}.j2")
            html = html_template.render({**context, PART_VARIABLE: "html"}).strip() + "\n"
        return Rendered(subject=one_line(subject), text=text.strip("\n") + "\n", html=html)
