"""Turn mail bytes into text when the charset is missing, unknown or simply wrong.

Russian mail still arrives as raw KOI8-R or windows-1251, often without a
declared charset or with a wrong one (``iso-8859-1`` stamped on cp1251 text,
``utf-8`` on KOI8-R). Decoding with the declared charset alone gives U+FFFD or
mojibake, so this module trusts a declaration only while the result looks
plausible and otherwise guesses with charset-normalizer, restricted to the
Cyrillic and Latin codecs our customers actually use.

charset-normalizer misjudges short KOI8-R text (INFRA.md "Helper libraries"),
so a guess of KOI8-R or cp1251 is settled by a tiebreak: real text is mostly
lower case, and KOI8-R keeps lower-case letters at 0xC0-0xDF where cp1251
keeps upper-case ones.
"""

from __future__ import annotations

import binascii
import codecs
import contextlib
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
}
# Sentence-case Russian read with the wrong one of KOI8-R/cp1251 flips case:
# "Ромашка" becomes "тПНБЫЛБ", a lower-case letter followed by capitals.
_CASE_FLIPPED = re.compile(r"(?<![А-яЁё])[а-яё][А-ЯЁ]{2,}(?![А-яЁё])")
_CYRILLIC_WORD = re.compile(r"[\u0400-\u04ff]{2,}")
# Charset detection reads at most this much; more text does not improve a guess.
_SAMPLE = 32 * 1024
_HIGH_RUN = re.compile(rb"[\x80-\xff]{3,}")
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
    """Best codec for undeclared 8-bit bytes among UTF-8, Cyrillic and Latin codecs."""
    sample = data[:_SAMPLE]
    try:
        sample.decode("utf_8")
        return "utf_8"
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still UTF-8.
        if len(data) > _SAMPLE and exc.start >= len(sample) - 3:
            return "utf_8"
    best = from_bytes(sample, cp_isolation=list(_CANDIDATES)).best()
    guess = best.encoding if best is not None else "cp1252"
    if guess in _CYRILLIC:
        # Cyrillic words are runs of 8-bit bytes; Latin accents are lone bytes
        # between ASCII letters ("Håvard"), which the detector reads as cp1251.
        if not _HIGH_RUN.search(sample):
            return "cp1252"
        if guess in ("koi8_r", "cp1251"):
            guess = koi8_or_cp1251(sample)
        if not _plausible_cyrillic(sample.decode(guess, errors="replace")):
            return "cp1252"
    return guess


def _plausible_cyrillic(text: str) -> bool:
    """Whether the Cyrillic words in ``text`` have the letter case of real words.

    Real words are lower case, Capitalised or ALL CAPS; Latin text read as a
    Cyrillic codec ("äöüß" as "ДЖЭъ") mixes cases inside words.
    """
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
    """Decode ``data`` using ``declared`` while it looks right, else a detected charset."""
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
        else:
            if data.isascii() or not _looks_like_mojibake(data, codec, text):
                return Decoded(text, codec)
            note = f"text declared {declared} looks mis-labelled"
    elif data.isascii():
        return Decoded(data.decode("ascii"), "ascii", note)
    guess = guess_charset(data)
    if codec in _LATIN and guess not in _CYRILLIC and guess != "utf_8":
        # Only a Cyrillic reading may overrule a clean Latin decode; a run of
        # accented letters alone ("äöüßÄÖÜ") is no reason to change.
        guess = codec
    if codec is not None and guess == codec:
        # The detector agrees with the declaration; keep the clean decode.
        return Decoded(data.decode(codec, errors="replace"), codec)
    return Decoded(data.decode(guess, errors="replace"), guess, note)


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
        if not pending or gap.strip():
            out.append(gap)
        pending += data
        pending_charset = charset.lower()
        pos = match.end()
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
