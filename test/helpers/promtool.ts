import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './agent.js';

/**
 * Where promtool is: on PATH, or unpacked by .ci/run into .cache/. Undefined when absent; CI installs it,
 * so only a local run without it skips the lint.
 */
export function findPromtool(): string | undefined {
  const local = path.join(ROOT, '.cache/promtool/usr/bin/promtool');
  if (existsSync(local)) return local;
  const r = spawnSync('promtool', ['--version'], { stdio: 'ignore' });
  return r.status === 0 ? 'promtool' : undefined;
}

/** Runs `promtool check metrics` on an exposition; returns its exit status and output. */
export function promtoolCheck(
  promtool: string,
  exposition: string,
): { status: number | null; output: string } {
  const r = spawnSync(promtool, ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}
