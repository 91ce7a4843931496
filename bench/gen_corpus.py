#!/usr/bin/env python3
"""Deterministic corpus of inbound support mail for the benchmarks (bench/run makes it here).

Writes N raw RFC 5322 messages as ``00000.eml`` ... into a folder, plus
``manifest.json`` (expected counts, so a run can be checked against what a
system stored) and ``index.tsv`` (one row per message: kind, thread, ids).

The mix mimics what a support address of Russian-speaking customers gets:
new requests from ~50 customer addresses and follow-ups that carry
In-Reply-To/References to earlier Message-IDs; about 30% Russian mail
(encoded-word headers, UTF-8, KOI8-R and windows-1251 bodies in 8bit,
quoted-printable or base64); about 10% with a 20-200 KB attachment; about
5% HTML-only; some multipart/alternative. Everything comes from one seeded
random.Random, so the same arguments give byte-identical files.

The repo keeps its own copy so that ``bench/run`` works on a clone with
nothing beside it. It is the same generator as the peer benchmark's
``../shared/bench/gen_corpus.py`` (same seed, same draws), so the peers and
mailticket measure the same mail; ``peers.py`` checks that the two still
agree before it reports ratios. Change both or neither.

Usage: gen_corpus.py OUTDIR [-n 2000] [--seed 20261122] [--crlf]
                     [--thread-headers both|references|none]
"""
from __future__ import annotations

import argparse
import base64
import binascii
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

SUPPORT_ADDR = "support@support.test"
MSK = timezone(timedelta(hours=3))

COMPANIES = [
    ("acme.test", "ru"), ("globex.test", "en"), ("initech.test", "en"),
    ("romashka.test", "ru"), ("umbrella.test", "en"), ("vektor.test", "ru"),
    ("hooli.test", "en"), ("stark.test", "en"), ("sever.test", "ru"),
    ("wayne.test", "en"), ("tyrell.test", "en"), ("oscorp.test", "en"),
]
EN_FIRST = ["John", "Mary", "Peter", "Linda", "Alex", "Susan", "Mark", "Emma",
            "Chris", "Laura", "Tom", "Nina", "Paul", "Kate", "Steve", "Olivia",
            "Brian", "Grace", "Daniel", "Helen"]
EN_LAST = ["Smith", "Brown", "Taylor", "Clark", "Walker", "Young", "King",
           "Wright", "Green", "Baker", "Hill", "Adams", "Nelson", "Carter"]
RU_NAMES = [("Иван", "Петров", "ivan"), ("Ольга", "Смирнова", "olga"),
            ("Сергей", "Кузнецов", "sergey"), ("Анна", "Попова", "anna"),
            ("Дмитрий", "Соколов", "dmitry"), ("Елена", "Лебедева", "elena"),
            ("Алексей", "Козлов", "alexey"), ("Мария", "Новикова", "maria"),
            ("Николай", "Морозов", "nikolay"), ("Татьяна", "Волкова", "tanya"),
            ("Андрей", "Фёдоров", "andrey"), ("Юлия", "Михайлова", "yulia"),
            ("Павел", "Егоров", "pavel"), ("Светлана", "Орлова", "sveta"),
            ("Григорий", "Зайцев", "grisha")]

EN_SUBJECTS = [
    "Printer on floor {n} is offline", "Cannot log in to VPN from {host}",
    "Outlook keeps asking for password ({n})", "Backup job {n} failed tonight",
    "Disk almost full on {host}", "New employee account request #{n}",
    "Website returns 502 on /checkout ({n})", "License expired for CAD seat {n}",
    "Slow network in branch office {n}", "Please reset MFA for user {n}",
    "Email bounces to partner domain ({n})", "Server {host} rebooted unexpectedly",
    "Access to shared folder Finance-{n}", "Laptop {n} does not boot",
    "Certificate expires on {host}", "Request: install Python {n} on {host}",
]
RU_SUBJECTS = [
    "Не работает 1С после обновления ({n})", "Не печатает принтер на {n} этаже",
    "Срочно: упал сервер {host}", "Не приходит почта от контрагента ({n})",
    "Просьба создать учётную запись сотруднику №{n}",
    "Ошибка лицензии на рабочем месте {n}", "Медленно работает сеть в филиале {n}",
    "Резервная копия {n} не создана", "Заканчивается место на диске {host}",
    "Нет доступа к папке «Бухгалтерия-{n}»", "Сбросить пароль пользователю {n}",
    "Не открывается сайт, ошибка 502 ({n})", "Истекает сертификат на {host}",
    "Не запускается ноутбук №{n}", "Установить Python {n} на {host}",
]
EN_CHANGED = ["Re: any update?", "Re: still broken", "Re: one more thing",
              "Re: urgent - please call me"]
RU_CHANGED = ["Re: есть новости?", "Re: всё ещё не работает", "Re: ещё вопрос",
              "Re: срочно, перезвоните"]

EN_LINES = [
    "Hello support team,", "Since this morning the problem is back again.",
    "We tried to restart the machine but it did not help.",
    "The error message says: access denied (code {n}).",
    "Several users in our office are affected.", "Please look into it as soon as possible.",
    "This blocks our accounting department.", "Screenshot is attached if needed.",
    "Our contract number is C-{n}.", "I can be reached by phone at +7 495 555-{n4}.",
    "It worked fine until the update last Friday.", "Could you escalate this please?",
]
EN_REPLY = ["Thank you, but the issue is still there.", "Any news on this one?",
            "It works now, thanks a lot!", "Here are the logs you asked for.",
            "Please call me, it is urgent.", "The problem came back after reboot."]
RU_LINES = [
    "Добрый день!", "С утра снова возникла та же проблема.",
    "Перезагрузка компьютера не помогла.", "Выдаётся ошибка: доступ запрещён (код {n}).",
    "Не могут работать несколько сотрудников отдела.", "Просим решить как можно скорее.",
    "Бухгалтерия не может провести платежи.", "Скриншот ошибки во вложении.",
    "Номер нашего договора Д-{n}.", "Мой телефон: +7 495 555-{n4}.",
    "До обновления в пятницу всё работало.", "Прошу эскалировать заявку.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
]
RU_REPLY = ["Спасибо, но проблема осталась.", "Есть ли новости по заявке?",
            "Всё заработало, большое спасибо!", "Высылаю логи, как вы просили.",
            "Перезвоните мне, пожалуйста, это срочно.", "После перезагрузки ошибка вернулась."]
EN_SIGN = ["Best regards,", "Thanks,", "Kind regards,"]
RU_SIGN = ["С уважением,", "Спасибо,", "С наилучшими пожеланиями,"]
ATTACH_KINDS = [("screenshot-{n}.png", "image/png"), ("report-{n}.pdf", "application/pdf"),
                ("logs-{n}.zip", "application/zip"), ("dump-{n}.bin", "application/octet-stream")]
RU_ATTACH_NAMES = ["скриншот-{n}.png", "отчёт-{n}.pdf", "логи-{n}.zip"]


@dataclass
class Customer:
    """One sender address, with the mail client habits it keeps."""

    addr: str
    display: str
    lang: str            # "en" or "ru"
    charset: str         # body/header charset its client uses
    outlook: bool        # "RE:" prefix and whole-subject encoded words
    company: str


@dataclass
class Thread:
    """A support case as the customer sees it: the chain of Message-IDs."""

    tid: int
    customer: Customer
    subject: str
    msgids: list[str] = field(default_factory=list)
    last_text: str = ""
    last_when: datetime | None = None


def encoded_words(text: str, charset: str, enc: str) -> str:
    """RFC 2047 encode *text*; each word at most 75 chars, split on characters."""
    try:
        text.encode(charset)
    except UnicodeEncodeError:       # e.g. "№" or "«»" in KOI8-R: clients fall back
        charset = "utf-8"
    words, cur = [], ""

    def word(s: str) -> str:
        raw = s.encode(charset)
        if enc == "B":
            payload = base64.b64encode(raw).decode("ascii")
        else:
            payload = "".join(
                chr(b) if (chr(b).isalnum() and b < 128) else ("_" if b == 32 else f"={b:02X}")
                for b in raw)
        return f"=?{charset}?{enc}?{payload}?="

    for ch in text:
        if len(word(cur + ch)) > 75:
            words.append(word(cur))
            cur = ch
        else:
            cur += ch
    if cur:
        words.append(word(cur))
    return "\n ".join(words)


def is_ascii(s: str) -> bool:
    return all(ord(c) < 128 for c in s)


def fold_subject(subject: str, cust: Customer, rng: random.Random) -> str:
    """Subject header value as that customer's client would write it."""
    if is_ascii(subject):
        return subject
    enc = "B" if cust.outlook or rng.random() < 0.6 else "Q"
    prefix = ""
    for p in ("Re: ", "RE: "):
        if subject.startswith(p) and not cust.outlook:
            prefix, subject = p, subject[len(p):]     # Thunderbird keeps "Re: " plain
    return prefix + encoded_words(subject, cust.charset, enc)


def from_header(cust: Customer, rng: random.Random) -> str:
    if is_ascii(cust.display):
        return f'"{cust.display}" <{cust.addr}>'
    return f"{encoded_words(cust.display, cust.charset, 'B')} <{cust.addr}>"


def encode_text(text: str, charset: str, cte: str, nl: str) -> bytes:
    """Body bytes of one text part in *charset* with transfer encoding *cte*."""
    raw = text.replace("\n", "\r\n").encode(charset)
    if cte == "base64":
        out = base64.encodebytes(raw).decode("ascii")
    elif cte == "quoted-printable":
        out = binascii.b2a_qp(raw, istext=True).decode("ascii").replace("\r\n", "\n")
        out = out.replace("\r", "=0D")
    else:
        return text.replace("\n", nl).encode(charset)
    return out.replace("\n", nl).encode("ascii")


def pick_cte(charset: str, rng: random.Random) -> str:
    if charset == "us-ascii":
        return "7bit"
    return rng.choice({"utf-8": ["8bit", "base64", "quoted-printable"],
                       "koi8-r": ["8bit", "8bit", "quoted-printable"],
                       "windows-1251": ["quoted-printable", "base64", "8bit"]}[charset])


def html_of(text: str) -> str:
    paras = "".join(f"<p>{line or '&nbsp;'}</p>\n" for line in text.split("\n"))
    return f"<html><head><meta charset=\"utf-8\"></head><body>\n{paras}</body></html>\n"


def make_customers(rng: random.Random, count: int) -> list[Customer]:
    """~30% of the customers write Russian, so ~30% of the mail is non-ASCII."""
    out: list[Customer] = []
    ru_companies = [d for d, lang in COMPANIES if lang == "ru"]
    en_companies = [d for d, lang in COMPANIES if lang == "en"]
    n_ru = round(count * 0.3)
    for i in range(count):
        if i < n_ru:
            first, last, login = RU_NAMES[i % len(RU_NAMES)]
            dom = ru_companies[i % len(ru_companies)]
            charset = rng.choice(["utf-8", "utf-8", "koi8-r", "windows-1251"])
            out.append(Customer(f"{login}.{i}@{dom}", f"{first} {last}", "ru", charset,
                                rng.random() < 0.4, dom))
        else:
            first, last = rng.choice(EN_FIRST), rng.choice(EN_LAST)
            dom = en_companies[i % len(en_companies)]
            out.append(Customer(f"{first.lower()}.{last.lower()}{i}@{dom}",
                                f"{first} {last}", "en", "us-ascii",
                                rng.random() < 0.4, dom))
    return out


def body_text(cust: Customer, rng: random.Random, reply_to: Thread | None,
              when: datetime) -> str:
    ru = cust.lang == "ru"
    n, n4 = rng.randint(100, 999), rng.randint(1000, 9999)
    if reply_to is None:
        lines = [(RU_LINES if ru else EN_LINES)[0]]
        lines += [s.format(n=n, n4=n4) for s in rng.sample((RU_LINES if ru else EN_LINES)[1:],
                                                           rng.randint(2, 5))]
    else:
        lines = [rng.choice(RU_REPLY if ru else EN_REPLY)]
    lines += ["", rng.choice(RU_SIGN if ru else EN_SIGN), cust.display.split()[0]]
    text = "\n".join(lines) + "\n"
    if reply_to is not None and reply_to.last_text:
        stamp = (reply_to.last_when or when).strftime("%d.%m.%Y %H:%M")
        attrib = (f"{stamp}, {reply_to.customer.display} пишет:" if ru
                  else f"On {stamp}, {reply_to.customer.display} wrote:")
        quoted = "\n".join("> " + ln if ln else ">" for ln in reply_to.last_text.splitlines())
        text += "\n" + attrib + "\n" + quoted + "\n"
    return text


def generate(count: int, seed: int, crlf: bool, thread_headers: str = "both"
             ) -> tuple[list[tuple[str, bytes]], dict, list[str]]:
    """Build every message in memory; returns (files, manifest, index rows)."""
    rng = random.Random(seed)
    nl = "\r\n" if crlf else "\n"
    customers = make_customers(rng, 50)
    threads: list[Thread] = []
    when = datetime(2026, 11, 2, 9, 0, tzinfo=MSK)
    files: list[tuple[str, bytes]] = []
    index = ["file\tkind\tthread\tmessage_id\tin_reply_to\tlang\tcharset\tshape\tsender"]
    stats = {"count": count, "seed": seed, "new": 0, "replies": 0,
             "replies_same_subject": 0, "replies_outlook_RE": 0,
             "replies_changed_subject": 0, "replies_by_colleague": 0,
             "non_ascii": 0, "charsets": {}, "shapes": {}, "attachment_bytes": 0,
             "customers": len(customers), "line_endings": "CRLF" if crlf else "LF",
             "thread_headers": thread_headers}
    for i in range(count):
        when += timedelta(seconds=rng.randint(30, 600))
        reply_to: Thread | None = None
        if threads and rng.random() < 0.4:
            reply_to = rng.choice(threads[-150:])       # follow-ups favour recent cases
        if reply_to is None:
            cust = rng.choice(customers)
            tpl = rng.choice(RU_SUBJECTS if cust.lang == "ru" else EN_SUBJECTS)
            subject = tpl.format(n=rng.randint(1, 9999),
                                 host=f"srv-{rng.randint(10, 99)}.{cust.company}")
            thread = Thread(len(threads), cust, subject)
            threads.append(thread)
            kind = "new"
        else:
            thread = reply_to
            cust = thread.customer
            colleagues = [c for c in customers if c.company == cust.company and c is not cust]
            if colleagues and rng.random() < 0.15:
                cust = rng.choice(colleagues)
                stats["replies_by_colleague"] += 1
            r = rng.random()
            if r < 0.10:
                subject = rng.choice(RU_CHANGED if thread.customer.lang == "ru" else EN_CHANGED)
                kind = "reply-changed-subject"
                stats["replies_changed_subject"] += 1
            elif cust.outlook:
                subject = "RE: " + thread.subject
                kind = "reply"
                stats["replies_outlook_RE"] += 1
            else:
                subject = "Re: " + thread.subject
                kind = "reply"
                stats["replies_same_subject"] += 1
        text = body_text(cust, rng, reply_to, when)
        host = "mail." + cust.company
        msgid = f"<{when:%Y%m%d%H%M%S}.{i:05d}.{rng.getrandbits(32):08x}@{host}>"
        charset = cust.charset if cust.lang == "ru" else "us-ascii"
        if not is_ascii(text) or not is_ascii(subject) or not is_ascii(cust.display):
            stats["non_ascii"] += 1
            if charset == "us-ascii":
                charset = "utf-8"

        r = rng.random()
        shape = ("attachment" if r < 0.10 else "html-only" if r < 0.15
                 else "alternative" if r < 0.30 else "plain")
        headers = [
            ("Return-Path", f"<{cust.addr}>"),
            ("Received", f"from {host} (mx.{cust.company} [192.0.2.{i % 250 + 1}]) by "
                         f"mx.support.test with ESMTPS id {i:08X}; {when:%a, %d %b %Y %H:%M:%S %z}"),
            ("From", from_header(cust, rng)),
            ("To", f'"Support" <{SUPPORT_ADDR}>'),
            ("Subject", fold_subject(subject, cust, rng)),
            ("Date", when.strftime("%a, %d %b %Y %H:%M:%S %z")),
            ("Message-ID", msgid),
        ]
        in_reply_to = ""
        if reply_to is not None:
            refs = reply_to.msgids[-8:]
            in_reply_to = refs[-1]
            if thread_headers == "both":
                headers.append(("In-Reply-To", refs[-1]))
            if thread_headers in ("both", "references"):
                headers.append(("References", ("\n ").join(refs)))
        headers.append(("MIME-Version", "1.0"))
        headers.append(("X-Mailer", "Microsoft Outlook 16.0" if cust.outlook
                        else "Mozilla Thunderbird 128.4"))

        boundary = f"----=_Part_{i}_{rng.getrandbits(40):010x}"
        cte = pick_cte(charset, rng)
        parts: list[bytes] = []
        if shape == "plain":
            headers += [("Content-Type", f'text/plain; charset="{charset}"; format=flowed'),
                        ("Content-Transfer-Encoding", cte)]
            body = encode_text(text, charset, cte, nl)
        elif shape == "html-only":
            hcs = "utf-8" if charset == "us-ascii" else charset
            html = html_of(text).replace('charset="utf-8"', f'charset="{hcs}"')
            hcte = "quoted-printable" if cte in ("7bit", "8bit") else cte
            headers += [("Content-Type", f'text/html; charset="{hcs}"'),
                        ("Content-Transfer-Encoding", hcte)]
            body = encode_text(html, hcs, hcte, nl)
        else:
            sub = "alternative" if shape == "alternative" else "mixed"
            headers.append(("Content-Type", f'multipart/{sub};\n boundary="{boundary}"'))
            text_part = (f'Content-Type: text/plain; charset="{charset}"{nl}'
                         f"Content-Transfer-Encoding: {cte}{nl}{nl}").encode("ascii") + \
                encode_text(text, charset, cte, nl)
            parts.append(text_part)
            if shape == "alternative":
                hcs = "utf-8" if charset == "us-ascii" else charset
                hcte = "quoted-printable" if cte in ("7bit", "8bit") else cte
                parts.append((f'Content-Type: text/html; charset="{hcs}"{nl}'
                              f"Content-Transfer-Encoding: {hcte}{nl}{nl}").encode("ascii") +
                             encode_text(html_of(text), hcs, hcte, nl))
            else:
                size = rng.randint(20_000, 200_000)
                stats["attachment_bytes"] += size
                n = rng.randint(100, 999)
                if cust.lang == "ru" and rng.random() < 0.5:
                    name = rng.choice(RU_ATTACH_NAMES).format(n=n)
                    ctype = {"png": "image/png", "pdf": "application/pdf",
                             "zip": "application/zip"}[name.rsplit(".", 1)[1]]
                    q = "".join(c if c.isascii() and (c.isalnum() or c in ".-") else
                                "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in name)
                    disp = f"attachment;\n filename*=utf-8''{q}"
                    ctline = f"{ctype};\n name*=utf-8''{q}"
                else:
                    fname, ctype = rng.choice(ATTACH_KINDS)
                    name = fname.format(n=n)
                    disp = f'attachment; filename="{name}"'
                    ctline = f'{ctype}; name="{name}"'
                payload = base64.encodebytes(rng.randbytes(size)).decode("ascii")
                parts.append((f"Content-Type: {ctline}{nl}Content-Transfer-Encoding: base64{nl}"
                              f"Content-Disposition: {disp}{nl}{nl}{payload}")
                             .replace("\n", nl).encode("ascii"))
            multipart = f"This is a multi-part message in MIME format.{nl}".encode("ascii")
            for p in parts:
                multipart += f"{nl}--{boundary}{nl}".encode("ascii") + p.rstrip(b"\r\n")
            multipart += f"{nl}--{boundary}--{nl}".encode("ascii")
            body = multipart
        head = "".join(f"{k}: {v}\n" for k, v in headers).replace("\n", nl).encode("ascii")
        raw = head + nl.encode("ascii") + body
        if not raw.endswith(nl.encode("ascii")):
            raw += nl.encode("ascii")

        thread.msgids.append(msgid)
        thread.last_when = when
        thread.last_text = text.split("\n\n")[0] if reply_to is None else text.splitlines()[0]
        stats["new" if kind == "new" else "replies"] += 1
        stats["charsets"][charset] = stats["charsets"].get(charset, 0) + 1
        stats["shapes"][shape] = stats["shapes"].get(shape, 0) + 1
        fname = f"{i:05d}.eml"
        files.append((fname, raw))
        index.append("\t".join([fname, kind, str(thread.tid), msgid,
                                in_reply_to, cust.lang,
                                charset, shape, cust.addr]))
    stats["threads"] = len(threads)
    stats["senders_used"] = len({row.split("\t")[8] for row in index[1:]})
    return files, stats, index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("-n", "--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--crlf", action="store_true", help="CRLF line ends (as on the wire)")
    ap.add_argument("--thread-headers", default="both", choices=["both", "references", "none"],
                    help="what replies carry: In-Reply-To and References (default), "
                         "References only, or neither (to see who threads by subject)")
    args = ap.parse_args()
    files, stats, index = generate(args.count, args.seed, args.crlf, args.thread_headers)
    args.outdir.mkdir(parents=True, exist_ok=True)
    for old in args.outdir.glob("*.eml"):
        old.unlink()
    total = 0
    for name, raw in files:
        (args.outdir / name).write_bytes(raw)
        total += len(raw)
    stats["total_bytes"] = total
    (args.outdir / "manifest.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    (args.outdir / "index.tsv").write_text("\n".join(index) + "\n", encoding="utf-8")
    print(f"wrote {len(files)} messages ({total / 1e6:.1f} MB) to {args.outdir}: "
          f"{stats['new']} new, {stats['replies']} replies, {stats['non_ascii']} non-ASCII, "
          f"shapes {stats['shapes']}")


if __name__ == "__main__":
    main()
