"""SMTP AUTH for engineers on the submission listener, against password hashes in the config.

A successful AUTH is evidence that the mail comes from that engineer (it is
recorded as the spool row's ``auth_user``); ``auth.authenticate`` still
requires the From: to be the same engineer.
"""

from __future__ import annotations

from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from mailticket.config.passwords import verify_password
from mailticket.log import get as get_logger
from mailticket.model import Engineer

log = get_logger("submission")


class EngineerAuthenticator:
    """aiosmtpd authenticator: LOGIN/PLAIN with an engineer's address and password."""

    def __init__(self, engineers: dict[str, Engineer]) -> None:
        self.engineers = engineers

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace").strip().lower()
        password = auth_data.password.decode("utf-8", "replace")
        engineer = self.engineers.get(login)
        ok = bool(engineer and engineer.password_hash
                  and verify_password(password, engineer.password_hash))
        peer = session.peer[0] if getattr(session, "peer", None) else ""
        if ok:
            log.info("engineer authenticated", extra={"login": login, "peer": peer})
            return AuthResult(success=True, handled=False, auth_data=login)
        log.warning("SMTP AUTH failed", extra={"login": login, "peer": peer,
                                               "mechanism": mechanism})
        return AuthResult(success=False, handled=False)
