"""Shared helpers for the test suite (fixtures that talk over real sockets)."""
