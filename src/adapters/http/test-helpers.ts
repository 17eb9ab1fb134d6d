// Helpers of the adapter tests (not exported by any entry point).

/** A promise and the function that fulfils it, for handlers a test holds open. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * Polls until `condition` holds, failing with `what` after 5 s. The tests drive real servers,
 * whose requests arrive on the event loop whatever the fake clock says.
 */
export async function until(condition: () => boolean, what: string): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > 5_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
