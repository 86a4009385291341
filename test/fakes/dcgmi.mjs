// A stand-in for NVIDIA's `dcgmi` (DCGM 3.3.x output format), run by tests as a real child process so
// the backend's spawn, stream and restart code is the code that ships. See ./dcgmi for the executable.
//
//   dcgmi dmon -e <ids> [-d <ms>] [-c <count>] [-i <entities>] [--host <address>]
//   dcgmi discovery -l [--host <address>]
//
// Rows replay test/fixtures/real/dcgmi-dmon_rtx-2080-ti_driver-590.48.01_dcgm-3.3.5.txt for the fields
// that capture has (203,204,155,150,310,311,252), with fixed plausible RTX 2080 Ti values for others.
//
// Environment:
//   FAKE_DCGMI_MODE            normal (default) | hang | exit | garbage | die-after=N
//   FAKE_DCGMI_MODE_FILE       a file whose content, when present, overrides FAKE_DCGMI_MODE at start
//   FAKE_DCGMI_GPUS            number of GPUs (rows per interval), default 1
//   FAKE_DCGMI_XID             XID code to report in field 230, default 0
//   FAKE_DCGMI_PROFILING       "unsupported" makes profiling ids (1001-1012) fail like a GeForce GPU
//   FAKE_DCGMI_IGNORE_SIGTERM  "1": survive SIGTERM, like a process stuck in the driver
//   FAKE_DCGMI_GRANDCHILD_PIDFILE  dmon starts a grandchild in its process group and writes its pid there

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CAPTURE = path.join(HERE, '../fixtures/real/dcgmi-dmon_rtx-2080-ti_driver-590.48.01_dcgm-3.3.5.txt');

// DCGM's per-field display format (dcgmlib/src/dcgm_fields.cpp): short name, unit, value width.
const FIELDS = new Map(
  [
    [50, 'DVNAM', '', 20],
    [54, 'UUID#', '', 40],
    [57, 'PCBID', '#', 20],
    [67, 'MGMOD', '', 5],
    [100, 'SMCLK', '', 5],
    [101, 'MMCLK', '', 5],
    [112, 'DVCCTR', '', 20],
    [113, 'SMMAX', '', 5],
    [114, 'MMMAX', '', 5],
    [140, 'MMTMP', 'C', 10],
    [150, 'TMPTR', ' C', 5],
    [155, 'POWER', ' W', 10],
    [156, 'TOTEC', ' mJ', 16],
    [160, 'PMLMT', ' W', 10],
    [164, 'EPLMT', ' W', 10],
    [190, 'PSTAT', '', 5],
    [191, 'FANSP', '', 5],
    [200, 'TXTPT', 'KB/s', 7],
    [201, 'RXTPT', 'KB/s', 7],
    [203, 'GPUTL', '', 10],
    [204, 'MCUTL', '', 10],
    [206, 'ECUTL', '', 10],
    [207, 'DCUTL', '', 10],
    [230, 'XIDER', '', 5],
    [237, 'PCILG', '', 5],
    [238, 'PCILW', '', 5],
    [250, 'FBTTL', '', 10],
    [251, 'FBFRE', '', 10],
    [252, 'FBUSD', '', 10],
    [253, 'FBRSV', '', 10],
    [310, 'ESVTL', '', 5],
    [311, 'EDVTL', '', 5],
    [1001, 'GRACT', '', 5],
    [1002, 'SMACT', '', 5],
    [1003, 'SMOCC', '', 5],
    [1004, 'TENSO', '', 5],
    [1005, 'DRAMA', '', 5],
    [1009, 'PCITX', '', 20],
    [1010, 'PCIRX', '', 20],
  ].map(([id, shortName, unit, width]) => [id, { shortName, unit, width }]),
);

const NAME = 'NVIDIA GeForce RTX 2080 Ti';
const TOTAL_MIB = 11264;
const RESERVED_MIB = 220;
// Energy grows with wall time, so readings from a restarted child still move forward.
const ENERGY_EPOCH_MS = Date.UTC(2024, 0, 1);

const env = process.env;
const gpuCount = Math.max(1, Number(env.FAKE_DCGMI_GPUS ?? '1') || 1);

function mode() {
  const file = env.FAKE_DCGMI_MODE_FILE;
  if (file && existsSync(file)) return readFileSync(file, 'utf8').trim() || 'normal';
  return env.FAKE_DCGMI_MODE ?? 'normal';
}

function uuid(gpu) {
  return `GPU-2080e1a0-${(0x1000 + gpu).toString(16)}-4c3d-8b2a-${(0x5f0000000000 + gpu).toString(16)}`;
}

function pciBusId(gpu) {
  return `00000000:${(0x1a + gpu * 0x10).toString(16).toUpperCase().padStart(2, '0')}:00.0`;
}

/** The capture's rows as field id → text, in order. */
function loadCapture() {
  const lines = readFileSync(CAPTURE, 'utf8').split('\n');
  const header = lines.find((l) => l.startsWith('#Entity'));
  const shortNames = header.trim().split(/\s+/).slice(1);
  const ids = shortNames.map((s) => [...FIELDS].find(([, f]) => f.shortName === s)?.[0]);
  return lines
    .filter((l) => /^GPU \d+\s/.test(l))
    .map((l) => {
      const values = l.trim().split(/\s+/).slice(2);
      return new Map(ids.map((id, i) => [id, values[i]]));
    });
}

/** DCGM truncates a value longer than its column and marks it with "...". */
function fixed(text, width) {
  return text.length <= width ? text : `${text.slice(0, width - 3)}...`;
}

function value(id, gpu, seq, capture) {
  const row = capture[seq % capture.length];
  if (row.has(id)) return row.get(id);
  const powerW = Number(row.get(155) ?? '20.891');
  switch (id) {
    case 50:
      return NAME;
    case 54:
      return uuid(gpu);
    case 57:
      return pciBusId(gpu);
    case 67:
      return 'N/A';
    case 100:
      return '300';
    case 101:
      return '405';
    case 112:
      return '1';
    case 113:
      return '2100';
    case 114:
      return '7000';
    case 140:
      return 'N/A'; // GeForce boards have no memory temperature sensor
    case 156:
      return String(1_000_000_000 + Math.round((Date.now() - ENERGY_EPOCH_MS) * powerW * 1e-3));
    case 160:
    case 164:
      return '250.000';
    case 190:
      return '8';
    case 191:
      return '41';
    case 200:
      return '1234';
    case 201:
      return '567';
    case 206:
    case 207:
      return '0';
    case 230:
      return env.FAKE_DCGMI_XID ?? '0';
    case 237:
      return '3';
    case 238:
      return '16';
    case 250:
      return String(TOTAL_MIB);
    case 251:
      return String(TOTAL_MIB - RESERVED_MIB - Number(row.get(252) ?? '0'));
    case 252:
      return '0';
    case 253:
      return String(RESERVED_MIB);
    case 1001:
    case 1002:
    case 1003:
    case 1004:
    case 1005:
      return '0.000';
    case 1009:
      return String(20480 + gpu);
    case 1010:
      return String(8192 + gpu);
    default:
      return 'N/A';
  }
}

function option(args, short, long) {
  const i = args.findIndex((a) => a === short || a === long);
  return i >= 0 ? args[i + 1] : undefined;
}

function keepAlive() {
  setInterval(() => undefined, 1 << 30);
}

function failToConnect() {
  process.stderr.write(
    'Error: unable to establish a connection to the specified host: localhost\n' +
      'Error: Unable to connect to host engine. Host engine connection invalid/disconnected.\n',
  );
  process.exit(1);
}

const JUNK = [
  '\u001b[31m*** glibc detected *** corrupted double-linked list',
  'GPU zero   forty-two   twelve',
  '#!?  0x7f3a2c00  %%%%',
  'lorem ipsum dolor sit amet 12 34 56',
];

function startGarbage(delayMs) {
  let n = 0;
  const tick = () => {
    process.stdout.write(`${JUNK[n++ % JUNK.length]}\n`);
    setTimeout(tick, delayMs);
  };
  tick();
}

function startGrandchild() {
  const file = env.FAKE_DCGMI_GRANDCHILD_PIDFILE;
  if (!file) return;
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  child.unref();
  writeFileSync(file, String(child.pid));
}

function dmon(args) {
  const ids = (option(args, '-e', '--field-id') ?? '').split(',').filter(Boolean).map(Number);
  const delayMs = Number(option(args, '-d', '--delay') ?? '1000');
  const count = Number(option(args, '-c', '--count') ?? '0');
  if (ids.length === 0) {
    process.stderr.write('Error: a field id list (-e) or field group (-f) is required\n');
    process.exit(1);
  }
  const unknown = ids.find((id) => !FIELDS.has(id));
  if (unknown !== undefined) {
    process.stderr.write(`Error: Unknown Field ID: ${unknown}\n`);
    process.exit(1);
  }
  if (env.FAKE_DCGMI_PROFILING === 'unsupported' && ids.some((id) => id >= 1001 && id <= 1012)) {
    // dcgmi reports DCGM_ST_PROFILING_NOT_SUPPORTED (-36) and exits with it (256 - 36).
    process.stderr.write(
      'Error setting watches. Result: -36: Profiling is not supported for this group of GPUs or GPU\n\n',
    );
    process.exit(220);
  }

  const m = mode();
  if (m === 'exit') failToConnect();
  startGrandchild();
  if (m === 'hang') return keepAlive();
  if (m === 'garbage') return startGarbage(delayMs);
  const dieAfter = m.startsWith('die-after=') ? Number(m.slice('die-after='.length)) : Infinity;

  const columns = ids.map((id) => ({ id, ...FIELDS.get(id), cell: FIELDS.get(id).width + 6 }));
  const header =
    '#Entity'.padEnd(10) +
    columns.map((c) => fixed(c.shortName, c.cell).padEnd(c.cell + 2)).join('') +
    '\n' +
    'ID'.padEnd(10) +
    columns.map((c) => fixed(c.unit, c.cell).padEnd(c.cell + 2)).join('') +
    '\n';
  const capture = loadCapture();
  let rows = 0;
  let seq = 0;
  let sinceHeader = 0;

  process.stdout.write(header);
  const tick = () => {
    let block = '';
    for (let gpu = 0; gpu < gpuCount; gpu++) {
      if (rows >= dieAfter) {
        process.stdout.write(block);
        process.stderr.write(
          'Error getting values information. Return -21: Host engine connection invalid/disconnected\n',
        );
        process.exit(235); // dcgmi returns DCGM_ST_CONNECTION_NOT_VALID (-21) as its status
      }
      const cells = columns.map((c) => fixed(value(c.id, gpu, seq, capture), c.cell).padEnd(c.cell + 2));
      block += `GPU ${gpu}`.padEnd(10) + cells.join('') + '\n';
      rows++;
    }
    // dcgmi flushes once per interval, so a whole block reaches the pipe in one write.
    process.stdout.write(block);
    seq++;
    if (count > 0 && seq >= count) return;
    setTimeout(() => {
      // Same cadence as DeviceMonitor.cpp: the header comes back after every 14 intervals.
      if (sinceHeader === 14) {
        process.stdout.write(header);
        sinceHeader = 0;
      }
      sinceHeader++;
      tick();
    }, delayMs);
  };
  tick();
}

function discovery(args) {
  if (!args.includes('-l') && !args.includes('--list')) {
    process.stderr.write('Error: only discovery -l is faked\n');
    process.exit(1);
  }
  const m = mode();
  if (m === 'exit') failToConnect();
  if (m === 'hang') return keepAlive();
  if (m === 'garbage') {
    process.stdout.write(`${JUNK.join('\n')}\n`);
    return;
  }
  const rule = `+--------+${'-'.repeat(70)}+\n`;
  const row = (id, text) => `| ${id.padEnd(6)} | ${text.padEnd(68)} |\n`;
  let out = `${gpuCount} GPU${gpuCount === 1 ? '' : 's'} found.\n${rule}${row('GPU ID', 'Device Information')}${rule}`;
  for (let gpu = 0; gpu < gpuCount; gpu++) {
    out += row(String(gpu), `Name: ${NAME}`);
    out += row('', `PCI Bus ID: ${pciBusId(gpu)}`);
    out += row('', `Device UUID: ${uuid(gpu)}`);
    out += rule;
  }
  out += '0 NvSwitches found.\n+-----------+\n| Switch ID |\n+-----------+\n+-----------+\n';
  process.stdout.write(out);
}

if (env.FAKE_DCGMI_IGNORE_SIGTERM === '1') process.on('SIGTERM', () => undefined);

const args = process.argv.slice(2);
switch (args[0]) {
  case 'dmon':
    dmon(args.slice(1));
    break;
  case 'discovery':
    discovery(args.slice(1));
    break;
  default:
    process.stderr.write(`fake dcgmi: "${args[0] ?? ''}" is not faked (dmon, discovery)\n`);
    process.exit(1);
}
