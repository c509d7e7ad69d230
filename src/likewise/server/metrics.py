"""Prometheus metrics for the service, rendered in the text exposition format at ``/metrics``.

A deliberately small registry (no ``prometheus_client`` dependency): request counts by method, route
template and status; a latency histogram by route; requests in flight; and, computed at scrape time,
the vector count of every open index. Routes are labelled by their template (``/v1/indexes/{name}``),
never by the raw path, so that label cardinality stays bounded.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable

__all__ = ["BUCKETS", "Metrics"]

BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Thread-safe counters and histograms, plus gauges computed by callbacks when scraped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._hist: dict[str, list[float]] = {}  # route -> [bucket counts..., +Inf count, sum]
        self.in_flight = 0
        self._gauges: list[Callable[[], Iterable[str]]] = []

    def add_gauge(self, render: Callable[[], Iterable[str]]) -> None:
        """Register a callback that yields exposition lines (with HELP/TYPE) at each scrape."""
        self._gauges.append(render)

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.in_flight -= 1
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._hist.get(route)
            if hist is None:
                hist = self._hist[route] = [0.0] * (len(BUCKETS) + 2)
            hist[bisect.bisect_left(BUCKETS, seconds)] += 1
            hist[-1] += seconds

    def render(self) -> str:
        with self._lock:
            requests = dict(self._requests)
            hists = {k: list(v) for k, v in self._hist.items()}
            in_flight = self.in_flight
        out = [
            "# HELP likewise_http_requests_total HTTP requests served, by method, route and status.",
            "# TYPE likewise_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(requests.items()):
            out.append(
                f'likewise_http_requests_total{{method="{method}",route="{_escape(route)}",status="{status}"}} {n}'
            )
        out += [
            "# HELP likewise_http_request_duration_seconds Time to answer a request, by route.",
            "# TYPE likewise_http_request_duration_seconds histogram",
        ]
        for route, hist in sorted(hists.items()):
            label = _escape(route)
            cumulative: int = 0
            for bound, in_bucket in zip(BUCKETS, hist):
                cumulative += int(in_bucket)
                out.append(f'likewise_http_request_duration_seconds_bucket{{route="{label}",le="{bound}"}} {int(cumulative)}')
            cumulative += int(hist[len(BUCKETS)])
            out.append(f'likewise_http_request_duration_seconds_bucket{{route="{label}",le="+Inf"}} {int(cumulative)}')
            out.append(f'likewise_http_request_duration_seconds_sum{{route="{label}"}} {hist[-1]:.6f}')
            out.append(f'likewise_http_request_duration_seconds_count{{route="{label}"}} {int(cumulative)}')
        out += [
            "# HELP likewise_http_requests_in_flight Requests being served now.",
            "# TYPE likewise_http_requests_in_flight gauge",
            f"likewise_http_requests_in_flight {in_flight}",
        ]
        for render in self._gauges:
            out.extend(render())
        return "\n".join(out) + "\n"
