import type { CodeRunnerClient } from '@coderunner/api/client';

/** One event of the deployments.logs subscription, as the typed client delivers it. */
type LogEvent = Parameters<
  NonNullable<Parameters<CodeRunnerClient['deployments']['logs']['subscribe']>[1]['onData']>
>[0];

/**
 * The log lines one subscription event carries (a batch of lines per event; `missed` counts lines a
 * slow reader skipped). The only place that knows the event's shape.
 */
export function logLinesOf(event: LogEvent) {
  return event.data.lines;
}

export type LogLine = ReturnType<typeof logLinesOf>[number];
