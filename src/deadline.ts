/**
 * Resolves true when `p` settles within `ms`, false when the time runs out first; a rejection of `p`
 * within the time rejects. The timer is cleared either way, so nothing is left to keep the process up.
 */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => (t = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(t);
  }
}
