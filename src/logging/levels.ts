/** pino's level names and numbers; the ring buffer filters on the numbers. */
export const LEVEL_VALUES = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
} as const;

export type LevelName = keyof typeof LEVEL_VALUES;

export function isLevelName(s: string): s is LevelName {
  return Object.hasOwn(LEVEL_VALUES, s);
}

const ALIASES: Record<string, LevelName> = {
  trace: 'trace',
  debug: 'debug',
  verbose: 'debug',
  info: 'info',
  information: 'info',
  notice: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  err: 'error',
  critical: 'fatal',
  crit: 'fatal',
  fatal: 'fatal',
  panic: 'fatal',
};

/** A level from a foreign log line: a name in any case and common synonyms, or a pino number. */
export function toLevelName(v: unknown): LevelName | undefined {
  if (typeof v === 'number') {
    if (v >= 60) return 'fatal';
    if (v >= 50) return 'error';
    if (v >= 40) return 'warn';
    if (v >= 30) return 'info';
    if (v >= 20) return 'debug';
    return 'trace';
  }
  if (typeof v === 'string') return ALIASES[v.trim().toLowerCase()];
  return undefined;
}
