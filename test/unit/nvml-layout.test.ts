/**
 * The struct layouts the NVML bindings declare, against nvml.h as NVIDIA ships it (sizes and offsets
 * as a C compiler lays the header's structs out on 64-bit Linux). A wrong member type here would
 * read garbage from a real driver while the fake, built from the same mistake, agreed.
 */
import assert from 'node:assert/strict';
import koffi from 'koffi';
import { NVML_STRUCTS, structVersion } from '../../gpu/backends/nvml/bindings.js';

describe('NVML struct layouts', function () {
  it('have the sizes nvml.h gives them', function () {
    const sizes = Object.fromEntries(Object.entries(NVML_STRUCTS).map(([k, t]) => [k, koffi.sizeof(t)]));
    assert.deepEqual(sizes, {
      PciInfo: 68,
      Utilization: 8,
      Memory: 24,
      MemoryV2: 40,
      ProcessInfoV1: 16,
      ProcessInfoV2: 24,
      TemperatureV1: 12,
      FieldValue: 40,
      EventData: 32,
    });
  });

  it('put the members where nvml.h puts them', function () {
    const at = (t: keyof typeof NVML_STRUCTS, m: string): number => koffi.offsetof(NVML_STRUCTS[t], m);
    assert.equal(at('PciInfo', 'domain'), 16);
    assert.equal(at('PciInfo', 'busId'), 36);
    assert.equal(at('MemoryV2', 'total'), 8, 'padding after the 4-byte version');
    assert.equal(at('MemoryV2', 'reserved'), 16);
    assert.equal(at('MemoryV2', 'used'), 32);
    assert.equal(at('ProcessInfoV1', 'usedGpuMemory'), 8);
    assert.equal(at('ProcessInfoV2', 'gpuInstanceId'), 16);
    assert.equal(at('ProcessInfoV2', 'computeInstanceId'), 20);
    assert.equal(at('FieldValue', 'valueType'), 24);
    assert.equal(at('FieldValue', 'nvmlReturn'), 28);
    assert.equal(at('FieldValue', 'value'), 32);
    assert.equal(at('EventData', 'eventData'), 16);
    assert.equal(at('EventData', 'gpuInstanceId'), 24);
  });

  it('version the versioned structs as NVML_STRUCT_VERSION does', function () {
    assert.equal(structVersion(NVML_STRUCTS.MemoryV2, 2), 0x02000028);
    assert.equal(structVersion(NVML_STRUCTS.TemperatureV1, 1), 0x0100000c);
  });
});
