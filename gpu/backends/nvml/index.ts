// Only the main-thread side: bindings.ts loads koffi and belongs to the worker threads.
export * from './nvml-backend.js';
