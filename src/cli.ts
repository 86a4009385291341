#!/usr/bin/env node
import { helpText, loadConfig, splitArgv } from './config.js';
import { exitImmediately } from './hard-exit.js';
import { startAgent } from './main.js';
import { readVersion } from './version.js';

/** Exit status for a configuration the agent refuses to start with. */
const EXIT_CONFIG = 2;

async function run(): Promise<void> {
  const argv = process.argv.slice(2);
  const { agentArgs } = splitArgv(argv);
  if (agentArgs.includes('--help') || agentArgs.includes('-h')) {
    process.stdout.write(`${helpText()}\n`);
    return;
  }
  if (agentArgs.includes('--version')) {
    process.stdout.write(`${readVersion()}\n`);
    return;
  }
  const result = loadConfig(argv, process.env);
  if (!result.ok) {
    process.stderr.write(
      `gpu-pod-agent: invalid configuration (${result.errors.length} problem${result.errors.length === 1 ? '' : 's'}):\n` +
        result.errors.map((e) => `  - ${e}\n`).join('') +
        'See --help or the README for every setting.\n',
    );
    process.exitCode = EXIT_CONFIG;
    return;
  }
  let agent;
  try {
    agent = await startAgent(result.config, { env: process.env });
  } catch (err) {
    process.stderr.write(
      `gpu-pod-agent: could not start: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exitCode = 1;
    return;
  }
  const code = await agent.done;
  if (agent.hasWedgedThreads()) exitImmediately(code);
  process.exit(code);
}

void run();
