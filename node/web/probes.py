"""The probes and the metrics: ``/healthz``, ``/readyz``, ``/metrics`` - public routes, no sign-in, no patient data.

* ``/healthz`` (liveness): the process answers - ``200 ok``. Nothing else is checked, so a database or disk outage
  never gets a healthy process restarted.
* ``/readyz`` (readiness): the database answers ``SELECT 1``, the spool's temporary folder takes a small file, and
  the spool's disk is above ``storage.min_free_mb`` (`sarcoscreen.node.readiness`) - ``200`` with the checks as
  JSON, or ``503`` with the same JSON naming the check that failed and why.
* ``/metrics``: the Prometheus text format of `sarcoscreen.node.metrics.NodeCollector`, read from the database and
  the disks at each scrape, from a `CollectorRegistry` made once per application (kept on ``app.state``).

The endpoints are plain functions: Starlette runs them in its thread pool, so database work does not block the
event loop. The console's security headers apply (``Cache-Control: no-store``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from sarcoscreen.node.metrics import metrics_registry
from sarcoscreen.node.readiness import readiness
from sarcoscreen.node.web.console import console_of

__all__ = ["TEXT_FORMAT", "routes"]

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' classic text exposition format, which `generate_latest` writes and every Prometheus version reads."""

_REGISTRY = "metrics_registry"
"""The attribute of ``app.state`` holding the application's registry."""


def _healthz(_request: Request) -> Response:
    return PlainTextResponse("ok\n")


def _readyz(request: Request) -> Response:
    console = console_of(request)
    report = readiness(console.settings, console.db)
    return JSONResponse(report.as_json(), status_code=200 if report.ok else 503)


def _registry(request: Request) -> CollectorRegistry:
    """The application's registry, made at the first scrape (one per application, never module-level)."""
    registry = getattr(request.app.state, _REGISTRY, None)
    if registry is None:
        console = console_of(request)
        registry = metrics_registry(console.settings, console.db)
        setattr(request.app.state, _REGISTRY, registry)
    return registry


def _metrics(request: Request) -> Response:
    return Response(generate_latest(_registry(request)), media_type=TEXT_FORMAT)


def routes() -> list[BaseRoute]:
    return [Route("/healthz", _healthz, methods=["GET"]),
            Route("/readyz", _readyz, methods=["GET"]),
            Route("/metrics", _metrics, methods=["GET"])]
