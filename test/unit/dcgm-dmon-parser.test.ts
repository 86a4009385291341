import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { dcgmDevice } from '../../gpu/parsers/dcgm-fields.js';
import { DmonParser, LineSplitter, parseDcgmiDmon } from '../../gpu/parsers/dcgmi-dmon.js';
import type { DmonLine, DmonRow } from '../../gpu/parsers/dcgmi-dmon.js';
import { parseDcgmiDiscovery } from '../../gpu/parsers/dcgmi-discovery.js';
import { ROOT } from '../helpers/agent.js';

const REAL = path.join(ROOT, 'test/fixtures/real');
const read = (name: string): string => readFileSync(path.join(REAL, name), 'utf8');

/** `dcgmi dmon -e 203,204,155,150,310,311,252 -c 5 -d 1` on a GeForce RTX 2080 Ti, DCGM 3.3.5. */
const DMON = read('dcgmi-dmon_rtx-2080-ti_driver-590.48.01_dcgm-3.3.5.txt');
const DMON_IDS = [203, 204, 155, 150, 310, 311, 252];
const DMON_LINES = DMON.split('\n');
const HEADER = DMON_LINES[0]!;
const UNITS = DMON_LINES[1]!;
const ROW = DMON_LINES[2]!;

/** `line` with `text` written over the cell that starts where `title` starts in the header. */
function withCell(line: string, title: string, text: string): string {
  const start = HEADER.indexOf(title);
  assert.ok(start > 0, `${title} in the header`);
  const end = HEADER.slice(start + title.length).search(/\S/) + start + title.length;
  const padded = line.padEnd(end);
  return padded.slice(0, start) + text.padEnd(end - start) + padded.slice(end);
}

function rowsOf(lines: DmonLine[]): DmonRow[] {
  return lines.flatMap((l) => (l.kind === 'row' ? [l.row] : []));
}

describe('dcgmi dmon parser', function () {
  it('reads every row of the real RTX 2080 Ti capture', function () {
    const { lines, rows } = parseDcgmiDmon(DMON, DMON_IDS);
    assert.deepEqual(
      lines.map((l) => l.kind),
      ['header', 'units', 'row', 'row', 'row', 'row', 'row', 'blank'],
    );
    assert.deepEqual(lines[0], {
      kind: 'header',
      shortNames: ['GPUTL', 'MCUTL', 'POWER', 'TMPTR', 'ESVTL', 'EDVTL', 'FBUSD'],
    });
    assert.equal(rows.length, 5);
    const power = rows.map((r) => r.values.get(155));
    assert.deepEqual(power, [20.891, 20.891, 20.891, 20.986, 20.986]);
    for (const r of rows) {
      assert.equal(r.entityGroup, 'GPU');
      assert.equal(r.entityId, 0);
      assert.deepEqual(r.invalid, []);
      assert.equal(r.values.get(203), 0);
      assert.equal(r.values.get(204), 0);
      assert.equal(r.values.get(150), 22);
      assert.equal(r.values.get(310), 0);
      assert.equal(r.values.get(311), 0);
      assert.equal(r.values.get(252), 0);
    }
  });

  it('maps the capture to a GpuDevice, leaving what was not asked for unknown', function () {
    const { rows } = parseDcgmiDmon(DMON, DMON_IDS);
    const d = dcgmDevice({ index: 0 }, rows[4]!.values, 1_700_000_000_000);
    assert.deepEqual(d.utilization, { gpuPercent: 0, memoryPercent: 0 });
    assert.equal(d.temperatureC, 22);
    assert.equal(d.powerW, 20.986);
    assert.deepEqual(d.eccErrors, { corrected: 0, uncorrected: 0 });
    assert.equal(d.memory.usedBytes, 0);
    // Total and free were not among the fields: unknown, not 0.
    assert.ok(Number.isNaN(d.memory.totalBytes));
    assert.ok(Number.isNaN(d.memory.freeBytes));
    assert.equal(d.memory.reservedBytes, undefined);
    assert.equal(d.powerLimitW, undefined);
    assert.equal(d.memoryTemperatureC, undefined);
    assert.equal(d.xidErrors, undefined);
    assert.equal(d.profiling, undefined);
    assert.deepEqual(d.processes, []);
  });

  it('knows the columns by their short names when no field list is given', function () {
    const withIds = parseDcgmiDmon(DMON, DMON_IDS).rows;
    const byNames = parseDcgmiDmon(DMON).rows;
    assert.deepEqual(byNames, withIds);
  });

  it('reads N/A as missing, never 0', function () {
    const parser = new DmonParser(DMON_IDS);
    parser.line(HEADER);
    const line = parser.line(withCell(withCell(ROW, 'TMPTR', 'N/A'), 'POWER', 'N/A'));
    assert.equal(line.kind, 'row');
    const row = (line as { row: DmonRow }).row;
    assert.equal(row.values.has(150), false);
    assert.equal(row.values.has(155), false);
    assert.equal(row.values.get(252), 0);
    const d = dcgmDevice({ index: 0 }, row.values, 0);
    assert.equal(d.temperatureC, undefined);
    assert.equal(d.powerW, undefined);
    assert.equal(d.utilization.gpuPercent, 0);
  });

  it('keeps the columns of DCGM 4, which leaves a missing value blank and widens the entity column', function () {
    // DCGM 4.5 pads "#Entity" and the entity to 16 instead of 10.
    const widen = (l: string): string => l.slice(0, 10).padEnd(16) + l.slice(10);
    const header = widen(HEADER);
    const blankPower = widen(withCell(ROW, 'POWER', ''));
    const { rows } = parseDcgmiDmon([header, widen(UNITS), blankPower].join('\n'), DMON_IDS);
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.equal(row.values.has(155), false, 'the blank cell is missing');
    assert.equal(row.values.get(150), 22, 'the next column did not shift into POWER');
    assert.equal(row.values.get(252), 0);
  });

  it('reads rows after a header printed again mid-stream', function () {
    const text = [HEADER, UNITS, ROW, HEADER, UNITS, DMON_LINES[5]!].join('\n');
    const { lines } = parseDcgmiDmon(text, DMON_IDS);
    assert.deepEqual(
      lines.map((l) => l.kind),
      ['header', 'units', 'row', 'header', 'units', 'row'],
    );
    assert.equal(rowsOf(lines)[1]!.values.get(155), 20.986);
  });

  it('reads MIG entities and values with trailing padding as dcgmi prints it', function () {
    const instance = `GPU-I 3${ROW.slice('GPU-I 3'.length)}`;
    const compute = `GPU-CI 12${ROW.slice('GPU-CI 12'.length)}`;
    const padded = `${ROW}${' '.repeat(17)}`;
    const rows = rowsOf(
      parseDcgmiDmon([HEADER, UNITS, instance, compute, padded].join('\n'), DMON_IDS).lines,
    );
    assert.deepEqual(
      rows.map((r) => [r.entityGroup, r.entityId]),
      [
        ['GPU-I', 3],
        ['GPU-CI', 12],
        ['GPU', 0],
      ],
    );
    assert.equal(rows[2]!.values.get(252), 0);
  });

  it('reports junk and dcgmi messages instead of taking them for rows', function () {
    const parser = new DmonParser(DMON_IDS);
    parser.line(HEADER);
    const kinds = [
      'lorem ipsum dolor sit amet 12 34 56',
      'GPU zero   forty-two   twelve',
      'Error getting values information. Return -21: Host engine connection invalid/disconnected',
      '',
      'dmon was stopped due to receiving a signal',
    ].map((l) => parser.line(l).kind);
    assert.deepEqual(kinds, ['invalid', 'invalid', 'message', 'blank', 'message']);
    const bad = parser.line(withCell(ROW, 'TMPTR', 'hot'));
    assert.equal(bad.kind, 'row');
    assert.deepEqual((bad as { row: DmonRow }).row.invalid, [150]);
  });

  it('turns DCGM blank sentinels into missing values', function () {
    const parser = new DmonParser(DMON_IDS);
    parser.line(HEADER);
    const line = parser.line(withCell(ROW, 'FBUSD', '9223372036854775792'));
    assert.equal((line as { row: DmonRow }).row.values.has(252), false);
  });

  it('rejects a header that does not match the fields asked for', function () {
    const parser = new DmonParser([203, 204]);
    assert.equal(parser.line(HEADER).kind, 'invalid');
  });

  it('splits a stream into lines across chunk boundaries', function () {
    const splitter = new LineSplitter();
    const out = [...splitter.push(DMON.slice(0, 100)), ...splitter.push(DMON.slice(100, 300))];
    out.push(...splitter.push(DMON.slice(300)), ...splitter.flush());
    assert.deepEqual(out, DMON.split('\n').slice(0, -1));
    // A child that never ends its line cannot grow memory: the line is cut at the limit.
    assert.deepEqual(new LineSplitter(8).push('0123456789abcdef'), ['01234567']);
  });
});

describe('dcgmi discovery -l parser', function () {
  const TEXT = read('dcgmi-discovery-l_4x-h100-80gb-hbm3_dcgm-3.1.7_issue-dcgm-229.txt');

  it('reads the GPUs of the real 4× H100 listing, whose names are DCGM blanks', function () {
    const r = parseDcgmiDiscovery(TEXT);
    assert.equal(r.declaredCount, 4);
    assert.deepEqual(r.gpus, [
      { gpuId: 0, pciBusId: '00000000:4C:00.0', uuid: 'GPU-d6a2c177-4cd8-8d01-0310-79f2720f37de' },
      { gpuId: 1, pciBusId: '00000000:5D:00.0', uuid: 'GPU-75c4ee16-a840-6f6c-9a7b-5ed8f41598b8' },
      { gpuId: 2, pciBusId: '00000000:CC:00.0', uuid: 'GPU-879a110e-54dc-22fe-9699-5babde1d450e' },
      { gpuId: 3, pciBusId: '00000000:DC:00.0', uuid: 'GPU-5ea04b20-4cc3-4d84-0bb2-e4143be8e874' },
    ]);
  });

  it('reads it the same with the trailing spaces of the original terminal copy', function () {
    const padded = TEXT.split('\n')
      .map((l) => (l === '' ? l : l.padEnd(90)))
      .join('\n');
    assert.deepEqual(parseDcgmiDiscovery(padded), parseDcgmiDiscovery(TEXT));
  });

  it('reads DCGM 4 listings: the (Active) count, Status lines and (last known) values', function () {
    const lines = TEXT.split('\n');
    assert.equal(lines[4], `| 0      | Name: <<<NULL>>>${' '.repeat(53)}|`);
    lines[0] = '4 GPUs found (All).';
    lines[4] = '| 0      | Name: NVIDIA H100 80GB HBM3 |';
    lines[8] = '| 1      | Status: Detached |\n|        | Name: NVIDIA H100 80GB HBM3 (last known) |';
    lines[12] = '| 2      | Error: Cannot get device attributes for GPU. |';
    const text = lines.join('\n');
    const r = parseDcgmiDiscovery(text);
    assert.equal(r.gpus.length, 4);
    assert.equal(r.gpus[0]!.name, 'NVIDIA H100 80GB HBM3');
    assert.equal(r.gpus[1]!.status, 'Detached');
    assert.equal(r.gpus[1]!.name, 'NVIDIA H100 80GB HBM3');
    assert.equal(r.gpus[2]!.name, undefined);
    assert.equal(r.gpus[2]!.uuid, 'GPU-879a110e-54dc-22fe-9699-5babde1d450e');
  });

  it('finds no GPU in text that is not a listing', function () {
    assert.deepEqual(
      parseDcgmiDiscovery('Error: unable to establish a connection to the specified host: localhost\n'),
      {
        gpus: [],
      },
    );
  });
});
