#!/usr/bin/env node
import { constants as osConstants } from 'node:os';

/** Exit status for a configuration the agent refuses to start with. */
const EXIT_CONFIG = 2;

/**
 * As PID 1 the kernel drops every signal the process has no handler for, so a SIGTERM that came
 * before the agent's own handlers (installed once the workload is started) would be lost and the
 * container would run on. Until then, a signal ends the agent as it would any other process: nothing
 * is running yet that needs a drain. Installed before the agent's modules are loaded (the imports
 * below are dynamic for that reason).
 */
const STARTUP_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
const exitOnStartupSignal = (signal: NodeJS.Signals): void => {
  process.stderr.write(`gpu-pod-agent: ${signal} before the agent started; exiting\n`);
  process.exit(128 + osConstants.signals[signal]);
};
if (process.pid === 1) for (const s of STARTUP_SIGNALS) process.on(s, exitOnStartupSignal);
const dropStartupHandlers = (): void => {
  for (const s of STARTUP_SIGNALS) process.off(s, exitOnStartupSignal);
};

async function run(): Promise<void> {
  // `gpu-pod-agent status`: the terminal view of a running agent, not an agent.
  if (process.argv[2] === 'status') {
    dropStartupHandlers();
    const { runStatus } = await import('./status/command.js');
    const code = await runStatus({
      argv: process.argv.slice(3),
      env: process.env,
      stdout: process.stdout,
      stderr: process.stderr,
    });
    // Without waiting for fetch's idle keep-alive sockets to time out.
    process.exit(code);
  }
  const { helpText, loadConfig, splitArgv } = await import('./config.js');
  const { readVersion } = await import('./version.js');
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
  const { startAgent } = await import('./main.js');
  const { exitImmediately } = await import('./hard-exit.js');
  let agent;
  try {
    agent = await startAgent(result.config, { env: process.env });
  } catch (err) {
    process.stderr.write(
      `gpu-pod-agent: could not start: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exitCode = 1;
    return;
  } finally {
    // The agent's handlers are in place (they were installed in the same turn startAgent returned).
    dropStartupHandlers();
  }
  const code = await agent.done;
  if (agent.hasWedgedThreads()) exitImmediately(code);
  process.exit(code);
}

void run();
