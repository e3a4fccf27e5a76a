// The OpenTelemetry JS SDK as a gateway client: every metric instrument, logs, and
// one-span-per-request traces (SimpleSpanProcessor), over one OTLP protocol, gzipped.
//
//   node emit.mjs PROTOCOL GRPC_ENDPOINT HTTP_URL SERVICE TEMPORALITY END_MS
//
// PROTOCOL: grpc | proto | json; TEMPORALITY: cumulative | delta. Spans and log
// records end/happen at END_MS. Prints what it sent as JSON (trace ids).
import { metrics } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { AggregationTemporalityPreference } from '@opentelemetry/exporter-metrics-otlp-http';
import * as metricsHttp from '@opentelemetry/exporter-metrics-otlp-http';
import * as metricsProto from '@opentelemetry/exporter-metrics-otlp-proto';
import * as metricsGrpc from '@opentelemetry/exporter-metrics-otlp-grpc';
import * as logsHttp from '@opentelemetry/exporter-logs-otlp-http';
import * as logsProto from '@opentelemetry/exporter-logs-otlp-proto';
import * as logsGrpc from '@opentelemetry/exporter-logs-otlp-grpc';
import * as traceHttp from '@opentelemetry/exporter-trace-otlp-http';
import * as traceProto from '@opentelemetry/exporter-trace-otlp-proto';
import * as traceGrpc from '@opentelemetry/exporter-trace-otlp-grpc';

const [protocol, grpcEndpoint, httpUrl, service, temporality, endArg] = process.argv.slice(2);
const endMs = Number(endArg);
const modules = {
  grpc: [metricsGrpc, logsGrpc, traceGrpc],
  proto: [metricsProto, logsProto, traceProto],
  json: [metricsHttp, logsHttp, traceHttp],
}[protocol];
const url = (signal) => (protocol === 'grpc' ? grpcEndpoint : `${httpUrl}/v1/${signal}`);
const common = (signal) => ({ url: url(signal), compression: 'gzip' });
const resource = resourceFromAttributes({ 'service.name': service, 'service.version': '1.2.3' });

async function sendMetrics() {
  const exporter = new modules[0].OTLPMetricExporter({
    ...common('metrics'),
    temporalityPreference: temporality === 'delta'
      ? AggregationTemporalityPreference.DELTA : AggregationTemporalityPreference.CUMULATIVE,
  });
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3600000 });
  const provider = new MeterProvider({ resource, readers: [reader] });
  const meter = provider.getMeter('js-client', '0.1.0');
  const requests = meter.createCounter('js.requests', { unit: '{request}', description: 'Requests served' });
  requests.add(5, { route: '/a' });
  requests.add(7, { route: '/b' });
  const queue = meter.createUpDownCounter('js.queue', { unit: '{item}' });
  queue.add(10);
  queue.add(-3);
  const latency = meter.createHistogram('js.latency', { unit: 'ms' });
  for (const ms of [12, 250, 3000]) latency.record(ms, { route: '/a' });
  meter.createObservableGauge('js.temperature', { unit: 'Cel' })
    .addCallback((result) => result.observe(21.5, { room: 'lab' }));
  meter.createObservableCounter('js.cpu.time', { unit: 's' }).addCallback((result) => result.observe(3.5));
  meter.createObservableUpDownCounter('js.connections').addCallback((result) => result.observe(4));
  await provider.shutdown();  // one collection, one export: what the test expects is exactly this
}

async function sendLogs() {
  const exporter = new modules[1].OTLPLogExporter(common('logs'));
  const provider = new LoggerProvider({ resource, processors: [new SimpleLogRecordProcessor({ exporter })] });
  const logger = provider.getLogger('js-client', '0.1.0');
  logger.emit({ timestamp: endMs, severityNumber: SeverityNumber.INFO, severityText: 'INFO', body: 'order placed',
    attributes: { order: 'A-1', amount: 12.5, items: 3, paid: true } });
  logger.emit({ timestamp: endMs + 1, severityNumber: SeverityNumber.ERROR, severityText: 'ERROR',
    body: 'payment failed', attributes: { order: 'A-2' } });
  await provider.forceFlush();
  await provider.shutdown();
}

async function sendTraces() {
  const exporter = new modules[2].OTLPTraceExporter(common('traces'));
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer('js-client', '0.1.0');
  const traceIds = [];
  for (const [ms, status] of [[20, 200], [40, 200], [900, 200], [60, 503]]) {
    const span = tracer.startSpan('GET /hello', {
      kind: 1, startTime: endMs - ms, attributes: { 'http.route': '/hello', 'http.response.status_code': status },
    });
    if (status >= 500) span.setStatus({ code: 2 });
    traceIds.push(span.spanContext().traceId);
    span.end(endMs);
  }
  await provider.forceFlush();
  await provider.shutdown();
  return traceIds;
}

metrics.disable();
await sendMetrics();
await sendLogs();
const traceIds = await sendTraces();
console.log(JSON.stringify({ traceIds }));
