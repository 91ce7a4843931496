"""Transports: how mail enters (LMTP/SMTP, IMAP) and leaves (relay) mailticket."""
