import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The captured tool output in test/fixtures (this file runs from dist/test/helpers). */
export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures');

/** A real capture from test/fixtures/real, as text. */
export function realFixture(name: string): string {
  return readFileSync(path.join(FIXTURES, 'real', name), 'utf8');
}

/** Names of the real captures that match `pattern`, sorted. */
export function realFixtureNames(pattern: RegExp): string[] {
  return readdirSync(path.join(FIXTURES, 'real'))
    .filter((n) => pattern.test(n))
    .sort();
}
