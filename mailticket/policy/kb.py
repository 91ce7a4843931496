"""The knowledge base: Markdown articles engineers quote and the notices suggest.

Typical requests (a stuck print queue, a forgotten password, a full mailbox)
have typical answers. They live as Markdown files with a small front matter
(``slug``, ``title``, ``locale``, ``tags``) in one folder, in Russian and
English, so they are edited and reviewed like code. An engineer inserts one
into a reply with ``#kb SLUG``, and the notice about a new ticket suggests the
most similar articles, ranked by TF-IDF cosine similarity over words. Words are
folded (case, "ё") and cut to a fixed prefix, a crude stemmer that works for
both Russian and English inflection ("принтера" and "принтеру" meet at
"принт"), with no external service and no dictionary to install.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailticket.config import KbConfig
from mailticket.errors import CommandError
from mailticket.policy.commands import Command

# Words are cut to this many letters; 5 keeps "print"/"принт", "passw"/"парол".
STEM_LENGTH = 5
_WORD = re.compile(r"[^\W\d_]+|\d+")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
# Words too common to tell articles apart; compared after stemming.
_STOP_WORDS = (
    "the and for you your with this that not are was have has can from when what how our"
    " please hello thanks regards does into there then they will would"
    " что как это для при все так его она они или если уже нет был быть может есть"
    " здравствуйте спасибо пожалуйста добрый день уважением нам вас вам мне меня"
    " после перед через можно нужно чтобы также только еще снова потом сейчас когда где"
    " after before also only again need just some other"
)
_STOP = frozenset(word[:STEM_LENGTH] for word in _STOP_WORDS.split())


@dataclass(frozen=True)
class Article:
    """One knowledge-base article; a slug may exist once per locale (translations)."""

    slug: str
    title: str
    locale: str
    body: str
    tags: tuple[str, ...] = ()
    path: Path | None = None


@dataclass(frozen=True)
class KnowledgeBase:
    """The loaded articles and the problems of the files that could not be read."""

    articles: tuple[Article, ...]
    problems: tuple[str, ...] = ()

    def find(self, slug: str, locale: str | None = None) -> Article | None:
        """The article with ``slug``, in ``locale`` when there is one, else in any locale."""
        matches = [a for a in self.articles if a.slug == slug.lower()]
        preferred = [a for a in matches if a.locale == locale]
        return next(iter(preferred or matches), None)

    def search(
        self, query: str, *, limit: int = 3, min_score: float = 0.0
    ) -> list[tuple[Article, float]]:
        """Articles most similar to ``query``, best first, each with its cosine score."""
        return rank(self.articles, query, limit=limit, min_score=min_score)


def tokens(text: str) -> list[str]:
    """Folded, prefix-stemmed words of ``text`` without stop words and one-letter words."""
    out = []
    for match in _WORD.finditer(text.casefold().replace("ё", "е")):
        word = match.group(0)
        if len(word) < 2 or word.isdigit():
            continue
        stem = word[:STEM_LENGTH]
        if stem not in _STOP:
            out.append(stem)
    return out


def _document(article: Article) -> list[str]:
    """An article's words; title and tags count twice, because they say what it is about."""
    head = tokens(" ".join([article.title, *article.tags]))
    return head * 2 + tokens(article.body)


def rank(
    articles: Sequence[Article], query: str, *, limit: int = 3, min_score: float = 0.0
) -> list[tuple[Article, float]]:
    """TF-IDF (log-scaled term frequency, smoothed IDF) cosine ranking of ``articles``."""
    docs = [Counter(_document(a)) for a in articles]
    count = len(docs)
    frequency: Counter[str] = Counter()
    for doc in docs:
        frequency.update(doc.keys())
    idf = {term: math.log((1 + count) / (1 + df)) + 1 for term, df in frequency.items()}

    def vector(counts: Counter[str]) -> dict[str, float]:
        weights = {t: (1 + math.log(n)) * idf[t] for t, n in counts.items() if t in idf}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {t: w / norm for t, w in weights.items()} if norm else {}

    wanted = vector(Counter(tokens(query)))
    if not wanted:
        return []
    scored = []
    for article, doc in zip(articles, docs, strict=True):
        have = vector(doc)
        score = sum(w * have.get(t, 0.0) for t, w in wanted.items())
        if score > min_score:
            scored.append((article, round(score, 4)))
    scored.sort(key=lambda item: (-item[1], item[0].slug, item[0].locale))
    return scored[:limit]


def parse_article(text: str, path: Path | None = None) -> Article | str:
    """One Markdown file with front matter to an article, or the reason it is not one."""
    match = _FRONT_MATTER.match(text.replace("\r\n", "\n"))
    if match is None:
        return "no front matter (a block between '---' lines at the top)"
    meta: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip():
            meta[key.strip().lower()] = value.strip().strip("\"'")
    slug = meta.get("slug", path.stem if path else "").lower()
    if not _SLUG.fullmatch(slug):
        return f"slug {slug!r} must be letters, digits, '.', '_' or '-'"
    if not meta.get("title"):
        return "missing title"
    locale = meta.get("locale", "ru")
    if locale not in ("ru", "en"):
        return f"locale {locale!r} must be ru or en"
    tags = tuple(t.strip().strip("\"'") for t in meta.get("tags", "").strip("[]").split(",")
                 if t.strip())
    body = text.replace("\r\n", "\n")[match.end():].strip()
    return Article(slug, meta["title"], locale, body, tags, path)


# The knowledge base of a config without ``[kb] dir``: nothing to suggest or insert.
EMPTY_KNOWLEDGE = KnowledgeBase(())


def load(directory: Path | None) -> KnowledgeBase:
    """Every ``*.md`` below ``directory`` (sorted, so results are stable); none when unset."""
    if directory is None or not directory.is_dir():
        return EMPTY_KNOWLEDGE
    articles: list[Article] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for path in sorted(directory.rglob("*.md")):
        try:
            result = parse_article(path.read_text(encoding="utf-8"), path)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        if isinstance(result, str):
            problems.append(f"{path}: {result}")
        elif (result.slug, result.locale) in seen:
            problems.append(f"{path}: duplicate slug {result.slug!r} for locale {result.locale}")
        else:
            seen.add((result.slug, result.locale))
            articles.append(result)
    return KnowledgeBase(tuple(articles), tuple(problems))


def suggest(base: KnowledgeBase, settings: KbConfig, subject: str, text: str) -> list[dict[str, str]]:
    """The ``suggestions`` of an engineer notice: ``{slug, title}`` of the closest articles."""
    if settings.dir is None or settings.suggestions <= 0:
        return []
    # The subject says most about a request, so it counts twice.
    found = base.search(
        f"{subject}\n{subject}\n{text}", limit=settings.suggestions * 2,
        min_score=settings.min_score,
    )
    # A translation of a better match adds nothing: one suggestion per slug.
    best = {a.slug: a for a, _ in reversed(found)}
    ordered = list(dict.fromkeys(a.slug for a, _ in found))
    return [{"slug": s, "title": best[s].title} for s in ordered][: settings.suggestions]


def check_command(base: KnowledgeBase, locale: str, command: Command) -> str:
    """Validate ``#kb SLUG`` for a ticket; raise CommandError when there is no such article."""
    article = base.find(command.arg or "", locale)
    if article is None:
        raise CommandError(command.line, f"no knowledge-base article {command.arg!r}")
    return f"article {article.slug} ({article.locale}) inserted into the reply"


def with_articles(base: KnowledgeBase, locale: str, body: str, commands: Iterable[Command]) -> str:
    """The reply body followed by the text of every ``#kb`` article the commands name."""
    slugs = [c.arg for c in commands if c.name == "kb" and c.arg]
    if not slugs:
        return body
    parts = [body] if body else []
    for slug in slugs:
        article = base.find(slug, locale)
        if article is not None:
            parts.append(f"{article.title}\n\n{article.body}")
    return "\n\n".join(parts)
