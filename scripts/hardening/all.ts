/**
 * Runs every hardening suite, each in a process of its own, and exits non-zero when any missed a target.
 * One failing suite does not stop the others: a load target missed says nothing about the soak.
 *
 *   node dist/scripts/hardening/all.js [--short] [--only fuzz,auth]
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { argValue, isShort, printTable } from './common.js';

const SUITES = ['fuzz', 'auth', 'faults', 'load', 'soak'];

function runSuite(name: string, short: boolean): Promise<{ code: number | null; seconds: number }> {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), `${name}.js`);
  const started = performance.now();
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [script, ...(short ? ['--short'] : [])], { stdio: 'inherit' });
    proc.once('exit', (code) => resolve({ code, seconds: (performance.now() - started) / 1000 }));
  });
}

async function main(): Promise<void> {
  const short = isShort();
  const only = argValue('only')?.split(',');
  const results: [string, number | null, number][] = [];
  for (const name of SUITES.filter((s) => !only || only.includes(s))) {
    console.log(`\n===== ${name}${short ? ' (short form)' : ''} =====`);
    const { code, seconds } = await runSuite(name, short);
    results.push([name, code, seconds]);
  }
  printTable(
    'Hardening suites',
    ['suite', 'result', 'seconds'],
    results.map(([name, code, seconds]) => [
      name,
      code === 0 ? 'targets met' : 'TARGETS MISSED',
      seconds.toFixed(0),
    ]),
  );
  process.exit(results.every(([, code]) => code === 0) ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
