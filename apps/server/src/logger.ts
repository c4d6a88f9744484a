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
