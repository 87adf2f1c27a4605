"""aibridge: an auditing gateway between AI coding agents and LLM providers."""

from __future__ import annotations

__version__ = "0.1.0"
