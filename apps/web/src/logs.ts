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

/** Why a follow ended (the deployment stopped, failed, was destroyed or replaced), on its last event. */
export function logEndOf(event: LogEvent) {
  return event.data.end;
}

export type LogEnd = NonNullable<ReturnType<typeof logEndOf>>;

/** The sentence the log view shows when its follow has ended. */
export function logEndText(end: LogEnd): string {
  switch (end.status) {
    case 'STOPPED':
      return end.replacedBy
        ? 'A newer deployment replaced this one and it stopped: its log ends here.'
        : 'The deployment stopped: its log ends here.';
    case 'FAILED':
      return 'The deployment failed: its log ends here.';
    default:
      return 'The deployment was destroyed: its log ends here.';
  }
}
