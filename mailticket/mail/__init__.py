"""mail: pure mail handling — bytes in, typed values out, and bytes back.

Owns: parsing raw mail into ``InboundMail`` (charsets, encoded words, MIME
defects recorded, never raised for minor ones), classifying it (bounce,
auto-reply, loop, list traffic), quote and signature stripping, our address
grammar (plus-addresses, signed tokens, VERP) and composing outgoing mail.
May import: ``model``, ``errors``, ``log``. Part of the pure core: no
SQLAlchemy, Jinja2, aiosmtpd, imapclient or APScheduler.
"""
