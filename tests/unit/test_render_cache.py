"""A Renderer reads its templates once; a config reload (a new Renderer) reads them again.

Rendering is on every new ticket's path, so the Renderer neither stats template
files nor looks for a locale's file on each render; the daemon builds a new
Renderer on SIGHUP, which is when edited templates take effect.
"""

from __future__ import annotations

from pathlib import Path

from mailticket.outbound.render import Renderer

BASE = ('{% if _part == "subject" %}{% block subject %}{% endblock %}'
        "{% else %}{% block text %}{% endblock %}{% endif %}")


def write(folder: Path, locale: str, name: str, greeting: str) -> None:
    (folder / locale).mkdir(exist_ok=True)
    (folder / locale / "_base.j2").write_text(BASE, encoding="utf-8")
    (folder / locale / f"{name}.j2").write_text(
        '{% extends "_base.j2" %}{% block subject %}S{% endblock %}'
        f"{{% block text %}}{greeting}, {{{{ who }}}}.{{% endblock %}}",
        encoding="utf-8",
    )


def test_edited_template_takes_effect_with_a_new_renderer(tmp_path: Path) -> None:
    write(tmp_path, "en", "hello", "Hello")
    write(tmp_path, "ru", "hello", "Привет")
    running = Renderer(tmp_path)
    assert running.render("hello", "ru", {"who": "Anna"}).text == "Привет, Anna.\n"
    write(tmp_path, "ru", "hello", "Здравствуйте")
    assert running.render("hello", "ru", {"who": "Anna"}).text == "Привет, Anna.\n"
    assert Renderer(tmp_path).render("hello", "ru", {"who": "Anna"}).text == (
        "Здравствуйте, Anna.\n"
    )


def test_locale_fallback_is_decided_once_per_renderer(tmp_path: Path) -> None:
    write(tmp_path, "en", "hello", "Hello")
    (tmp_path / "ru").mkdir()
    running = Renderer(tmp_path)
    assert running.locale_for("hello", "ru_RU") == "en"
    assert running.render("hello", "ru", {"who": "Anna"}).text == "Hello, Anna.\n"
    write(tmp_path, "ru", "hello", "Привет")
    assert running.locale_for("hello", "ru_RU") == "en"
    assert Renderer(tmp_path).locale_for("hello", "ru_RU") == "ru"
