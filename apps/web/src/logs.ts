import type { CodeRunnerClient } from '@coderunner/api/client';

/** One event of the deployments.logs subscription, as the typed client delivers it. */
type LogEvent = Parameters<
  NonNullable<Parameters<CodeRunnerClient['deployments']['logs']['subscribe']>[1]['onData']>
>[0];

/**
 * The log lines one subscription event carries. The only place that knows the event's shape, so a
 * change of the subscription's output (one line per event, or batches) is adapted here alone.
 */
export function logLinesOf(event: LogEvent) {
  return [event.data];
}

export type LogLine = ReturnType<typeof logLinesOf>[number];
