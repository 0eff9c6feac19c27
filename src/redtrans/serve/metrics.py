"""Prometheus metrics of one service (own registry, so several apps can live in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Counters, histograms and gauges of the service; `/metrics` renders `registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "redtrans_requests",
            "Translate requests answered, by API (translate, openai, deepl, libretranslate)",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "redtrans_request_seconds",
            "Latency of translate requests",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.items = Counter("redtrans_items", "Texts answered, by how", ["source"], registry=r)
        self.rejected = Counter("redtrans_rejected", "Requests refused, by reason", ["reason"], registry=r)
        self.batch_seconds = Histogram(
            "redtrans_batch_seconds",
            "Wall time of one engine batch",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.batch_items = Histogram(
            "redtrans_batch_items", "Texts per engine batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.cancelled = Counter(
            "redtrans_cancelled", "Texts dropped because no request waits for them any more", ["where"], registry=r
        )
        self.cache_timeouts = Counter("redtrans_cache_timeouts", "Cache lookups given up as too slow", registry=r)
        self.queue_depth = Gauge("redtrans_queue_depth", "Jobs waiting for a worker", registry=r)
        self.in_flight = Gauge("redtrans_texts_in_flight", "Distinct texts queued or being translated", registry=r)
        self.ready = Gauge("redtrans_ready", "1 when the model is loaded", registry=r)
        self.breaker = Gauge(
            "redtrans_upstream_breaker_state",
            "Circuit breaker of each upstream endpoint (openai engine): 0 closed, 1 half-open, 2 open",
            ["endpoint"],
            registry=r,
        )
        self.rate_limit_fallbacks = Counter(
            "redtrans_rate_limit_fallbacks",
            "Rate-limit decisions taken by this process's own bucket because the shared store did not answer",
            registry=r,
        )

        self._children: dict[tuple[Any, ...], Any] = {}

    def request(self, route: str, status: int) -> Any:
        """The requests counter's child for (route, status), looked up once (`labels` costs ~30 µs a call)."""
        key = ("requests", route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(route, str(status))
        return child

    def item(self, source: str) -> Any:
        """The items counter's child for `source` (engine, cache, failed, error), looked up once."""
        key = ("items", source)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.items.labels(source)
        return child

    def observe_breakers(self, engine: object) -> None:
        """Copy an engine's circuit-breaker states into the gauge (engines without breakers have none)."""
        states = getattr(engine, "breaker_states", None)
        if not callable(states):
            return
        from redtrans.engines.openai import BREAKER_STATES

        for endpoint, state in states().items():
            self.breaker.labels(endpoint).set(BREAKER_STATES.index(state))
