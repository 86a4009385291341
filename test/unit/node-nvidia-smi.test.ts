import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { GpuError } from '../../gpu/errors.js';
import { toNodeNvidiaSmiShape } from '../../gpu/parsers/node-nvidia-smi.js';
import { FIXTURES, realFixture, realFixtureNames } from '../helpers/fixtures.js';

/** node-nvidia-smi's own output for a capture, made with xml2js (see the README beside them). */
function reference(xmlName: string): unknown {
  const file = path.join(FIXTURES, 'node-nvidia-smi', xmlName.replace(/\.xml$/, '.json'));
  return JSON.parse(readFileSync(file, 'utf8')) as unknown;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => {
  assert.equal(
    typeof v === 'object' && v !== null && !Array.isArray(v),
    true,
    `object expected: ${JSON.stringify(v)}`,
  );
  return v as Obj;
};
const log = (xml: string): Obj => obj(obj(toNodeNvidiaSmiShape(xml))['nvidia_smi_log']);

describe('toNodeNvidiaSmiShape', function () {
  for (const file of [
    'nvidia-smi-q-x_a100-sxm4-40gb_mig-enabled_driver-510.47.03_dtd-v11.xml',
    'nvidia-smi-q-x_a10g_driver-515.105.01_dtd-v11_procs.xml',
    'nvidia-smi-q-x_2x-rtx-a5000_driver-590.44.01_dtd-v13_procs.xml',
    'nvidia-smi-q-x_tesla-t4_windows_driver-512.78_dtd-v11_15procs.xml',
  ]) {
    it(`gives what node-nvidia-smi gives for ${file}, key order included`, function () {
      const got = toNodeNvidiaSmiShape(realFixture(file));
      const expected = reference(file);
      assert.deepStrictEqual(got, expected);
      assert.equal(JSON.stringify(got), JSON.stringify(expected));
    });
  }

  it('keeps the shape rules on every capture: root key, $ attributes, object for one and array for many', function () {
    for (const file of realFixtureNames(/^nvidia-smi-q-x_.*\.xml$/)) {
      const xml = realFixture(file);
      const root = log(xml);
      const ids = [...xml.matchAll(/<gpu id="([^"]+)">/g)].map((m) => m[1]);
      const gpus = ids.length === 1 ? [obj(root['gpu'])] : (root['gpu'] as unknown[]).map(obj);
      assert.equal(gpus.length, ids.length, file);
      assert.deepEqual(
        gpus.map((g) => obj(g['$'])['id']),
        ids,
        file,
      );
      assert.equal(root['driver_version'], /<driver_version>([^<]+)</.exec(xml)![1], file);
      for (const [i, gpu] of gpus.entries()) {
        const count = xml.split(/<gpu id=/)[i + 1]!.split('<process_info>').length - 1;
        const processes = gpu['processes'];
        if (count === 0) {
          // An empty element is the whitespace that was inside it.
          assert.match(processes as string, /^\s+$/, file);
        } else if (count === 1) {
          obj(obj(processes)['process_info']);
        } else {
          assert.equal((obj(processes)['process_info'] as unknown[]).length, count, file);
        }
      }
    }
  });

  it('leaves N/A and units as the text nvidia-smi printed', function () {
    const root = log(realFixture('nvidia-smi-q-x_grid-p4-1q-vgpu_windows_driver-513.46_dtd-v11_13procs.xml'));
    const gpu = obj(root['gpu']);
    assert.equal(gpu['clocks_throttle_reasons'], 'N/A');
    assert.deepEqual(gpu['fb_memory_usage'], {
      total: '1024 MiB',
      reserved: '110 MiB',
      used: '807 MiB',
      free: '106 MiB',
    });
    assert.equal(gpu['mig_devices'], 'None');
  });

  it('follows xml2js on self-closing, whitespace-only, attribute and mixed elements', function () {
    // Expected values as xml2js 0.4.23 printed them for this input.
    const xml =
      '<nvidia_smi_log><gpu id="a"><processes/><x>  </x><y></y><z a="1"/><w a="1">t</w><v a="1">  </v>' +
      '<m>text <c>1</c> more</m><e>&amp;&lt;&#65;&#x42;</e><q attr="&quot;x&amp;"/></gpu><gpu id="b"/></nvidia_smi_log>';
    assert.equal(
      JSON.stringify(toNodeNvidiaSmiShape(xml)),
      '{"nvidia_smi_log":{"gpu":[{"$":{"id":"a"},"processes":"","x":"  ","y":"","z":{"$":{"a":"1"}},' +
        '"w":{"_":"t","$":{"a":"1"}},"v":{"$":{"a":"1"}},"m":{"_":"text  more","c":"1"},"e":"&<AB",' +
        '"q":{"$":{"attr":"\\"x&"}}},{"$":{"id":"b"}}]}}',
    );
  });

  it('answers null for empty output, as xml2js does', function () {
    assert.equal(toNodeNvidiaSmiShape(''), null);
    assert.equal(toNodeNvidiaSmiShape(' \n'), null);
  });

  it('refuses element names that would reach the prototype', function () {
    for (const name of ['__proto__', 'constructor', 'prototype']) {
      assert.throws(
        () =>
          toNodeNvidiaSmiShape(
            `<nvidia_smi_log><${name}><polluted>yes</polluted></${name}></nvidia_smi_log>`,
          ),
        (err: unknown) => err instanceof GpuError && err.category === 'parse',
        name,
      );
    }
    assert.equal(({} as Obj)['polluted'], undefined);
  });

  it('throws a parse error for output that is not an nvidia-smi XML report', function () {
    for (const text of [
      'garbage',
      "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
      '<nvidia_smi_log><gpu>',
      '<other/>',
      '<nvidia_smi_log/><nvidia_smi_log/>',
    ]) {
      assert.throws(
        () => toNodeNvidiaSmiShape(text),
        (err: unknown) => err instanceof GpuError && err.category === 'parse',
        text,
      );
    }
  });
});
