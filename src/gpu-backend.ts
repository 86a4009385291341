import { MockBackend, findMockModel } from '../gpu/index.js';
import type { ActivitySource, GpuBackend } from '../gpu/index.js';
import type { AgentConfig } from './config.js';

export type BackendChoice = { backend: GpuBackend } | { backend: undefined; reason: string };

/** The GPU backend the configuration asks for. */
export function chooseGpuBackend(config: AgentConfig, activity: ActivitySource): BackendChoice {
  if (config.gpuBackend === 'mock') {
    return {
      backend: new MockBackend({
        count: config.mockGpuCount,
        model: findMockModel(config.mockGpuModel),
        seed: config.mockGpuSeed,
        fault: config.mockGpuFault,
        activity,
      }),
    };
  }
  return {
    backend: undefined,
    reason: `GPU backend "${config.gpuBackend}" is not available on this machine; set MOCK_GPU=1 to simulate GPUs`,
  };
}
