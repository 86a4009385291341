import type { LevelName } from '../logging/levels.js';
import { toLevelName } from '../logging/levels.js';

export interface WorkloadRecord {
  level: LevelName;
  message: string;
  /** The line's own fields when it was a JSON object. */
  data?: Record<string, unknown>;
}

const LEADING_LEVEL =
  /^\s*\[?\s*(trace|debug|info|notice|warn|warning|error|err|critical|crit|fatal)\b\s*[\]:|-]?/i;

/**
 * What a workload's output line means as a log record. JSON objects keep their fields as `data`, with
 * `level`/`severity`/`levelname` and `message`/`msg` honoured; plain text gets its level from a leading
 * token such as `ERROR:` or `[warning]` (Python's logging, most loggers), otherwise `info`.
 */
export function classifyWorkloadLine(line: string): WorkloadRecord {
  const trimmed = line.trim();
  if (trimmed.startsWith('{') && trimmed.endsWith('}')) {
    try {
      const data = JSON.parse(trimmed) as unknown;
      if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
        const rec = data as Record<string, unknown>;
        const level = toLevelName(rec.level ?? rec.severity ?? rec.levelname ?? rec.lvl) ?? 'info';
        const msg = rec.message ?? rec.msg ?? rec.event ?? '';
        return { level, message: typeof msg === 'string' ? msg : JSON.stringify(msg), data: rec };
      }
    } catch {
      // Not JSON after all: a plain line.
    }
  }
  const m = LEADING_LEVEL.exec(line);
  return { level: (m && toLevelName(m[1])) ?? 'info', message: line };
}
