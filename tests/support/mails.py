"""Build realistic inbound mails as bytes (CRLF, as an MTA hands them over)."""

from __future__ import annotations

import email.policy
import uuid
from collections.abc import Mapping, Sequence
from email.message import EmailMessage


def new_id(domain: str = "client.example") -> str:
    return f"{uuid.uuid4().hex}@{domain}"


def build(
    *,
    from_: str,
    to: str = "support@provider.example",
    subject: str = "Принтер не печатает",
    body: str = "Здравствуйте! Принтер в бухгалтерии не печатает.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    cc: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
    charset: str = "utf-8",
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> bytes:
    """One mail; ``message_id`` is generated unless given ("" means no Message-ID)."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = from_
    msg["To"] = to
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    if message_id != "":
        msg["Message-ID"] = f"<{message_id or new_id()}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        msg["References"] = " ".join(f"<{r}>" for r in references)
    msg["Date"] = "Fri, 20 Nov 2026 19:50:00 +0300"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body, charset=charset)
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def raw_8bit(headers: str, body: bytes) -> bytes:
    """A mail assembled by hand, for charsets and broken input the stdlib would not produce."""
    return headers.replace("\n", "\r\n").encode("ascii") + b"\r\n" + body.replace(b"\n", b"\r\n")
