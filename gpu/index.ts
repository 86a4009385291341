export * from './types.js';
export * from './errors.js';
export * from './ring-buffer.js';
export * from './store.js';
export * from './poller.js';
export * from './prng.js';
export * from './backends/mock.js';
export * from './backends/mock-models.js';
