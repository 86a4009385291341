import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Where the page's parts are: the HTML shell beside the sources, the script as the UI build emits it. */
const HTML = new URL('../../../ui/debug.html', import.meta.url);
const SCRIPT = new URL('../../ui/debug.js', import.meta.url);

export interface DebugPage {
  html: string;
  /** Allows exactly the page's own inline script and style, and requests to this agent only. */
  csp: string;
}

let cached: DebugPage | undefined;

/**
 * The `/debug/` page as one document: the shell with its script inlined, so it needs nothing from the
 * network and makes no second request. Built once, on first use. The page holds no data of the pod:
 * everything it shows it reads from the token-guarded endpoints.
 */
export function debugPage(): DebugPage {
  if (cached) return cached;
  let shell: string;
  let script: string;
  try {
    shell = readFileSync(HTML, 'utf8');
    script = readFileSync(SCRIPT, 'utf8');
  } catch (err) {
    throw new Error(
      `the /debug/ page is not built (${fileURLToPath(HTML)} and ${fileURLToPath(SCRIPT)}; run npm run build): ${
        err instanceof Error ? err.message : String(err)
      }`,
      { cause: err },
    );
  }
  // The emitted module ends with an empty export; as an inline script it needs none.
  script = script.replace(/^export \{\};\s*$/m, '');
  const style = /<style>([\s\S]*?)<\/style>/.exec(shell)?.[1] ?? '';
  const html = shell.replace('<!-- script -->', () => `<script type="module">${script}</script>`);
  const hash = (s: string): string => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
  const csp = [
    "default-src 'none'",
    `script-src ${hash(script)}`,
    `style-src ${hash(style)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  cached = { html, csp };
  return cached;
}
