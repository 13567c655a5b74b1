"""Sends Magpie's interop set with the OpenTelemetry Python SDK.

3 spans, a counter (5), a histogram (3 values) and 2 log records, over
OTLP/gRPC or OTLP/HTTP protobuf.

Usage: python client.py grpc|http <endpoint> <service.name>
  grpc endpoint: 127.0.0.1:4317     http endpoint: http://127.0.0.1:4318
"""

import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def exporters(protocol: str, endpoint: str):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPSpanExporter(endpoint=endpoint, insecure=True),
            OTLPMetricExporter(endpoint=endpoint, insecure=True),
            OTLPLogExporter(endpoint=endpoint, insecure=True),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
        OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"),
    )


def main() -> None:
    protocol, endpoint, service = sys.argv[1:4]
    resource = Resource.create({"service.name": service})
    span_exporter, metric_exporter, log_exporter = exporters(protocol, endpoint)

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    tracer = tracer_provider.get_tracer("interop")
    with tracer.start_as_current_span("POST /api/chat", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.request.method", "POST")
        root.set_attribute("http.route", "/api/chat")
        root.set_attribute("http.response.status_code", 200)
        root.set_attribute("big.int", 9007199254740993)
        root.set_attribute("ratio", 0.25)
        root.set_attribute("cached", True)
        root.add_event("cache miss", {"key": "emb:1"})
        with tracer.start_as_current_span("chat grok-4", kind=SpanKind.CLIENT) as llm:
            llm.set_attribute("gen_ai.system", "xai")
            llm.set_attribute("gen_ai.usage.input_tokens", 1234)
            llm.set_status(Status(StatusCode.ERROR, "upstream timeout"))
        with tracer.start_as_current_span("rag.search"):
            pass
    tracer_provider.shutdown()

    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meter_provider.get_meter("interop")
    counter = meter.create_counter("interop.requests")
    counter.add(2, {"route": "/api/chat"})
    counter.add(3, {"route": "/api/chat"})
    hist = meter.create_histogram("interop.latency", unit="s")
    for v in (0.1, 0.2, 0.4):
        hist.record(v)
    meter_provider.shutdown()

    # Apps log through the standard logging module; the SDK's handler turns records into OTLP.
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    app_logger = logging.getLogger("interop")
    app_logger.propagate = False
    app_logger.setLevel(logging.INFO)
    app_logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    app_logger.info("hello")
    app_logger.error("world")
    logger_provider.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
