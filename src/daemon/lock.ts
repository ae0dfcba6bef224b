/** Thrown when an operation on a VM waited too long for another one on the same VM. */
export class BusyError extends Error {}

/**
 * One queue per key: operations on one VM run one after the other, never interleaved. A caller that
 * would wait longer than `waitMs` gets a BusyError that names what is running.
 */
export class KeyedLock {
  private readonly tails = new Map<string, { done: Promise<void>; what: string }>();

  async run<T>(key: string, what: string, waitMs: number, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key);
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    const chained = (previous?.done ?? Promise.resolve()).then(() => done);
    const entry = { done: chained, what };
    this.tails.set(key, entry);
    try {
      if (previous) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new BusyError(`${key} is busy (${previous.what} in progress): try again when it finishes`),
              ),
            waitMs,
          );
        });
        try {
          await Promise.race([previous.done, timeout]);
        } finally {
          clearTimeout(timer);
        }
      }
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === entry) this.tails.delete(key);
    }
  }
}
