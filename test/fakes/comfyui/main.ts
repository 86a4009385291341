import { parseArgs } from 'node:util';
import { startFakeComfyUI } from './fake-comfyui.js';

/**
 * Runs the fake ComfyUI for a local demo:
 *   node dist/test/fakes/comfyui/main.js --port 8188 --dir DIR [--host H] [--step-delay-ms N] [--node-delay-ms N]
 * Prints one JSON line `{"listening":PORT,"url":...}` once it listens; SIGTERM/SIGINT close it.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8188' },
      host: { type: 'string', default: '127.0.0.1' },
      dir: { type: 'string' },
      'step-delay-ms': { type: 'string' },
      'node-delay-ms': { type: 'string' },
      'no-previews': { type: 'boolean', default: false },
    },
  });
  if (!values.dir) {
    process.stderr.write(
      'usage: main.js --dir DIR [--port 8188] [--host 127.0.0.1] [--step-delay-ms N] [--node-delay-ms N]\n',
    );
    process.exit(2);
  }
  const int = (s: string | undefined, name: string): number | undefined => {
    if (s === undefined) return undefined;
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) {
      process.stderr.write(`--${name} must be a non-negative integer\n`);
      process.exit(2);
    }
    return n;
  };
  const fake = await startFakeComfyUI({
    port: int(values.port, 'port'),
    host: values.host,
    baseDir: values.dir,
    stepDelayMs: int(values['step-delay-ms'], 'step-delay-ms'),
    nodeDelayMs: int(values['node-delay-ms'], 'node-delay-ms'),
    previews: !values['no-previews'],
  });
  process.stdout.write(`${JSON.stringify({ listening: Number(new URL(fake.url).port), url: fake.url })}\n`);
  const stop = (): void => {
    void fake.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
