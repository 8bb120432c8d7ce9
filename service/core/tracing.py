"""OpenTelemetry traces, opt-in by the standard `OTEL_*` variables (docs/tracing.md).

With none of them set nothing is installed: no provider, no exporter, no middleware, asyncpg left
unpatched, and every helper here returns at its first line. Once installed (`configure_from_env()` at
a process's start, or `install()` in a test), this module's tracer provider is the process's; it is
never made OpenTelemetry's global one, so FastAPI's own telemetry (which records raw paths and query
strings when a global provider exists) stays off, and a test can install and uninstall at will.

What a span may carry: route templates, methods, statuses, ids the service made (a solution's, a
job's) and SQL text with its literals masked. Never a header, a token, an e-mail, a raw path, a
query string or a body: nothing a client sent reaches an attribute.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes, AttributeValue
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span as SdkSpan
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "SpanKind",
    "TracingMiddleware",
    "annotate",
    "configure_from_env",
    "current_trace_id",
    "detached",
    "enabled",
    "extract",
    "failed",
    "flush",
    "inject",
    "install",
    "record",
    "requested_exporters",
    "span",
    "uninstall",
]

TRACER_NAME = "routebook"
# The exporters OTEL_TRACES_EXPORTER may name here: OTLP over HTTP (what collectors, Jaeger and
# Tempo accept) and the console, for a look without a collector.
EXPORTERS = frozenset({"otlp", "console"})
# Span names carry the method; anything else a client sends is `_OTHER` (the HTTP conventions'
# spelling), so a made-up method never becomes a span name.
_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
# W3C trace context only (traceparent, tracestate): not the baggage propagator, whose entries a
# client writes and which would otherwise travel into the queue with every job.
_W3C = TraceContextTextMapPropagator()
_NO_SPAN: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)

_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def enabled() -> bool:
    return _tracer is not None


def requested_exporters(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters the OTEL_* variables ask for; empty when they ask for none.

    Traces are on when OTEL_TRACES_EXPORTER names an exporter (other than `none`), or, that unset,
    when an OTLP endpoint is given; OTEL_SDK_DISABLED=true turns them off whatever else is set. A
    setting this process cannot honour (an unknown exporter, OTLP over gRPC) raises ValueError, for
    the entry points to refuse to start with.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if raw:
        exporters = [name.strip() for name in raw.split(",") if name.strip() and name.strip() != "none"]
    elif environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        exporters = ["otlp"]
    else:
        return []
    unknown = sorted(set(exporters) - EXPORTERS)
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not supported (otlp, console, none)")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if "otlp" in exporters and protocol.strip() != "http/protobuf":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol} is not supported (http/protobuf)")
    return exporters


def configure_from_env(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install tracing as the OTEL_* variables say (requested_exporters), once per process; whether
    it is on. `service_name` is used when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES
    names one; the SDK reads the rest itself (endpoint, headers, timeout, sampler, batching)."""
    if _tracer is not None:
        return True  # installed already (by an earlier app of this process, or by a test)
    exporters = requested_exporters(environ)
    if not exporters:
        return False
    install(*(_exporter(name) for name in exporters), service_name=service_name)
    return True


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*


def install(*exporters: SpanExporter, service_name: str, batch: bool = True) -> TracerProvider:
    """Make traces go to `exporters` (batched in a background thread, or, for tests, one by one as
    each span ends) and instrument asyncpg; replaces whatever was installed."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    global _provider, _tracer
    uninstall()
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(
            _Guarded(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
        )
    # Statement text only (literals masked by _Guarded); never the parameters, which are user data.
    AsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=provider)
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME)
    return provider


def uninstall() -> None:
    """Flush and remove what install() put in place (asyncpg is unpatched again)."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().uninstrument()
    provider.shutdown()


def flush() -> None:
    """Every ended span handed to the exporters (a test reads them after this)."""
    if _provider is not None:
        _provider.force_flush()


# A quoted SQL literal (with '' escapes): masked in statements, so a value written into SQL text
# (the caller's id in a transaction's BEGIN) is never exported.
_SQL_LITERAL = re.compile(r"'(?:[^']|'')*'")
_STATEMENT_ATTRIBUTES = ("db.statement", "db.query.text")


class _Guarded(SpanProcessor):
    """A span processor in front of an exporting one: masks SQL literals as a span starts, and drops
    database spans that belong to no trace (the worker's polls and heartbeats, the sweeper: one
    root span per statement, several a second, that say nothing about any request or solve)."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        for key in _STATEMENT_ATTRIBUTES:
            statement = span.attributes.get(key) if span.attributes else None
            if isinstance(statement, str):
                span.set_attribute(key, _SQL_LITERAL.sub("'?'", statement))
        self._inner.on_start(span, parent_context)

    def _on_ending(self, span: SdkSpan) -> None:
        self._inner._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        if span.parent is None and span.kind is SpanKind.CLIENT:
            return
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    attributes: Attributes = None,
) -> AbstractContextManager[Span]:
    """A span around a block, current inside it (under `parent`, else the current span); a no-op
    span when tracing is off. An exception marks it as an error by its type only: an exception's
    message may quote data."""
    if _tracer is None:
        return _NO_SPAN
    return _traced(_tracer, name, kind, parent, attributes)


@contextmanager
def _traced(
    tracer: trace.Tracer, name: str, kind: SpanKind, parent: Context | None, attributes: Attributes
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            failed(current, exc)
            raise


def failed(target: Span, exc: BaseException) -> None:
    target.set_attribute("error.type", type(exc).__qualname__)
    target.set_status(StatusCode.ERROR)


def annotate(attributes: Mapping[str, AttributeValue]) -> None:
    """Add `attributes` to the current span."""
    if _tracer is not None:
        trace.get_current_span().set_attributes(attributes)


def record(name: str, *, start_ns: int, end_ns: int, attributes: Attributes = None) -> None:
    """A finished span, under the current one, of something timed elsewhere (another process)."""
    if _tracer is None:
        return
    recorded = _tracer.start_span(name, start_time=start_ns, attributes=attributes)
    recorded.end(end_time=end_ns)


@contextmanager
def detached() -> Iterator[None]:
    """Tasks created inside belong to no trace (a solve's progress writes: two a second, for
    minutes, would bury the solve's own spans)."""
    if _tracer is None:
        yield
        return
    token = otel_context.attach(otel_context.Context())
    try:
        yield
    finally:
        otel_context.detach(token)


def current_trace_id() -> str | None:
    """The current trace's id (32 hex digits, as trace viewers show it), for a log line to name."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def inject() -> dict[str, str]:
    """The current span's W3C trace context (`traceparent`, `tracestate`), to travel with a job;
    empty when tracing is off."""
    carrier: dict[str, str] = {}
    if _tracer is not None:
        _W3C.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str]) -> Context | None:
    """The context a job carried, to continue its trace; None when tracing is off or it has none."""
    if _tracer is None or not carrier:
        return None
    return _W3C.extract(carrier)


class _HeaderGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = carrier.getlist(key)
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return list(carrier.keys())


_HEADERS = _HeaderGetter()


class TracingMiddleware:
    """A server span per HTTP request, named `METHOD /route/{template}` once the route is known (just
    the method when none matched). It continues a caller's W3C `traceparent`. Added by the app
    factory only when tracing is on; its attributes are the method, the route template and the
    status, nothing the client wrote."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = _tracer
        if scope["type"] != "http" or tracer is None:
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        parent = _W3C.extract(Headers(scope=scope), getter=_HEADERS)
        server = tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes={"http.request.method": method}
        )
        status: int | None = None

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with trace.use_span(server, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            try:
                await self.app(scope, receive, send_traced)
            except BaseException as exc:
                failed(server, exc)
                raise
            finally:
                template = getattr(scope.get("route"), "path_format", None)
                if isinstance(template, str):
                    server.update_name(f"{method} {template}")
                    server.set_attribute("http.route", template)
                if status is not None:
                    server.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        server.set_status(StatusCode.ERROR)
                server.end()
