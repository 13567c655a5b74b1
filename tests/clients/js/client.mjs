// Sends Magpie's interop set with the OpenTelemetry JavaScript SDK over
// OTLP/HTTP JSON: 3 spans, a counter (5), a histogram (3 values), 2 logs.
// Usage: node client.mjs http://127.0.0.1:4318 <service.name>
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

const [base, service] = process.argv.slice(2);
if (!base || !service) {
  console.error('usage: node client.mjs <base url> <service.name>');
  process.exit(2);
}
const resource = resourceFromAttributes({ 'service.name': service });

const tracerProvider = new BasicTracerProvider({
  resource,
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${base}/v1/traces` }))],
});
const tracer = tracerProvider.getTracer('interop');
const root = tracer.startSpan('POST /api/chat', {
  kind: SpanKind.SERVER,
  attributes: {
    'http.request.method': 'POST',
    'http.route': '/api/chat',
    'http.response.status_code': 200,
    ratio: 0.25,
    cached: true,
  },
});
root.addEvent('cache miss', { key: 'emb:1' });
const parent = trace.setSpan(context.active(), root);
const llm = tracer.startSpan('chat grok-4', { kind: SpanKind.CLIENT, attributes: { 'gen_ai.system': 'xai', 'gen_ai.usage.input_tokens': 1234 } }, parent);
llm.setStatus({ code: SpanStatusCode.ERROR, message: 'upstream timeout' });
llm.end();
tracer.startSpan('rag.search', {}, parent).end();
root.end();
await tracerProvider.shutdown();

const meterProvider = new MeterProvider({
  resource,
  readers: [new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter({ url: `${base}/v1/metrics` }), exportIntervalMillis: 60000 })],
});
const meter = meterProvider.getMeter('interop');
const counter = meter.createCounter('interop.requests');
counter.add(2, { route: '/api/chat' });
counter.add(3, { route: '/api/chat' });
const hist = meter.createHistogram('interop.latency', { unit: 's' });
for (const v of [0.1, 0.2, 0.4]) hist.record(v);
await meterProvider.shutdown();

const loggerProvider = new LoggerProvider({
  resource,
  processors: [new SimpleLogRecordProcessor({ exporter: new OTLPLogExporter({ url: `${base}/v1/logs` }) })],
});
const logger = loggerProvider.getLogger('interop');
logger.emit({ body: 'hello', severityNumber: SeverityNumber.INFO, severityText: 'INFO' });
logger.emit({ body: 'world', severityNumber: SeverityNumber.ERROR, severityText: 'ERROR' });
await loggerProvider.shutdown();
