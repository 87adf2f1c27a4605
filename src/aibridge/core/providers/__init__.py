"""Per-API translators and response parsers.

Each module owns one wire format and exposes the same small surface, listed in
:mod:`aibridge.core.providers.base`: ``translate_request`` (client body to
upstream body, minimal rewrites), ``StreamHandler`` (SSE events to audit
events) and ``audit_body`` (a blocking JSON reply to audit events).
"""

from __future__ import annotations
