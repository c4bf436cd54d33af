"""Observability: Prometheus metrics, structured logs and OpenTelemetry traces.

Sits between the protocol adapters and the runtimes: it subscribes to the core's events and
receives from the adapters what only they see (protocol, decode and encode times, failures
before a model resolves). The core imports nothing from here. See docs/observability.md.
"""
