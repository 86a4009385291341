import koffi from 'koffi';

/**
 * Ends the process at once with `code`, through libc's `_exit`. For the one case where
 * `process.exit` would hang: Node joins worker threads on exit, and a thread stuck inside a wedged
 * driver call never returns.
 */
export function exitImmediately(code: number): never {
  try {
    const libc = koffi.load('libc.so.6');
    const exit = libc.func('void _exit(int)') as (status: number) => void;
    exit(code);
  } catch {
    // No libc to call: fall through to a signal, which ends the process without joining threads.
  }
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}
