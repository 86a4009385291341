/**
 * Keeps the README's configuration table equal to the settings in src/config.ts.
 *
 *   node dist/scripts/docs/config-table.js          rewrite the table in README.md
 *   node dist/scripts/docs/config-table.js --check  exit 1 if it is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SETTINGS } from '../../src/config.js';

export const START = '<!-- config-table:start -->';
export const END = '<!-- config-table:end -->';

export function configTable(): string {
  const rows = SETTINGS.map(
    (s) =>
      `| \`${s.env}\` | \`--${s.flag}\` | ${s.defaultText.includes('`') ? s.defaultText : `\`${s.defaultText}\``} | ${s.unit} | ${s.description} |`,
  );
  return ['| Variable | Flag | Default | Unit | What it does |', '|---|---|---|---|---|', ...rows].join('\n');
}

/** The README with its table replaced by the current one. */
export function withTable(readme: string): string {
  const a = readme.indexOf(START);
  const b = readme.indexOf(END);
  if (a === -1 || b === -1 || b < a) throw new Error(`README.md lacks the ${START} … ${END} markers`);
  return `${readme.slice(0, a + START.length)}\n${configTable()}\n${readme.slice(b)}`;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = path.join(ROOT, 'README.md');
  const readme = readFileSync(file, 'utf8');
  const next = withTable(readme);
  if (process.argv.includes('--check')) {
    if (next !== readme) {
      console.error('README.md configuration table is out of date: run npm run docs');
      process.exit(1);
    }
  } else {
    writeFileSync(file, next);
  }
}
