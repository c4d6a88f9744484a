/**
 * Cleanup that runs even on failure: every resource a benchmark starts (a child process, a database,
 * an embedded cluster, a temp folder) registers its undo here, and the undos run last-in first-out
 * when the benchmark ends, throws, or the run is interrupted (SIGINT/SIGTERM).
 */
const active = new Set<Scope>();

export class Scope {
  private readonly undo: { label: string; fn: () => Promise<void> | void }[] = [];
  /** Log files of the processes started in this scope (shown when the benchmark fails). */
  readonly logFiles: string[] = [];
  private closing: Promise<void> | undefined;

  constructor(readonly name: string) {
    active.add(this);
  }

  defer(label: string, fn: () => Promise<void> | void): void {
    if (this.closing) {
      // A benchmark abandoned at its time limit keeps running until it notices: undo at once, and stop it.
      void Promise.resolve()
        .then(fn)
        .catch(() => {});
      throw new Error(`${this.name} was already cleaned up (time limit?): ${label} undone at once`);
    }
    this.undo.push({ label, fn });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      while (this.undo.length) {
        const { label, fn } = this.undo.pop()!;
        try {
          await withTimeout(Promise.resolve().then(fn), 60_000, `cleanup "${label}"`);
        } catch (err) {
          console.error(`  [${this.name}] cleanup "${label}" failed: ${(err as Error).message}`);
        }
      }
      active.delete(this);
    })();
    return this.closing;
  }
}

/** Close every open scope (newest first): used by the signal and crash handlers. */
export async function closeAllScopes(): Promise<void> {
  for (const scope of [...active].reverse()) await scope.close();
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
