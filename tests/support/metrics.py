"""Read the daemon's Prometheus endpoint over HTTP, as a scraper would."""

from __future__ import annotations

import urllib.request


def scrape_metrics(port: int) -> set[str]:
    """Every line of ``/metrics`` on 127.0.0.1:``port``, for exact-line assertions."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return set(response.read().decode().splitlines())
