import assert from 'node:assert/strict';
import {
  MIB,
  bytesToMiB,
  cleanValue,
  isNotAvailable,
  mibToBytes,
  parseActive,
  parseBytes,
  parseCelsius,
  parseEnabled,
  parseHexMask,
  parseInteger,
  parseLinkWidth,
  parseMegahertz,
  parseMiB,
  parseMicroseconds,
  parseNumber,
  parsePercent,
  parseQuantity,
  parseThroughputBytesPerSecond,
  parseWatts,
} from '../../gpu/parsers/values.js';
import { realFixture as fixture } from '../helpers/fixtures.js';

/** Every not-available form seen in the real captures, plus the NVML error strings nvidia-smi prints. */
const NOT_AVAILABLE = [
  '[N/A]',
  'N/A',
  '[Not Supported]',
  'Not Supported',
  '[Requested functionality has been deprecated]',
  'Requested functionality has been deprecated',
  '[Unknown Error]',
  'Unknown Error',
  '[Insufficient Permissions]',
  'Insufficient Permissions',
  '[GPU is lost]',
  'GPU is lost',
  '[Function Not Found]',
  '[No data]',
  '',
  '   ',
  ' [N/A] ',
];

describe('nvidia-smi values', function () {
  it('treats every not-available form as undefined, never 0', function () {
    for (const raw of NOT_AVAILABLE) {
      assert.equal(isNotAvailable(raw), true, raw);
      assert.equal(cleanValue(raw), undefined, raw);
      for (const parse of [
        parseNumber,
        parseInteger,
        parseBytes,
        parseWatts,
        parseMegahertz,
        parseCelsius,
        parsePercent,
      ]) {
        assert.equal(parse(raw), undefined, `${parse.name}(${JSON.stringify(raw)})`);
      }
      assert.equal(parseHexMask(raw), undefined, raw);
      assert.equal(parseEnabled(raw), undefined, raw);
    }
  });

  it('reads the not-available cells of the fan-speed captures', function () {
    // A laptop GPU and a fanless data-centre GPU: the only two ways fan.speed says "none".
    const laptop = fixture('query-gpu_fan-speed_noheader_nounits_na_laptop_issue-nvsmi-2.txt');
    const fanless = fixture(
      'query-gpu_fan-speed_noheader_nounits_not-supported_issue-zabbix-nvidia-smi-multi-gpu-9.txt',
    );
    assert.equal(laptop, '[N/A]\n');
    assert.equal(fanless, '[Not Supported]\n');
    assert.equal(parsePercent(laptop), undefined);
    assert.equal(parsePercent(fanless), undefined);
  });

  it('keeps real values, including zero and words that are not error strings', function () {
    assert.equal(cleanValue('  P8 '), 'P8');
    assert.equal(cleanValue('None'), 'None');
    assert.equal(cleanValue('Not Active'), 'Not Active');
    assert.equal(cleanValue(42), undefined);
    assert.equal(parsePercent('0 %'), 0);
    assert.equal(parseBytes('0 MiB'), 0);
  });

  it('reads numbers with the units nvidia-smi prints, and without (nounits)', function () {
    assert.deepEqual(parseQuantity('81559 MiB'), { value: 81559, unit: 'MiB' });
    assert.deepEqual(parseQuantity('631.95 W'), { value: 631.95, unit: 'W' });
    assert.deepEqual(parseQuantity('-5 C'), { value: -5, unit: 'C' });
    assert.deepEqual(parseQuantity('7'), { value: 7, unit: '' });
    assert.equal(parseQuantity('P8'), undefined);

    assert.equal(parseBytes('81559 MiB'), 81559 * MIB);
    assert.equal(parseBytes('81559'), 81559 * MIB);
    assert.equal(parseBytes('2 GiB'), 2048 * MIB);
    assert.equal(parseBytes('512', 'KiB'), 512 * 1024);
    assert.equal(parseMiB('19818 MiB'), 19818);
    assert.equal(parseWatts('631.95 W'), 631.95);
    assert.equal(parseWatts('700.00'), 700);
    assert.equal(parseMegahertz('1980 MHz'), 1980);
    assert.equal(parseCelsius('59 C'), 59);
    assert.equal(parseCelsius('59'), 59);
    assert.equal(parsePercent('100 %'), 100);
    assert.equal(parsePercent('38 %'), 38);
    assert.equal(parseMicroseconds('0 us'), 0);
    assert.equal(parseMicroseconds('25483012608 us'), 25483012608);
    assert.equal(parseThroughputBytesPerSecond('1234 KB/s'), 1234 * 1024);
    assert.equal(parseThroughputBytesPerSecond('0 KB/s'), 0);
    assert.equal(parseLinkWidth('16x'), 16);
    assert.equal(parseLinkWidth('8'), 8);
    assert.equal(parseInteger('116860'), 116860);
    assert.equal(parseInteger('1.5'), undefined);
    assert.equal(parseNumber('3.5'), 3.5);
  });

  it('refuses a unit that does not belong to the reading instead of scaling it wrongly', function () {
    assert.equal(parseWatts('1980 MHz'), undefined);
    assert.equal(parseBytes('100 %'), undefined);
    assert.equal(parseCelsius('59 F'), undefined);
    assert.equal(parseNumber('16x'), undefined);
    assert.equal(parseNumber('0x3'), undefined);
  });

  it('converts between MiB and bytes', function () {
    assert.equal(mibToBytes(81559), 85520809984);
    assert.equal(bytesToMiB(85520809984), 81559);
  });

  it('reads 64-bit hex masks as bigint', function () {
    assert.equal(parseHexMask('0x0000000000000004'), 4n);
    assert.equal(parseHexMask('0x00000000000001FF'), 0x1ffn);
    assert.equal(parseHexMask('0x8000000000000000'), 1n << 63n);
    assert.equal(parseHexMask('4'), undefined);
  });

  it('reads switches and clock event states', function () {
    assert.equal(parseEnabled('Enabled'), true);
    assert.equal(parseEnabled('Disabled'), false);
    assert.equal(parseEnabled('Yes'), true);
    assert.equal(parseActive('Active'), true);
    assert.equal(parseActive('Not Active'), false);
    assert.equal(parseActive('N/A'), undefined);
  });
});
