"""HTML mail bodies made safe: a plain-text rendering and a sanitised HTML copy.

Many customers (and every Outlook) send HTML, some send only HTML. Engineers,
commands and notifications work on text, so HTML-only mail needs a readable
text version; the web view gets sanitised HTML. Both go through nh3 (ammonia,
a real HTML5 parser in Rust) instead of regular expressions over raw HTML,
because hostile HTML is built to fool regular expressions (SECURITY.md R5.7).

For the text version nh3 first reduces the document to a few structural tags
without attributes (dropping scripts, styles and comments with their
content); that normalised output is simple enough to turn into lines safely.
"""

from __future__ import annotations

import html
import re

import nh3

# Tags that start a new line in the text rendering.
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot",
        "th", "thead", "tr", "ul",
    }
)  # fmt: skip
# Block boundaries that separate paragraphs rather than lines.
_PARAGRAPH_TAGS = frozenset(
    {"blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "ol", "p", "pre", "table", "ul"}
)
_TEXT_TAGS = frozenset(_BLOCK_TAGS | {"a", "br"})
# Elements whose content is never text a person wrote.
_DROP_CONTENT = frozenset({"script", "style", "title", "template", "noscript", "object"})
_URL_SCHEMES = frozenset({"https", "mailto", "cid"})
_TAG = re.compile(r'<(/?)([a-z0-9]+)(?:\s+href="([^"]*)")?[^>]*>')
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")
# Placeholders for block boundaries; a run of them collapses into one break,
# so nested <div>s do not pile up empty lines (Outlook nests them deeply).
_LINE = "\x01"
_PARAGRAPH = "\x02"
_BREAKS = re.compile(r" *[\x01\x02][\x01\x02 ]*")
_BLANK_LINES = re.compile(r"\n{3,}")
_PRE = re.compile(r"<pre>(.*?)</pre>", re.DOTALL)


def _only_cid_images(element: str, attribute: str, value: str) -> str | None:
    """Drop remote image sources (trackers, SECURITY.md R5.7); keep cid: inline images."""
    if element == "img" and attribute == "src" and not value.lower().startswith("cid:"):
        return None
    return value


def sanitise_html(source: str) -> str:
    """HTML safe to show in our web view: no scripts, handlers, remote images or foreign schemes."""
    return nh3.clean(
        source,
        clean_content_tags=set(_DROP_CONTENT),
        url_schemes=set(_URL_SCHEMES),
        attribute_filter=_only_cid_images,
        link_rel="noopener noreferrer",
        strip_comments=True,
    ).strip()


def _render(fragment: str) -> str:
    """Turn nh3's normalised structural HTML (``href`` its only attribute) into text lines."""
    out: list[str] = []
    pos = 0
    link_stack: list[str | None] = []
    link_text_start: list[int] = []
    for match in _TAG.finditer(fragment):
        out.append(_SPACES.sub(" ", fragment[pos : match.start()]))
        pos = match.end()
        closing, tag, href = match.group(1), match.group(2), match.group(3)
        if tag == "br":
            out.append("\n")
        elif tag == "a":
            if not closing:
                link_stack.append(html.unescape(href) if href else None)
                link_text_start.append(len(out))
            elif link_stack:
                url = link_stack.pop()
                label = html.unescape("".join(out[link_text_start.pop() :])).strip()
                # Show the target only when the visible text hides it.
                if url and url.removeprefix("mailto:") != label and not url.startswith("cid:"):
                    out.append(f" <{url}>")
        elif tag == "li":
            out.append("" if closing else f"{_LINE}- ")
        elif tag in ("td", "th"):
            out.append("" if closing else " ")
        else:
            out.append(_PARAGRAPH if tag in _PARAGRAPH_TAGS else _LINE)
    out.append(_SPACES.sub(" ", fragment[pos:]))
    text = html.unescape("".join(out)).replace("\u00a0", " ")
    return _BREAKS.sub(lambda m: "\n\n" if _PARAGRAPH in m.group() else "\n", text)


def html_to_text(source: str) -> str:
    """A plain-text rendering of an HTML body: no markup, no scripts, entities decoded."""
    fragment = nh3.clean(
        source,
        tags=set(_TEXT_TAGS),
        clean_content_tags=set(_DROP_CONTENT),
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        link_rel=None,
        strip_comments=True,
    )
    # Preformatted text keeps its line breaks; protect them from whitespace folding.
    pieces: list[str] = []
    last = 0
    for match in _PRE.finditer(fragment):
        pieces.append(_render(fragment[last : match.start()]))
        pieces.append("\n" + html.unescape(re.sub(r"<[^>]*>", "", match.group(1))) + "\n")
        last = match.end()
    pieces.append(_render(fragment[last:]))
    lines = (line.strip() for line in "".join(pieces).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
