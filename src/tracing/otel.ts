import os from 'node:os';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import type { Attributes, Context, Span, Tracer } from '@opentelemetry/api';
import type { NodeSDK } from '@opentelemetry/sdk-node';
import { ATTR } from './attributes.js';

export { SpanKind, SpanStatusCode };
export type { Span };

export interface TracingOptions {
  enabled: boolean;
  serviceVersion: string;
  podId: string;
  /** Resolves with the GPU model once the backend has read it (a resource attribute). */
  gpuModel: Promise<string | undefined>;
}

/**
 * The agent's traces, through @opentelemetry/sdk-node configured by the standard `OTEL_*` variables
 * (exporter, endpoint, protocol, sampler, resource attributes, service name). Off, nothing is set up:
 * no context manager, no exporter, and callers test `enabled` before making a span, so tracing costs
 * nothing. The agent makes its spans itself (HTTP requests, jobs, workflow nodes, failed GPU samples)
 * rather than through monkey-patching instrumentations, which ESM would need a loader hook for.
 */
export class Tracing {
  readonly enabled: boolean;
  readonly tracer: Tracer;
  private shutdownPromise: Promise<void> | undefined;

  /**
   * Sets tracing up. The SDK (its exporters, gRPC among them) is loaded only when tracing is on: off, it
   * would cost the agent about 10 MB of heap and half a second of start for nothing.
   */
  static async start(opts: TracingOptions): Promise<Tracing> {
    if (!opts.enabled) return new Tracing(opts.serviceVersion, undefined);
    const [{ NodeSDK }, { defaultResource, resourceFromAttributes }] = await Promise.all([
      import('@opentelemetry/sdk-node'),
      import('@opentelemetry/resources'),
    ]);
    const sdk = new NodeSDK({
      // The service name is OTEL_SERVICE_NAME's when set: the env detector's attributes win.
      resource: defaultResource().merge(
        resourceFromAttributes({
          'service.name': 'gpu-pod-agent',
          'service.version': opts.serviceVersion,
          'host.name': os.hostname(),
          [ATTR.podId]: opts.podId,
          [ATTR.gpuModel]: opts.gpuModel,
        }),
      ),
    });
    sdk.start();
    return new Tracing(opts.serviceVersion, sdk);
  }

  private constructor(
    serviceVersion: string,
    private readonly sdk: NodeSDK | undefined,
  ) {
    this.enabled = sdk !== undefined;
    this.tracer = trace.getTracer('gpu-pod-agent', serviceVersion);
  }

  /** A span whose parent is the W3C `traceparent` given (a producer's, a caller's), or a new trace. */
  startFromTraceparent(
    name: string,
    traceparent: string | undefined,
    kind: SpanKind,
    attributes: Attributes,
  ): Span {
    const parent = traceparent
      ? propagation.extract(
          ROOT_CONTEXT,
          { traceparent },
          { get: (c, k) => c[k as 'traceparent'], keys: () => ['traceparent'] },
        )
      : ROOT_CONTEXT;
    return this.tracer.startSpan(name, { kind, attributes }, parent);
  }

  /** A child span of `parent`. */
  startChild(name: string, parent: Span, attributes: Attributes, startTime?: number): Span {
    return this.tracer.startSpan(name, { attributes, startTime }, trace.setSpan(context.active(), parent));
  }

  /** Runs `fn` with `span` active, so what it starts (BullMQ's own spans, logs) nests under it. */
  withSpan<T>(span: Span, fn: () => T): T {
    return context.with(trace.setSpan(context.active(), span), fn);
  }

  /** Sends what is buffered and stops; bounded by `timeoutMs` (the drain deadline). Idempotent. */
  async shutdown(timeoutMs: number): Promise<void> {
    if (!this.sdk) return;
    this.shutdownPromise ??= this.sdk.shutdown().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.shutdownPromise,
      new Promise<void>((r) => {
        timer = setTimeout(r, Math.max(0, timeoutMs));
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }
}

/** The W3C traceparent of a span, for what it starts (a job's command, a log record). */
export function traceparentOf(span: Span): string {
  const c = span.spanContext();
  return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 1) === 1 ? '01' : '00'}`;
}

/** Ends `span` as failed with `message`, or as ok. */
export function endSpan(span: Span, failure?: { message: string; type?: string }): void {
  if (failure) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
    if (failure.type) span.setAttribute('error.type', failure.type);
  }
  span.end();
}

/** `Context` of a span for APIs that take one. */
export function contextOf(span: Span): Context {
  return trace.setSpan(ROOT_CONTEXT, span);
}
