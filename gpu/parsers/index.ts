export * from './values.js';
export * from './nvidia-smi-xml.js';
export * from './nvidia-smi-csv.js';
export * from './node-nvidia-smi.js';
