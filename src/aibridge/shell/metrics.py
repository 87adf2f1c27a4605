"""Prometheus metrics. Every metric of the process registers on :data:`REGISTRY`.

Labels stay low-cardinality (provider, model, api, status, client); per-user
series only when ``metrics_per_user`` is on.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

REGISTRY = CollectorRegistry(auto_describe=True)
