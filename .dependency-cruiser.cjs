/** Keeps the GPU library independent of the agent and the graph free of cycles. */
module.exports = {
  forbidden: [
    {
      name: 'gpu-never-imports-src',
      comment: 'gpu/ is a library: it must not know about jobs, HTTP or the agent.',
      severity: 'error',
      from: { path: '^gpu/' },
      to: { path: '^src/' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-test-imports-in-runtime',
      severity: 'error',
      from: { path: '^(gpu|src)/' },
      to: { path: '^(test|scripts)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
  },
};
