import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ERROR_CODES } from '../../src/http/error-codes.js';
import {
  AGENT_METRICS,
  API_METRICS,
  DCGM_METRICS,
  GPU_METRICS,
  JOB_METRICS,
  QUEUE_METRICS,
} from '../../src/metrics/names.js';
import { SETTINGS } from '../../src/config.js';
import { withTable } from '../../scripts/docs/config-table.js';
import { ROOT } from '../helpers/agent.js';

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

describe('documentation', function () {
  it('starts with the two commands a newcomer needs', function () {
    const head = readme.split('\n').slice(0, 15).join('\n');
    assert.match(head, /npm ci && MOCK_GPU=1 npm start/);
    assert.match(head, /^npm test\b/m);
  });

  it('has the configuration table of the current settings (npm run docs regenerates it)', function () {
    assert.equal(withTable(readme), readme);
    for (const s of SETTINGS) assert.ok(readme.includes(`| \`${s.env}\` |`), s.env);
  });

  it('names every metric and error code', function () {
    for (const names of [GPU_METRICS, JOB_METRICS, API_METRICS, AGENT_METRICS, DCGM_METRICS, QUEUE_METRICS]) {
      for (const name of Object.values(names)) assert.ok(readme.includes(`\`${name}`), name);
    }
    for (const code of Object.keys(ERROR_CODES)) assert.ok(readme.includes(`\`${code}\``), code);
  });

  it('runs npm ci and npm test in CI', function () {
    const ci = readFileSync(path.join(ROOT, '.ci/run'), 'utf8');
    assert.match(ci, /^npm ci\b/m);
    assert.match(ci, /^npm test$/m);
  });
});

describe('Dockerfile.cuda', function () {
  const file = readFileSync(path.join(ROOT, 'Dockerfile.cuda'), 'utf8');
  const lines = file.split('\n').filter((l) => !l.trim().startsWith('#'));
  const instr = (name: string): string[] => lines.filter((l) => l.startsWith(`${name} `));

  it('builds in a Node stage and runs on an NVIDIA CUDA base', function () {
    const froms = instr('FROM');
    assert.ok(froms.length >= 2, 'multi-stage');
    assert.match(froms[0]!, /^FROM node:\S+ AS build$/);
    assert.match(file, /ARG CUDA_IMAGE=nvidia\/cuda:\S+/);
    assert.match(froms.at(-1)!, /^FROM \$\{CUDA_IMAGE\}/);
    assert.ok(instr('COPY').some((l) => /--from=build .*dist/.test(l)));
  });

  it('runs as a non-root user under tini, with a health check and the port exposed', function () {
    const user = instr('USER').at(-1);
    assert.ok(user && !/\broot\b|\b0\b/.test(user), 'non-root');
    const entry = instr('ENTRYPOINT')[0]!;
    const argv = JSON.parse(entry.slice('ENTRYPOINT '.length)) as string[];
    assert.equal(argv[0], '/usr/bin/tini');
    assert.ok(argv.includes('/app/dist/src/cli.js'));
    assert.match(file, /apt-get install[^\n]*\btini\b/);
    assert.match(file, /HEALTHCHECK[\s\S]*\/health/);
    assert.deepEqual(instr('EXPOSE'), ['EXPOSE 8080']);
  });

  it('copies only files that exist and builds with the production tsconfig', function () {
    for (const l of instr('COPY').filter((c) => !c.includes('--from'))) {
      const parts = l.split(/\s+/).slice(1, -1);
      for (const p of parts) assert.ok(existsSync(path.join(ROOT, p)), `${p} exists`);
    }
    assert.match(file, /tsc -p tsconfig\.build\.json/);
    // The /debug/ page: its script is built from ui/, its shell read from ui/ at run time.
    assert.match(file, /tsc -p ui\/tsconfig\.json/);
    assert.ok(instr('COPY').some((l) => /--from=build \/src\/ui\/debug\.html \.\/ui\/debug\.html/.test(l)));
    const build = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.build.json'), 'utf8')) as {
      include: string[];
    };
    assert.deepEqual(build.include, ['gpu/**/*.ts', 'src/**/*.ts']);
  });
});
