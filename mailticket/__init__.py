"""mailticket: an email-first support ticketing daemon for SLA support contracts."""

__version__ = "0.1.0"
