"""Optional OpenTelemetry spans: client call → node → forward → worker.

Rules
-----
1. Optional. The ``opentelemetry-api``/``-sdk`` packages come with the extra
   ``quorum-registry[otel]``; nothing here is imported unless tracing is turned on, and
   turning it on without them is a clear error (``TracingUnavailable``), not an
   ``ImportError`` at some later call.
2. Off by default. The SDK traces when given a tracer provider
   (``Client(..., tracer_provider=provider)``); a node when its config says
   ``tracing = "console"``, ``"otlp"`` (needs ``opentelemetry-exporter-otlp``, configured
   by the standard ``OTEL_EXPORTER_OTLP_*`` variables) or ``"jsonl:PATH"`` (one JSON
   object per finished span appended to PATH: for tests and for a quick look without a
   collector). Worker hosts inherit the node's setting.
3. The W3C trace context travels in gRPC metadata (``traceparent``): client interceptors
   inject the current context, the server interceptor extracts it and makes the handler's
   span current, so a node's forward to the leader or owner (a client call made inside
   the handler) is a child of the request it serves, and the worker's span a child of the
   call that reached its host.
4. Span names are the gRPC method (``registry.v1.Registry/Call``) and ``worker
   handle_call`` (a worker host's answer to a call on its own port, rule 3);
   attributes follow the RPC semantic conventions (``rpc.system``, ``rpc.service``,
   ``rpc.method``, ``rpc.grpc.status_code``) plus ``registry.node`` and
   ``registry.name`` where known. Payloads are never recorded.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import grpc
import grpc.aio

INSTRUMENTATION = "quorum-registry"
Handler = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[Any]]


class TracingUnavailable(RuntimeError):
    """Tracing was asked for, but the OpenTelemetry packages are not installed."""


def _otel() -> Any:
    try:
        from opentelemetry import context, propagate, trace
    except ImportError as exc:
        raise TracingUnavailable(
            "tracing needs OpenTelemetry: pip install 'quorum-registry[otel]'"
        ) from exc
    return context, propagate, trace


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def _code_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code()
    return grpc.StatusCode.UNKNOWN


# -- client side ----------------------------------------------------------------------


class ClientTracing(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """A CLIENT span per RPC attempt, and its context injected into the metadata."""

    def __init__(self, tracer_provider: Any | None = None) -> None:
        _, self._propagate, trace = _otel()
        self._tracer = trace.get_tracer(INSTRUMENTATION, tracer_provider=tracer_provider)
        self._kind = trace.SpanKind.CLIENT
        self._status = trace.Status
        self._error = trace.StatusCode.ERROR

    def _start(self, details: Any) -> tuple[Any, Any]:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        service, name = _split(method)
        span = self._tracer.start_span(
            method.lstrip("/"),
            kind=self._kind,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier, context=_trace_context(span))
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *carrier.items())
        return span, details._replace(metadata=metadata)

    def _end(self, span: Any, code: grpc.StatusCode) -> None:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(self._status(self._error, code.name))
        span.end()

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        span, details = self._start(details)
        try:
            call = await continuation(details, request)
            code = await call.code()
        except BaseException as exc:
            self._end(span, _code_of(exc))
            raise
        self._end(span, code)
        return call

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        # A stream (Watch) lasts as long as the client watches: the span covers only its
        # opening, so the trace shows where it went without a span that never ends.
        span, details = self._start(details)
        try:
            return await continuation(details, request)
        finally:
            self._end(span, grpc.StatusCode.OK)


def _trace_context(span: Any) -> Any:
    _, _, trace = _otel()
    return trace.set_span_in_context(span)


# -- server side ----------------------------------------------------------------------


class ServerTracing(grpc.aio.ServerInterceptor):
    """A SERVER span around each unary handler, current while it runs (rule 3)."""

    def __init__(self, node: str, tracer_provider: Any | None = None) -> None:
        self._context, self._propagate, trace = _otel()
        self._tracer = trace.get_tracer(INSTRUMENTATION, tracer_provider=tracer_provider)
        self._kind = trace.SpanKind.SERVER
        self._status = trace.Status
        self._error = trace.StatusCode.ERROR
        self._node = node

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler: Any = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler  # type: ignore[no-any-return]
        return grpc.unary_unary_rpc_method_handler(
            self.wrap(details.method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def wrap(self, method: str, inner: Handler) -> Handler:
        """``inner`` (a unary handler of ``method``) inside a SERVER span (rule 3)."""
        service, name = _split(method)
        tracer, kind, node = self._tracer, self._kind, self._node
        propagate, error, status = self._propagate, self._error, self._status

        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            carrier = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            attributes = {
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "registry.node": node,
            }
            spec = getattr(request, "spec", None)
            target = getattr(request, "name", "") or getattr(spec, "name", "")
            if isinstance(target, str) and target:
                attributes["registry.name"] = target
            with tracer.start_as_current_span(
                method.lstrip("/"),
                context=propagate.extract(carrier),
                kind=kind,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    return await inner(request, context)
                except BaseException as exc:
                    code = context.code() if isinstance(exc, grpc.aio.AbortError) else None
                    label = code.name if isinstance(code, grpc.StatusCode) else type(exc).__name__
                    span.set_status(status(error, label))
                    raise

        return traced

    @contextlib.contextmanager
    def internal(self, span_name: str, **attributes: str) -> Iterator[None]:
        """An INTERNAL span, child of the current one."""
        _, _, trace = _otel()
        with self._tracer.start_as_current_span(
            span_name, kind=trace.SpanKind.INTERNAL, attributes=attributes
        ):
            yield


# -- workers --------------------------------------------------------------------------


@contextlib.contextmanager
def worker_span(tracing: ServerTracing | None, what: str, *, name: str) -> Iterator[None]:
    """A ``worker <what>`` span (``handle_call`` …) around an activation's answer, child of
    the request's span; nothing when ``tracing`` is ``None`` (off)."""
    if tracing is None:
        yield
        return
    with tracing.internal(f"worker {what}", **{"registry.name": name}):
        yield


# -- node setup -----------------------------------------------------------------------


def check_setting(setting: str) -> str | None:
    """What is wrong with a node's ``tracing`` setting, or ``None``."""
    if setting in ("", "console", "otlp") or (setting.startswith("jsonl:") and len(setting) > 6):
        return None
    return f"tracing must be '', 'console', 'otlp' or 'jsonl:PATH' (got {setting!r})"


def node_tracer_provider(setting: str, service: str, node: str) -> Any | None:
    """The tracer provider a node (or one of its hosts) exports with; ``None`` when off.
    Raises ``TracingUnavailable`` when the packages it needs are missing."""
    if not setting:
        return None
    _otel()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError as exc:
        raise TracingUnavailable(
            "tracing needs the OpenTelemetry SDK: pip install 'quorum-registry[otel]'"
        ) from exc
    resource = Resource.create({"service.name": service, "service.instance.id": node})
    provider = TracerProvider(resource=resource)
    if setting == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif setting == "otlp":
        try:
            otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
        except ImportError as exc:
            raise TracingUnavailable(
                "tracing = 'otlp' needs: pip install opentelemetry-exporter-otlp"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(otlp.OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(json_lines_exporter(setting[6:])))
    return provider


def json_lines_exporter(path: str) -> Any:
    """A span exporter appending one JSON object per span to ``path``
    (``tracing = "jsonl:PATH"``). Each span is one ``write`` with ``O_APPEND``, so several
    processes (a node and its hosts) can share the file."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class JsonLines(SpanExporter):
        def __init__(self) -> None:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._lock = threading.Lock()

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            for span in spans:
                self._write(span)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

        def _write(self, span: Any) -> None:
            ctx, parent = span.get_span_context(), span.parent
            record = {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": f"{ctx.trace_id:032x}",
                "span_id": f"{ctx.span_id:016x}",
                "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
                "status": span.status.status_code.name,
                "attributes": dict(span.attributes or {}),
                "service": span.resource.attributes.get("service.instance.id", ""),
                "start_ns": span.start_time,
                "end_ns": span.end_time,
            }
            with self._lock:
                os.write(self._fd, (json.dumps(record, default=str) + "\n").encode())

    return JsonLines()
