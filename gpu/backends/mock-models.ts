/**
 * GPU models the mock backend can imitate. Figures are the ones real boards report through NVML and
 * nvidia-smi (total memory in MiB as the driver shows it, default power limit, boost and idle clocks).
 */
export interface MockGpuModel {
  name: string;
  aliases: string[];
  memoryMiB: number;
  reservedMiB: number;
  powerLimitW: number;
  idlePowerW: number;
  maxSmClockMHz: number;
  idleSmClockMHz: number;
  memClockMHz: number;
  idleTempC: number;
  maxTempC: number;
}

export const MOCK_GPU_MODELS: readonly MockGpuModel[] = [
  {
    name: 'NVIDIA H100 80GB HBM3',
    aliases: ['h100', 'h100-80gb', 'h100-sxm', 'h100 80gb'],
    memoryMiB: 81559,
    reservedMiB: 479,
    powerLimitW: 700,
    idlePowerW: 70,
    maxSmClockMHz: 1980,
    idleSmClockMHz: 345,
    memClockMHz: 2619,
    idleTempC: 31,
    maxTempC: 68,
  },
  {
    name: 'NVIDIA H100 PCIe',
    aliases: ['h100-pcie', 'h100 pcie'],
    memoryMiB: 81559,
    reservedMiB: 479,
    powerLimitW: 350,
    idlePowerW: 48,
    maxSmClockMHz: 1755,
    idleSmClockMHz: 345,
    memClockMHz: 1593,
    idleTempC: 33,
    maxTempC: 72,
  },
  {
    name: 'NVIDIA H200',
    aliases: ['h200', 'h200-141gb', 'h200 141gb'],
    memoryMiB: 143771,
    reservedMiB: 575,
    powerLimitW: 700,
    idlePowerW: 75,
    maxSmClockMHz: 1980,
    idleSmClockMHz: 345,
    memClockMHz: 3201,
    idleTempC: 30,
    maxTempC: 66,
  },
  {
    name: 'NVIDIA A100-SXM4-80GB',
    aliases: ['a100', 'a100-80gb', 'a100 80gb', 'a100-sxm4-80gb'],
    memoryMiB: 81920,
    reservedMiB: 912,
    powerLimitW: 400,
    idlePowerW: 58,
    maxSmClockMHz: 1410,
    idleSmClockMHz: 210,
    memClockMHz: 1593,
    idleTempC: 30,
    maxTempC: 70,
  },
  {
    name: 'NVIDIA A100-SXM4-40GB',
    aliases: ['a100-40gb', 'a100 40gb', 'a100-sxm4-40gb'],
    memoryMiB: 40960,
    reservedMiB: 600,
    powerLimitW: 400,
    idlePowerW: 55,
    maxSmClockMHz: 1410,
    idleSmClockMHz: 210,
    memClockMHz: 1215,
    idleTempC: 30,
    maxTempC: 70,
  },
  {
    name: 'NVIDIA L40S',
    aliases: ['l40s'],
    memoryMiB: 46068,
    reservedMiB: 524,
    powerLimitW: 350,
    idlePowerW: 35,
    maxSmClockMHz: 2520,
    idleSmClockMHz: 210,
    memClockMHz: 9001,
    idleTempC: 28,
    maxTempC: 74,
  },
  {
    name: 'NVIDIA L4',
    aliases: ['l4'],
    memoryMiB: 23034,
    reservedMiB: 317,
    powerLimitW: 72,
    idlePowerW: 16,
    maxSmClockMHz: 2040,
    idleSmClockMHz: 210,
    memClockMHz: 6251,
    idleTempC: 35,
    maxTempC: 78,
  },
  {
    name: 'NVIDIA A10G',
    aliases: ['a10g'],
    memoryMiB: 23028,
    reservedMiB: 313,
    powerLimitW: 300,
    idlePowerW: 27,
    maxSmClockMHz: 1710,
    idleSmClockMHz: 210,
    memClockMHz: 6251,
    idleTempC: 26,
    maxTempC: 75,
  },
  {
    name: 'NVIDIA GeForce RTX 4090',
    aliases: ['rtx4090', 'rtx-4090', 'rtx 4090', '4090'],
    memoryMiB: 24564,
    reservedMiB: 376,
    powerLimitW: 450,
    idlePowerW: 22,
    maxSmClockMHz: 2520,
    idleSmClockMHz: 210,
    memClockMHz: 10501,
    idleTempC: 34,
    maxTempC: 76,
  },
  {
    name: 'NVIDIA RTX A5000',
    aliases: ['a5000', 'rtx-a5000', 'rtx a5000'],
    memoryMiB: 24564,
    reservedMiB: 376,
    powerLimitW: 230,
    idlePowerW: 20,
    maxSmClockMHz: 2100,
    idleSmClockMHz: 210,
    memClockMHz: 8001,
    idleTempC: 32,
    maxTempC: 78,
  },
  {
    name: 'Tesla T4',
    aliases: ['t4', 'tesla-t4', 'tesla t4'],
    memoryMiB: 15360,
    reservedMiB: 257,
    powerLimitW: 70,
    idlePowerW: 10,
    maxSmClockMHz: 1590,
    idleSmClockMHz: 300,
    memClockMHz: 5000,
    idleTempC: 38,
    maxTempC: 80,
  },
];

/** Finds a model by its full name or an alias, ignoring case, spaces and punctuation differences. */
export function findMockModel(query: string): MockGpuModel | undefined {
  const norm = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]/g, '');
  const q = norm(query);
  return MOCK_GPU_MODELS.find((m) => norm(m.name) === q || m.aliases.some((a) => norm(a) === q));
}
