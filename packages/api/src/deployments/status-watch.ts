import type { EventEmitter } from 'node:events';

/**
 * Watchers of a deployment's status (deployments.watch) in this process share one feed per
 * deployment: one query when its status NOTIFY arrives (or every `pollMs`, for a change another
 * replica made without one), handed to every watcher, where each watcher used to run its own loop,
 * timer and query every 2 s (1,000 open deployment pages: 500 queries a second).
 */
export class StatusWatch<Row> {
  private readonly feeds = new Map<string, StatusFeed<Row>>();

  constructor(
    /** The deployment's row, null once it is gone; rejects when it cannot be read. */
    private readonly load: (id: string) => Promise<Row | null>,
    private readonly events: EventEmitter,
    private readonly pollMs = 2_000,
  ) {}

  /**
   * Calls `onRow` with the row each time the feed reads it (null: gone, or unreadable), until the
   * returned function is called. A read follows soon after subscribing, so that a change made
   * between the caller's own read and this call is not missed.
   */
  subscribe(id: string, onRow: (row: Row | null) => void): () => void {
    let feed = this.feeds.get(id);
    if (!feed) {
      const created = new StatusFeed<Row>(() => this.load(id), this.pollMs);
      const onEvent = () => created.kick();
      this.events.on(id, onEvent);
      created.onIdle = () => {
        this.events.off(id, onEvent);
        if (this.feeds.get(id) === created) this.feeds.delete(id);
      };
      this.feeds.set(id, created);
      feed = created;
    }
    return feed.add(onRow);
  }

  /** Deployments watched in this process (for tests). */
  get watchedDeployments(): number {
    return this.feeds.size;
  }
}

class StatusFeed<Row> {
  private readonly watchers = new Set<(row: Row | null) => void>();
  private loading = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  onIdle: () => void = () => {};

  constructor(
    private readonly load: () => Promise<Row | null>,
    private readonly pollMs: number,
  ) {}

  add(watcher: (row: Row | null) => void): () => void {
    this.watchers.add(watcher);
    this.kick();
    return () => {
      this.watchers.delete(watcher);
      if (this.watchers.size) return;
      clearTimeout(this.timer);
      this.onIdle();
    };
  }

  /** A read now, or right after the one under way (which may have read before the change). */
  kick(): void {
    if (!this.watchers.size) return;
    if (this.loading) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.loading = true;
    void this.load()
      .catch(() => null)
      .then((row) => {
        this.loading = false;
        for (const watcher of [...this.watchers]) watcher(row);
        if (!this.watchers.size) return;
        if (this.again) {
          this.again = false;
          this.kick();
          return;
        }
        this.timer = setTimeout(() => this.kick(), this.pollMs);
        this.timer.unref();
      });
  }
}
