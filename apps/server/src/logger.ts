import pino from 'pino';

/** Structured JSON logs; credentials are redacted wherever they appear in a logged object. */
export function createLogger(level: string, destination?: pino.DestinationStream) {
  return pino(
    {
      level,
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers.cookie',
          '*.password',
          '*.currentPassword',
          '*.newPassword',
          '*.token',
          'password',
          'token',
        ],
        censor: '[redacted]',
      },
    },
    // Asynchronous, buffered writes: a synchronous write per log line was the largest single cost
    // of a request in the overhead benchmark's profile. Entry points flush before exiting.
    destination ?? pino.destination({ sync: false }),
  );
}

/** Write out buffered log lines (before process.exit). */
export function flushLogger(logger: pino.Logger): Promise<void> {
  return new Promise((resolve) => logger.flush(() => resolve()));
}

export type Logger = pino.Logger;

/**
 * An uncaught exception or unhandled rejection leaves the process in a state nobody planned for:
 * log it with its stack at level fatal, flush, and exit with code 1 so that a supervisor (systemd,
 * Docker's restart policy, Kubernetes) starts a clean process. Never exit silently.
 */
export function exitOnCrash(logger: pino.Logger, what: string): void {
  let crashing = false;
  const crash = (err: unknown, kind: string) => {
    if (crashing) return;
    crashing = true;
    logger.fatal({ err }, `${what} crashed (${kind}); exiting with code 1`);
    // Also a line on stderr, in case stdout is what broke.
    process.stderr.write(`${what} crashed (${kind}): ${err instanceof Error ? err.stack : String(err)}\n`);
    const exit = () => process.exit(1);
    setTimeout(exit, 2_000).unref();
    logger.flush(exit);
  };
  process.on('uncaughtException', (err) => crash(err, 'uncaught exception'));
  process.on('unhandledRejection', (reason) => crash(reason, 'unhandled promise rejection'));
}
