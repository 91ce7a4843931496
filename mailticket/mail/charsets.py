"""Turn mail bytes into text when the charset is missing, unknown or simply wrong.

Russian mail still arrives as raw KOI8-R or windows-1251, often without a
declared charset or with a wrong one (``iso-8859-1`` stamped on cp1251 text,
``utf-8`` on KOI8-R). Decoding with the declared charset alone gives U+FFFD or
mojibake, so this module trusts a declaration only while the result looks
plausible and otherwise guesses with charset-normalizer, restricted to the
Cyrillic and Latin codecs our customers actually use. Only when neither fits
(no plausible Cyrillic reading, runs of 8-bit bytes a Latin text never has)
does a second, wider pass let it name any script it can tell apart (Chinese,
Japanese, Korean, Greek, Turkish, Central European, Arabic, Thai ...): short
Russian text is ambiguous with most of them, so Cyrillic is asked first, and
the wider answer is recorded as a note.

charset-normalizer misjudges short KOI8-R text (INFRA.md "Helper libraries"),
so a guess of KOI8-R or cp1251 is settled by a tiebreak: real text is mostly
lower case, and KOI8-R keeps lower-case letters at 0xC0-0xDF where cp1251
keeps upper-case ones.
"""

from __future__ import annotations

import binascii
import codecs
import contextlib
import functools
import re
from dataclasses import dataclass

from charset_normalizer import from_bytes

# The only codecs the detector may answer with. Latin codecs are in the list
# so that undeclared Western European mail is not forced into Cyrillic.
_CANDIDATES = (
    "utf_8",
    "cp1251",
    "koi8_r",
    "cp1252",
    "iso8859_15",
    "cp866",
)
# The second pass, for 8-bit text that no Cyrillic or Latin codec reads well.
_WIDE_CANDIDATES = (
    "gb18030",
    "big5",
    "cp932",
    "euc_jp",
    "cp949",
    "cp1253",
    "cp1254",
    "cp1250",
    "cp1257",
    "cp1255",
    "cp1256",
    "cp874",
    "cp1258",
)
# A wider answer counts only if charset-normalizer found it this clean.
_WIDE_MAX_CHAOS = 0.1
_CYRILLIC = frozenset({"cp1251", "koi8_r", "cp866"})
_LATIN = frozenset({"ascii", "latin_1", "cp1252", "iso8859_15", "iso8859_2", "cp1250"})
# Declarations that name no charset at all; the bytes must speak for themselves.
_UNDECLARED = frozenset({"", "unknown-8bit", "x-unknown", "unknown", "8bit", "default"})
# Names that codecs.lookup does not know or that deserve a superset decoder.
_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "iso_8859-1": "cp1252",
    "iso-8859-8-i": "iso8859_8",
    "ks_c_5601-1987": "cp949",
    "x-mac-cyrillic": "mac_cyrillic",
    "windows-874": "cp874",
    "x-cp1251": "cp1251",
    "win-1251": "cp1251",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "cp50220": "iso2022_jp_ext",
    "cp50221": "iso2022_jp_ext",
    "cp50222": "iso2022_jp_ext",
}
# Sentence-case Russian read with the wrong one of KOI8-R/cp1251 flips case:
# "Ромашка" becomes "тПНБЫЛБ", a lower-case letter followed by capitals.
_CASE_FLIPPED = re.compile(r"(?<![А-яЁё])[а-яё][А-ЯЁ]{2,}(?![А-яЁё])")
_KANA = re.compile("[\u3041-\u30ff]")
_BOX_DRAWING = re.compile("[\u2500-\u259f]")
_CYRILLIC_WORD = re.compile(r"[\u0400-\u04ff]{2,}")
# Charset detection reads at most this much; more text does not improve a guess.
_SAMPLE = 32 * 1024
_HIGH_RUN = re.compile(rb"[\x80-\xff]{3,}")
# 8-bit bytes in a row, or with single ASCII bytes between (Shift_JIS trail bytes).
_PAIR_RUN = re.compile(rb"(?:[\x80-\xff][\x40-\x7e]?){2,}")
_HIGH_BYTES = bytes(range(0x80, 0x100))
_UTF8_CHAR = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_LONG_HIGH_RUN = re.compile(rb"[\x80-\xff]{4,}")


@dataclass(frozen=True)
class Decoded:
    """Text decoded from bytes, the codec that produced it and a note if we overrode anything."""

    text: str
    charset: str
    note: str | None = None


def normalise_charset(name: str | None) -> str | None:
    """The Python codec for a MIME charset name, or None if it names nothing usable."""
    if name is None:
        return None
    label = name.strip().strip("\"'").lower()
    # RFC 2231 allows a language suffix such as ``utf-8*ru``.
    label = label.split("*", 1)[0]
    if label in _UNDECLARED:
        return None
    label = _ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        # ValueError: a NUL inside the name ("embedded null character"), found by fuzzing.
        return None
    # Bytes-to-bytes codecs (zlib, base64, rot13) are not charsets.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name.replace("-", "_")


def koi8_or_cp1251(data: bytes) -> str:
    """Pick KOI8-R or cp1251 for 8-bit Russian: real text is mostly lower case."""
    lower_koi8 = sum(0xC0 <= b <= 0xDF for b in data)
    lower_cp1251 = sum(b >= 0xE0 for b in data)
    return "koi8_r" if lower_koi8 > lower_cp1251 else "cp1251"


def guess_charset(data: bytes) -> str:
    """Best codec for undeclared 8-bit bytes (see :func:`detect_charset`)."""
    return detect_charset(data)[0]


def detect_charset(data: bytes, *, wide: bool = True) -> tuple[str, str | None]:
    """Best codec for undeclared 8-bit bytes, and a note when the wide pass decided.

    Short values (header values, file names) are remembered, because the
    parser may ask about the same value twice (see ``parse._undeclared_hint``).
    """
    if len(data) <= _CACHED_UP_TO:
        return _detect_cached(data, wide)
    return _detect(data, wide)


_CACHED_UP_TO = 1024


@functools.lru_cache(maxsize=512)
def _detect_cached(data: bytes, wide: bool) -> tuple[str, str | None]:
    return _detect(data, wide)


def _detect(data: bytes, wide: bool) -> tuple[str, str | None]:
    """The detection behind :func:`detect_charset`.

    UTF-8 first, then Cyrillic and Latin codecs (Cyrillic preferred: short
    Russian text is ambiguous with almost every 8-bit charset), then, only
    when those gave no plausible reading, every script charset-normalizer
    tells apart; cp1252 when nothing fits. ``wide=False`` skips that last
    pass where its answer would not be used.
    """
    sample = data[:_SAMPLE]
    try:
        sample.decode("utf_8")
        return "utf_8", None
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still UTF-8.
        if len(data) > _SAMPLE and exc.start >= len(sample) - 3:
            return "utf_8", None
    best = from_bytes(sample, cp_isolation=list(_CANDIDATES)).best()
    guess = best.encoding if best is not None else "cp1252"
    if guess in _CYRILLIC:
        # Cyrillic words are runs of 8-bit bytes; Latin accents are lone bytes
        # between ASCII letters ("Håvard"), which the detector reads as cp1251.
        if not _HIGH_RUN.search(sample):
            return "cp1252", None
        if guess in ("koi8_r", "cp1251"):
            guess = koi8_or_cp1251(sample)
        if _plausible_cyrillic(sample.decode(guess, errors="replace")):
            return guess, None
        guess = "cp1252"
    if wide and guess in _LATIN and mostly_runs(sample):
        # Runs of 8-bit bytes are no Latin text: ask about every other script.
        answer = _wide_guess(sample)
        if answer is not None:
            return answer
    return guess, None


def mostly_runs(sample: bytes, least: int = 4) -> bool:
    """Whether most 8-bit bytes stand in runs, as in words of a non-Latin script.

    Latin text has lone accented letters between ASCII ones; one run of
    mojibake in a Latin mail is no reason to read it as Japanese.
    """
    # UTF-8 characters (a UTF-8 body under 8-bit Latin headers) say nothing here.
    sample = _UTF8_CHAR.sub(b"", sample)
    high = len(sample) - len(sample.translate(None, _HIGH_BYTES))
    in_runs = sum(
        len(run) - len(run.translate(None, _HIGH_BYTES)) for run in _PAIR_RUN.findall(sample)
    )
    return high >= least and in_runs * 10 >= high * 8


def _wide_guess(sample: bytes) -> tuple[str, str] | None:
    """The second pass of :func:`detect_charset`: any script but Cyrillic and Latin."""
    best = from_bytes(sample, cp_isolation=list(_WIDE_CANDIDATES)).best()
    if best is None or best.chaos > _WIDE_MAX_CHAOS:
        return None
    codec = normalise_charset(best.encoding)
    if codec is None:
        return None
    try:
        text = sample.decode(codec)
    except UnicodeDecodeError:
        return None
    language = best.language
    if codec in ("gb18030", "big5") and len(_KANA.findall(text)) * 10 > len(text):
        # EUC-JP reads as GB with its kana intact (same rows); Chinese has no kana.
        with contextlib.suppress(UnicodeDecodeError):
            sample.decode("euc_jp")
            codec, language = "euc_jp", "Japanese (kana)"
    note = (
        f"no Cyrillic or Latin reading fits; charset-normalizer reads {language} "
        f"as {codec} (chaos {best.chaos:.2f})"
    )
    return codec, note


def _plausible_cyrillic(text: str) -> bool:
    """Whether the Cyrillic words in ``text`` have the letter case of real words.

    Real words are lower case, Capitalised or ALL CAPS; Latin text read as a
    Cyrillic codec ("äöüß" as "ДЖЭъ") mixes cases inside words.
    """
    if _BOX_DRAWING.search(text):
        # cp866 keeps pseudo-graphics among its letters; CJK bytes read as
        # cp866 ("╢Рс║╩Зн") are full of them, Russian prose has none.
        return False
    words = _CYRILLIC_WORD.findall(text)
    odd = sum(not (w.islower() or w.isupper() or w[1:].islower()) for w in words)
    return bool(words) and odd * 4 <= len(words)


def _is_utf8_text(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 with at least one multi-byte character."""
    if data.isascii():
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _looks_like_mojibake(data: bytes, codec: str, text: str) -> bool:
    """Whether text that decoded cleanly with its declared codec is still probably wrong."""
    if codec not in ("utf_8", "utf_8_sig") and _is_utf8_text(data):
        # Bytes that form valid multi-byte UTF-8 are UTF-8: no real KOI8-R,
        # cp1251 or Latin text happens to, and mislabelling as such is common.
        return True
    if codec in _LATIN:
        # Latin languages never have four accented letters in a row; Russian
        # words consist of nothing else.
        return _LONG_HIGH_RUN.search(data) is not None
    if codec in ("koi8_r", "cp1251"):
        if _CASE_FLIPPED.search(text):
            return True
        upper = sum(c.isupper() for c in text if "\u0400" <= c <= "\u04ff")
        lower = sum(c.islower() for c in text if "\u0400" <= c <= "\u04ff")
        # KOI8-R read as cp1251 (or the reverse) comes out almost all capitals;
        # short all-capital subjects ("СРОЧНО") are real, so demand some length.
        return upper + lower >= 12 and upper > 3 * lower
    return False


def decode_bytes(data: bytes, declared: str | None = None) -> Decoded:
    """Decode ``data`` using ``declared`` while it looks right, else a detected charset.

    The cheap path is one decode with the declared codec; the per-line and
    ISO-2022-JP repairs below run only when that decode failed or looks wrong.
    """
    if not data:
        return Decoded("", "ascii")
    codec = normalise_charset(declared)
    note: str | None = None
    if declared and codec is None:
        note = f"unknown charset {declared.strip()[:40]!r}"
    if codec is not None:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            note = f"text is not valid {declared}"
            if codec.startswith("iso2022_jp"):
                return _iso2022jp_or_guess(data, note)
        else:
            if data.isascii():
                return Decoded(text, codec)
            mixed = None
            if not codec.startswith("utf_8") and _has_utf8_run(data):
                # UTF-8 lines in a legacy part (a list footer); whole UTF-8 is mislabelling.
                mixed = None if _is_utf8_text(data) else _mixed_lines(data, declared)
            if mixed is not None:
                return mixed
            if not _looks_like_mojibake(data, codec, text):
                return Decoded(text, codec)
            note = f"text declared {declared} looks mis-labelled"
    elif data.isascii():
        return Decoded(data.decode("ascii"), "ascii", note)
    if _has_utf8_run(data) and (mixed := _mixed_lines(data, declared)) is not None:
        return Decoded(mixed.text, mixed.charset, f"{note}; {mixed.note}" if note else mixed.note)
    latin = codec in _LATIN and codec != "ascii"
    guess, why = detect_charset(data, wide=not latin)
    if latin and codec is not None and guess not in _CYRILLIC and guess != "utf_8":
        # Only a Cyrillic reading may overrule a clean Latin decode; a run of
        # accented letters alone ("äöüßÄÖÜ") is no reason to change. A stray
        # byte in us-ascii is no Latin text: it takes the guess like undeclared text.
        guess, why = codec, None
    if codec is not None and guess == codec:
        # The detector agrees with the declaration; keep the clean decode.
        return Decoded(data.decode(codec, errors="replace"), codec)
    if why:
        note = f"{note}; {why}" if note else why
    return Decoded(data.decode(guess, errors="replace"), guess, note)


# Two or more UTF-8 multi-byte characters in a row: legacy Russian and Latin
# text practically never forms them (see _mixed_lines).
_UTF8_RUN = re.compile(
    rb"(?:[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}){2,}"
)


# Byte classes for a quick look before _UTF8_RUN: L, M, N lead bytes of 2, 3
# and 4-byte characters, c continuation bytes, x anything else.
_UTF8_CLASSES = bytes(
    ord("c") if 0x80 <= b <= 0xBF else ord("L") if 0xC2 <= b <= 0xDF
    else ord("M") if 0xE0 <= b <= 0xEF else ord("N") if 0xF0 <= b <= 0xF4 else ord("x")
    for b in range(256)
)


def _has_utf8_run(data: bytes) -> bool:
    """Whether ``data`` holds two UTF-8 multi-byte characters in a row.

    The regex costs some 40 ns a byte on legacy text; mapping bytes to their
    classes and looking for one character first is a tenth of that, and
    most legacy text has none.
    """
    classes = data.translate(_UTF8_CLASSES)
    if b"Lc" not in classes and b"Mcc" not in classes and b"Nccc" not in classes:
        return False
    return _UTF8_RUN.search(data) is not None


def _mixed_lines(data: bytes, declared: str | None) -> Decoded | None:
    """Text in which UTF-8 lines and lines of one legacy charset are mixed, or None.

    A list server appends a UTF-8 footer to a cp1251 message (or the reverse),
    so neither the declaration nor one guess fits the whole part; each line
    that is valid UTF-8 is read as UTF-8, the others by the usual rules.
    """
    lines = data.splitlines(keepends=True)
    kinds: list[bool | None] = []  # True: UTF-8, False: legacy, None: ASCII
    for line in lines:
        if line.isascii():
            kinds.append(None)
            continue
        try:
            line.decode("utf_8")
        except UnicodeDecodeError:
            kinds.append(False)
        else:
            kinds.append(True)
    if True not in kinds or False not in kinds:
        return None
    legacy = b"".join(line for line, kind in zip(lines, kinds, strict=True) if kind is False)
    rest = decode_bytes(legacy, declared)
    text = "".join(
        line.decode("utf_8") if kind else line.decode(rest.charset, errors="replace")
        for line, kind in zip(lines, kinds, strict=True)
    )
    utf8_count = kinds.count(True)
    note = f"mixed charsets: {utf8_count} line(s) read as utf_8, {kinds.count(False)} as {rest.charset}"
    return Decoded(text, rest.charset, note)


def _iso2022jp_or_guess(data: bytes, note: str) -> Decoded:
    """ISO-2022-JP that Python's codecs refuse: the Microsoft variant (CP50220/50221).

    Outlook and Japanese phones put NEC and IBM extensions (circled digits
    ①, Roman numerals Ⅰ) into ISO-2022-JP; no stdlib codec reads them, but
    they are the same JIS rows in Shift_JIS form, which cp932 knows.
    """
    sjis = _iso2022jp_to_cp932(data)
    if sjis is not None:
        try:
            text = sjis.decode("cp932")
        except UnicodeDecodeError:
            pass
        else:
            return Decoded(text, "cp932", f"{note}; read as ISO-2022-JP with NEC/IBM extensions")
    guess, why = detect_charset(data)
    return Decoded(data.decode(guess, errors="replace"), guess, f"{note}; {why}" if why else note)


_ISO2022_ESCAPE = re.compile(rb"\x1b(\$[@B]|\$\(D|\([BJI]|\$\(Q|\$\(O)")


def _iso2022jp_to_cp932(data: bytes) -> bytes | None:
    """ISO-2022-JP bytes re-encoded as Shift_JIS (cp932), or None if they are not that."""
    out = bytearray()
    mode = b"(B"
    pos = 0
    shifted = False  # SO/SI half-width katakana (CP50221)
    while pos < len(data):
        byte = data[pos]
        if byte == 0x1B:
            match = _ISO2022_ESCAPE.match(data, pos)
            if match is None:
                return None
            mode = match.group(1)
            pos = match.end()
            continue
        if byte in (0x0E, 0x0F):
            shifted = byte == 0x0E
            pos += 1
            continue
        if byte >= 0x80:
            return None
        if byte in (0x0A, 0x0D):
            out.append(byte)
            pos += 1
        elif shifted or mode == b"(I":
            if not 0x21 <= byte <= 0x5F:
                return None
            out.append(byte + 0x80)
            pos += 1
        elif mode in (b"(B", b"(J"):
            out.append(byte)
            pos += 1
        else:
            if pos + 1 >= len(data):
                return None
            first, second = byte, data[pos + 1]
            if not (0x21 <= first <= 0x7E and 0x21 <= second <= 0x7E):
                return None
            # JIS X 0208 row/cell to Shift_JIS (the textbook mapping).
            lead = (first + 1) // 2 + (0x70 if first <= 0x5E else 0xB0)
            trail = second + (0x1F if first % 2 else 0x7E)
            if first % 2 and second >= 0x60:
                trail += 1
            out += bytes((lead, trail))
            pos += 2
    return bytes(out)


def decode_8bit(data: bytes, hint: str | None = None) -> str:
    """Decode 8-bit header bytes: UTF-8 first, then ``hint`` if plausible, else a guess."""
    try:
        return data.decode("utf_8")
    except UnicodeDecodeError:
        pass
    return decode_bytes(data, hint).text


# RFC 2047 encoded-word; the text part may hold spaces because broken
# mailers put them there, and a language suffix (RFC 2231 §5) is skipped.
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*?)\?=")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# CR, LF and other controls never survive into a decoded header (CVE-2024-6923:
# an encoded newline must not turn into a header break when mail is composed).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _word_bytes(encoding: str, text: str) -> bytes:
    """The raw bytes of one encoded-word's text, forgiving bad padding and stray characters."""
    data = text.encode("ascii", "surrogateescape")
    if encoding in "bB":
        data = _NOT_BASE64.sub(b"", data.split(b"=", 1)[0])
        # A length of 4n+1 cannot be valid base64; drop the dangling character.
        if len(data) % 4 == 1:
            data = data[:-1]
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    return binascii.a2b_qp(data, header=True)


def decode_encoded_words(text: str) -> str:
    """Decode RFC 2047 words in ``text``; whitespace between adjacent words is dropped.

    Adjacent words in the same charset are joined before decoding, because
    mailers split multi-byte characters across words.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    pending = b""
    pending_charset = ""
    pos = 0
    after_word = False
    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        charset, encoding, payload = match.groups()
        try:
            data = _word_bytes(encoding, payload)
        except (binascii.Error, ValueError):
            continue
        if pending and (gap.strip() or charset.lower() != pending_charset):
            out.append(decode_bytes(pending, pending_charset).text)
            pending = b""
        # RFC 2047 §6.2: white space between adjacent encoded words is not
        # displayed, whatever their charsets.
        if gap.strip() or not after_word:
            out.append(gap)
        pending += data
        pending_charset = charset.lower()
        pos = match.end()
        after_word = True
    if pending:
        out.append(decode_bytes(pending, pending_charset).text)
    out.append(text[pos:])
    return "".join(out)


def decode_header_value(raw: str, hint: str | None = None) -> str:
    """A raw header value (8-bit bytes carried as surrogates) as clean one-line text.

    Unfolds, decodes raw 8-bit bytes like an undeclared body (``hint`` is the
    message's declared charset), decodes encoded-words, and turns CR, LF and
    other control characters into spaces.
    """
    value = _FOLD.sub("", raw)
    if not value.isascii():
        # Real non-ASCII text (not surrogate-carried bytes) cannot be encoded
        # back; it is already decoded and stays as it is.
        with contextlib.suppress(UnicodeEncodeError):
            value = decode_8bit(value.encode("ascii", "surrogateescape"), hint)
    value = decode_encoded_words(value)
    return _CONTROLS.sub(" ", value).strip()
