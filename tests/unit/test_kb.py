"""Knowledge base: front matter, tokenising and stemming, TF-IDF ranking, #kb insertion, CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from support.configs import make_config

from mailticket import cli
from mailticket.config import KbConfig
from mailticket.errors import CommandError
from mailticket.policy import kb
from mailticket.policy.commands import Command, parse_commands

REPO = Path(__file__).resolve().parents[2]
KB = REPO / "kb"


@pytest.fixture(scope="module")
def base() -> kb.KnowledgeBase:
    return kb.load(KB)


def test_shipped_articles_load_in_both_languages(base: kb.KnowledgeBase) -> None:
    assert base.problems == ()
    assert sorted((a.slug, a.locale) for a in base.articles) == [
        (slug, locale)
        for slug in ("mailbox-full", "password-reset", "printer-queue-reset", "vpn-reconnect")
        for locale in ("en", "ru")
    ]
    article = base.find("printer-queue-reset", "ru")
    assert article is not None
    assert article.title == "Принтер не печатает: как очистить очередь печати"
    assert article.tags == ("принтер", "печать", "очередь печати", "spooler")
    assert article.body.startswith("Если принтер не печатает")
    english = base.find("PRINTER-QUEUE-RESET", "en")
    assert english is not None and english.title.startswith("Printer does not print")
    # No article in the asked locale: any locale rather than nothing.
    only_ru = kb.KnowledgeBase((dataclasses.replace(article, locale="ru"),))
    assert only_ru.find("printer-queue-reset", "en") == article
    assert base.find("no-such-article") is None


def test_tokens_fold_stem_and_drop_stop_words() -> None:
    assert kb.tokens("Принтера, принтеру и ПРИНТЕР!") == ["принт", "принт", "принт"]
    assert kb.tokens("Здравствуйте! Printing the printer's queue, 2 times") == [
        "print", "print", "queue", "times"]
    assert kb.tokens("Учётная запись") == kb.tokens("учетная запись") == ["учетн", "запис"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Принтер в бухгалтерии не печатает, документы висят в очереди", "printer-queue-reset"),
        ("Не могу подключиться к VPN из дома", "vpn-reconnect"),
        ("Забыл пароль, учётную запись заблокировали", "password-reset"),
        ("Outlook пишет, что почтовый ящик переполнен", "mailbox-full"),
        ("My password expired and I am locked out", "password-reset"),
        ("Print jobs stuck in the printer queue", "printer-queue-reset"),
    ],
)
def test_search_ranks_the_right_article_first(base: kb.KnowledgeBase, query: str,
                                              expected: str) -> None:
    found = base.search(query, limit=3, min_score=0.15)
    assert found[0][0].slug == expected
    assert found[0][1] > 0.25
    assert [score for _, score in found] == sorted((s for _, s in found), reverse=True)


def test_unrelated_text_suggests_nothing(base: kb.KnowledgeBase) -> None:
    assert base.search("Сервер 1С упал после обновления", min_score=0.15) == []
    assert base.search("", min_score=0.0) == []


def test_rank_is_cosine_of_tf_idf() -> None:
    a = kb.Article("a", "Alpha", "en", "printer printer queue")
    b = kb.Article("b", "Beta", "en", "vpn connection")
    [(best, score)] = kb.rank([a, b], "printer", limit=1)
    assert best is a and 0 < score < 1
    # Identical text scores 1.
    assert kb.rank([a, b], "Alpha Alpha printer printer queue", limit=1)[0][1] == pytest.approx(
        1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("no front matter", "no front matter (a block between '---' lines at the top)"),
        ("---\nslug: Bad Slug\ntitle: x\n---\nbody", "slug 'bad slug' must be letters, digits, "
         "'.', '_' or '-'"),
        ("---\nslug: ok\n---\nbody", "missing title"),
        ("---\nslug: ok\ntitle: T\nlocale: de\n---\nbody", "locale 'de' must be ru or en"),
    ],
)
def test_bad_articles_are_reported(text: str, problem: str) -> None:
    assert kb.parse_article(text) == problem


def test_load_reports_bad_and_duplicate_files(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\nslug: a\ntitle: A\nlocale: en\n---\nBody A\n")
    (tmp_path / "b.md").write_text("---\nslug: a\ntitle: Again\nlocale: en\n---\nBody\n")
    (tmp_path / "c.md").write_text("plain text")
    base = kb.load(tmp_path)
    assert [a.title for a in base.articles] == ["A"]
    assert base.problems == (
        f"{tmp_path / 'b.md'}: duplicate slug 'a' for locale en",
        f"{tmp_path / 'c.md'}: no front matter (a block between '---' lines at the top)",
    )
    assert kb.load(None).articles == ()


def test_suggest_gives_one_entry_per_slug(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, "sqlite://", kb=KbConfig(dir=KB, suggestions=3))
    base = kb.load(KB)
    assert kb.suggest(base, cfg.kb, "Не могу подключиться к VPN",
                      "VPN отключается каждые 5 минут") == [
        {"slug": "vpn-reconnect", "title": "VPN не подключается или постоянно отключается"}]
    assert kb.suggest(base, make_config(tmp_path, "sqlite://").kb, "VPN", "VPN") == []


def test_kb_command_inserts_the_article_in_the_ticket_locale(tmp_path: Path) -> None:
    cfg = kb.load(KB)
    parsed = parse_commands("#kb password-reset\nДобрый день! Вот инструкция:")
    [command] = parsed.commands
    assert kb.check_command(cfg, "ru", command) == (
        "article password-reset (ru) inserted into the reply")
    body = kb.with_articles(cfg, "ru", parsed.body.strip(), parsed.commands)
    assert body.startswith("Добрый день! Вот инструкция:\n\nКак сбросить забытый пароль учётной "
                           "записи\n\nЕсли вы забыли пароль")
    assert kb.with_articles(cfg, "en", "", parsed.commands).startswith(
        "How to reset a forgotten account password\n\nIf you forgot your password")
    with pytest.raises(CommandError) as info:
        kb.check_command(cfg, "ru", Command("kb", "no-such", "#kb no-such"))
    assert (info.value.line, info.value.reason) == ("#kb no-such",
                                                    "no knowledge-base article 'no-such'")


def test_cli_list_show_search(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "config.example.toml")
    assert cli.main(["kb", "list", "-c", config, "--locale", "en"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        "mailbox-full", "password-reset", "printer-queue-reset", "vpn-reconnect"]
    assert cli.main(["kb", "show", "-c", config, "vpn-reconnect", "--locale", "ru"]) == 0
    assert capsys.readouterr().out.startswith(
        "VPN не подключается или постоянно отключается\n\nЕсли VPN не подключается")
    assert cli.main(["kb", "search", "-c", config, "почтовый", "ящик", "переполнен"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split("\t")
    assert first[1:3] == ["mailbox-full", "ru"]
    assert cli.main(["kb", "show", "-c", config, "nothing-here"]) == 4
    assert "no knowledge-base article 'nothing-here'" in capsys.readouterr().err
