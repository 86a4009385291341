import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { GpuLogger } from '../../gpu/types.js';
import { ROOT } from './agent.js';

/** The fake `dcgmi` executable (plain JS, runs without a build). */
export const FAKE_DCGMI = path.join(ROOT, 'test/fakes/dcgmi');

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  data: Record<string, unknown>;
}

/** A GpuLogger that keeps every record, for asserting on what a backend reported. */
export class RecordingLogger implements GpuLogger {
  readonly entries: LogEntry[] = [];

  private add(level: LogEntry['level'], obj: object, msg: string): void {
    const data = (obj as { data?: Record<string, unknown> }).data ?? {};
    this.entries.push({ level, msg, data });
  }

  debug(obj: object, msg: string): void {
    this.add('debug', obj, msg);
  }
  info(obj: object, msg: string): void {
    this.add('info', obj, msg);
  }
  warn(obj: object, msg: string): void {
    this.add('warn', obj, msg);
  }
  error(obj: object, msg: string): void {
    this.add('error', obj, msg);
  }

  find(msg: string): LogEntry[] {
    return this.entries.filter((e) => e.msg === msg);
  }
}

/** Whether `pid` is a live process; a zombie (exited, not yet reaped) counts as gone. */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).charAt(0);
    return state !== 'Z' && state !== 'X';
  } catch {
    // No /proc entry (or no /proc): ask the kernel directly.
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
