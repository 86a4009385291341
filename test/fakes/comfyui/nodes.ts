import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  colourOf,
  encodeAnimatedWebp,
  encodeFlac,
  encodeJpeg,
  encodeMp4,
  encodePng,
  mixColour,
  pngSize,
} from './media.js';
import type { Rgb } from './media.js';

/**
 * The node classes the fake ComfyUI knows: their inputs as ComfyUI declares them (for validation and
 * `/object_info`), their outputs, and a stand-in for their work that produces small descriptors in
 * place of tensors and writes real files where the real node writes files.
 */

// ------------------------------------------------------------------------------------- Python-isms

/** An exception as Python would raise it: `type` is what `full_type_name` reports. */
export class PyError extends Error {
  constructor(
    readonly pyType: string,
    message: string,
  ) {
    super(message);
  }
}

function pyFloatText(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
  if (Number.isInteger(n) && Math.abs(n) < 1e16) return n.toFixed(1);
  return String(n).replace(/e([+-])(\d)$/, 'e$10$2');
}

/** `repr()` of a JSON value, the way Python prints the dict/list/str it parsed. */
export function pyRepr(v: unknown, asFloat = false): string {
  if (typeof v === 'string') {
    const q = v.includes("'") && !v.includes('"') ? '"' : "'";
    const body = v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');
    return q + (q === "'" ? body.replace(/'/g, "\\'") : body) + q;
  }
  return pyStr(v, asFloat);
}

/** `str()` of a JSON value. */
export function pyStr(v: unknown, asFloat = false): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number') {
    if (asFloat || !Number.isInteger(v)) return pyFloatText(v);
    return String(v);
  }
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return `[${v.map((x) => pyRepr(x)).join(', ')}]`;
  if (typeof v === 'object') {
    return `{${Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`)
      .join(', ')}}`;
  }
  return 'None';
}

/** `json.dumps()` with its default separators and `ensure_ascii`. */
export function pyJsonDumps(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string')
    return JSON.stringify(v).replace(
      /[\u007f-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
  if (typeof v === 'number' || typeof v === 'boolean') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(pyJsonDumps).join(', ')}]`;
  if (typeof v === 'object') {
    return `{${Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${pyJsonDumps(k)}: ${pyJsonDumps(x)}`)
      .join(', ')}}`;
  }
  return 'null';
}

/** Python truthiness of a JSON value (`bool(x)`). */
export function pyTruthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

function pyTypeName(v: unknown): string {
  if (v === null || v === undefined) return 'NoneType';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return 'dict';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  return 'str';
}

/** `int(v)` for a JSON value. */
export function pyInt(v: unknown): number {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new PyError('OverflowError', 'cannot convert float infinity to integer');
    return Math.trunc(v);
  }
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^[+-]?\d+(_\d+)*$/.test(s)) return Number(s.replace(/_/g, ''));
    throw new PyError('ValueError', `invalid literal for int() with base 10: ${pyRepr(v)}`);
  }
  throw new PyError(
    'TypeError',
    `int() argument must be a string, a bytes-like object or a real number, not '${pyTypeName(v)}'`,
  );
}

/** `float(v)` for a JSON value. */
export function pyFloat(v: unknown): number {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (/^[+-]?(\d+(_\d+)*)?(\.\d*(_\d+)*)?(e[+-]?\d+)?$/.test(s) && /\d/.test(s))
      return Number(s.replace(/_/g, ''));
    if (/^[+-]?(inf|infinity)$/.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
    if (/^[+-]?nan$/.test(s)) return NaN;
    throw new PyError('ValueError', `could not convert string to float: ${pyRepr(v)}`);
  }
  throw new PyError(
    'TypeError',
    `float() argument must be a string or a real number, not '${pyTypeName(v)}'`,
  );
}

// ---------------------------------------------------------------------------------------- folders

/** Where the fake keeps what ComfyUI keeps under its base directory. */
export interface Env {
  baseDir: string;
  inputDir: string;
  outputDir: string;
  tempDir: string;
  modelsDir: string;
}

function listFiles(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((f) => {
        try {
          return statSync(path.join(dir, f)).isFile();
        } catch {
          return false;
        }
      })
      .map((f) => f.split(path.sep).join('/'))
      .sort();
  } catch {
    return [];
  }
}

/** Model files a fresh install of the fake offers, besides what lies under models/<folder>/. */
const DEFAULT_MODELS: Record<string, string[]> = {
  checkpoints: [
    'sd_xl_base_1.0.safetensors',
    'stable-audio-open-1.0.safetensors',
    'v1-5-pruned-emaonly.safetensors',
  ],
  loras: ['detail_tweaker_xl.safetensors'],
  vae: ['ae.safetensors', 'sdxl_vae.safetensors'],
  diffusion_models: ['flux1-dev.safetensors'],
  text_encoders: ['clip_l.safetensors', 't5xxl_fp16.safetensors'],
};

export const MODEL_FOLDERS = Object.keys(DEFAULT_MODELS);

export function modelList(env: Env, folder: string): string[] {
  const found = listFiles(path.join(env.modelsDir, folder));
  return [...new Set([...(DEFAULT_MODELS[folder] ?? []), ...found])].sort();
}

const IMAGE_EXTENSIONS = new Set(['png', 'jpg', 'jpeg', 'webp', 'gif', 'bmp', 'tif', 'tiff', 'avif']);

function inputImages(env: Env): string[] {
  try {
    return readdirSync(env.inputDir)
      .filter((f) => {
        try {
          return statSync(path.join(env.inputDir, f)).isFile();
        } catch {
          return false;
        }
      })
      .filter((f) => IMAGE_EXTENSIONS.has(f.split('.').pop()?.toLowerCase() ?? ''))
      .sort();
  } catch {
    return [];
  }
}

/** `folder_paths.annotated_filepath`: `name [output]` / `[input]` / `[temp]` picks the folder. */
export function annotatedFilepath(name: string, env: Env): { name: string; dir: string | undefined } {
  if (name.endsWith('[output]')) return { name: name.slice(0, -9), dir: env.outputDir };
  if (name.endsWith('[input]')) return { name: name.slice(0, -8), dir: env.inputDir };
  if (name.endsWith('[temp]')) return { name: name.slice(0, -7), dir: env.tempDir };
  return { name, dir: undefined };
}

function annotatedPath(name: string, env: Env): string {
  const a = annotatedFilepath(name, env);
  return path.join(a.dir ?? env.inputDir, a.name);
}

function pyNormpath(p: string): string {
  if (p === '') return '.';
  const abs = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..' && out.length > 0 && out[out.length - 1] !== '..') out.pop();
    else if (part === '..' && abs) continue;
    else out.push(part);
  }
  const joined = out.join('/');
  return abs ? `/${joined}` : joined || '.';
}

function pyDirname(p: string): string {
  const i = p.lastIndexOf('/');
  const head = p.slice(0, i + 1);
  return head && head !== '/'.repeat(head.length) ? head.replace(/\/+$/, '') : head;
}

function pyBasename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

function isInside(dir: string, p: string): boolean {
  const rel = path.relative(dir, path.resolve(p));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

export interface SavePath {
  fullOutputFolder: string;
  filename: string;
  counter: number;
  subfolder: string;
}

/** `folder_paths.get_save_image_path`: the folder, file stem and next counter for a prefix. */
export function getSaveImagePath(prefix: string, outputDir: string, width = 0, height = 0): SavePath {
  if (prefix.includes('%')) {
    const now = new Date();
    const two = (n: number): string => String(n).padStart(2, '0');
    prefix = prefix
      .replaceAll('%width%', String(width))
      .replaceAll('%height%', String(height))
      .replaceAll('%year%', String(now.getFullYear()))
      .replaceAll('%month%', two(now.getMonth() + 1))
      .replaceAll('%day%', two(now.getDate()))
      .replaceAll('%hour%', two(now.getHours()))
      .replaceAll('%minute%', two(now.getMinutes()))
      .replaceAll('%second%', two(now.getSeconds()));
  }
  const norm = pyNormpath(prefix);
  const subfolder = pyDirname(norm);
  const filename = pyBasename(norm);
  const fullOutputFolder = path.join(outputDir, subfolder);
  if (!isInside(outputDir, fullOutputFolder)) {
    throw new PyError(
      'Exception',
      '**** ERROR: Saving image outside the output folder is not allowed.' +
        `\n full_output_folder: ${path.resolve(fullOutputFolder)}` +
        `\n         output_dir: ${outputDir}` +
        `\n         commonpath: ${path.resolve(outputDir, path.relative(outputDir, fullOutputFolder).startsWith('..') ? '/' : '')}`,
    );
  }
  const prefixLen = pyBasename(prefix).length;
  let counter = 1;
  if (!existsSync(fullOutputFolder)) {
    mkdirSync(fullOutputFolder, { recursive: true });
  } else {
    let best: [number, string] | undefined;
    for (const f of readdirSync(fullOutputFolder)) {
      const head = f.slice(0, prefixLen + 1);
      const digitsText = f.slice(prefixLen + 1).split('_')[0] ?? '';
      const digits = /^\s*[+-]?\d+\s*$/.test(digitsText) ? Number(digitsText) : 0;
      if (head.slice(0, -1).toLowerCase() !== filename.toLowerCase() || head.slice(-1) !== '_') continue;
      if (!best || digits > best[0] || (digits === best[0] && head > best[1])) best = [digits, head];
    }
    if (best) counter = best[0] + 1;
  }
  return { fullOutputFolder, filename, counter, subfolder };
}

const pad5 = (n: number): string => String(n).padStart(5, '0');

// ----------------------------------------------------------------------------------------- values

/** What flows along a link in place of a tensor or a model. */
export interface Value {
  readonly type: string;
  /** What `str()` of the real object looks like, for `current_inputs` of an execution_error. */
  readonly repr: string;
  readonly hash: string;
  readonly width?: number;
  readonly height?: number;
  /** Images in a batch, or latents in a batch. */
  readonly count?: number;
  readonly steps?: number;
  readonly seconds?: number;
  readonly sampleRate?: number;
  readonly channels?: number;
  readonly fps?: number;
  readonly audio?: Value;
}

function address(hash: string, salt: string): string {
  return `0x7f${createHash('sha1')
    .update(hash + salt)
    .digest('hex')
    .slice(0, 10)}`;
}

function objectValue(type: string, cls: string, hash: string): Value {
  return { type, hash, repr: `<${cls} object at ${address(hash, type)}>` };
}

/** A summarised torch tensor repr of the given rank (torch elides the middle of large tensors). */
function tensorRepr(shape: number[]): string {
  const depth = Math.max(1, shape.length);
  const row = '[0., 0., 0.,  ..., 0., 0., 0.]';
  const indent = ' '.repeat(7 + depth);
  return `tensor(${'['.repeat(depth - 1)}${row},\n${indent}...,\n${indent}${row}${']'.repeat(depth - 1)})`;
}

function latentValue(hash: string, width: number, height: number, count: number, seconds?: number): Value {
  const shape =
    seconds !== undefined
      ? [count, 64, Math.round(((seconds * 44100) / 2048 / 2) * 2)]
      : [count, 4, Math.floor(height / 8), Math.floor(width / 8)];
  return {
    type: 'LATENT',
    hash,
    width,
    height,
    count,
    seconds,
    repr: `{'samples': ${tensorRepr(shape)}}`,
  };
}

function imageValue(hash: string, width: number, height: number, count: number): Value {
  return { type: 'IMAGE', hash, width, height, count, repr: tensorRepr([count, height, width, 3]) };
}

function isValue(v: unknown): v is Value {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { type?: unknown }).type === 'string' &&
    typeof (v as { hash?: unknown }).hash === 'string'
  );
}

function num(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

function str(v: unknown, fallback: string): string {
  return typeof v === 'string' ? v : fallback;
}

function needValue(inputs: Record<string, unknown>, name: string, type?: string): Value {
  const v = inputs[name];
  if (!isValue(v) || (type !== undefined && v.type !== type && !(type === 'IMAGE' && v.type === 'LATENT'))) {
    throw new PyError('AttributeError', `'NoneType' object has no attribute '${name}'`);
  }
  return v;
}

// ------------------------------------------------------------------------------------- node model

export type InputType = string | readonly string[];
export type InputSpec = readonly [InputType, Record<string, unknown>?];

export interface InputTypes {
  required?: Record<string, InputSpec>;
  optional?: Record<string, InputSpec>;
  hidden?: Record<string, string>;
}

export interface RunContext {
  nodeId: string;
  /** Constants and upstream values by input name. */
  inputs: Record<string, unknown>;
  /** Stable digest of the node's cache signature: same graph and inputs, same files. */
  hash: string;
  env: Env;
  /** The prompt as executed (for the `prompt` metadata savers embed). */
  prompt: Record<string, unknown>;
  extraData: Record<string, unknown>;
}

export interface RunResult {
  outputs: unknown[];
  ui?: Record<string, unknown[]>;
}

export interface NodeClass {
  inputTypes(env: Env): InputTypes;
  output: readonly string[];
  outputNames?: readonly string[];
  outputNode?: boolean;
  category: string;
  displayName?: string;
  description?: string;
  pythonModule: string;
  /** A node of the V3 schema API: its hidden inputs are not part of `current_inputs` in errors. */
  v3?: boolean;
  /** Progress-bar steps this node reports, and whether a sampler preview goes with each. */
  progress?(inputs: Record<string, unknown>): { steps: number; previews: boolean };
  /** `IS_CHANGED` / `fingerprint_inputs`. */
  isChanged?(inputs: Record<string, unknown>, env: Env): unknown;
  /** `VALIDATE_INPUTS`: the inputs it takes and its check (true, or the reason it fails). */
  validate?: { inputs: readonly string[]; check(inputs: Record<string, unknown>, env: Env): true | string };
  run(ctx: RunContext): RunResult;
}

const SAMPLERS = [
  'euler',
  'euler_cfg_pp',
  'euler_ancestral',
  'euler_ancestral_cfg_pp',
  'heun',
  'heunpp2',
  'dpm_2',
  'dpm_2_ancestral',
  'lms',
  'dpm_fast',
  'dpm_adaptive',
  'dpmpp_2s_ancestral',
  'dpmpp_2s_ancestral_cfg_pp',
  'dpmpp_sde',
  'dpmpp_sde_gpu',
  'dpmpp_2m',
  'dpmpp_2m_cfg_pp',
  'dpmpp_2m_sde',
  'dpmpp_2m_sde_gpu',
  'dpmpp_2m_sde_heun',
  'dpmpp_2m_sde_heun_gpu',
  'dpmpp_3m_sde',
  'dpmpp_3m_sde_gpu',
  'ddpm',
  'lcm',
  'ipndm',
  'ipndm_v',
  'deis',
  'res_multistep',
  'res_multistep_cfg_pp',
  'res_multistep_ancestral',
  'res_multistep_ancestral_cfg_pp',
  'gradient_estimation',
  'gradient_estimation_cfg_pp',
  'er_sde',
  'seeds_2',
  'seeds_3',
  'sa_solver',
  'sa_solver_pece',
  'ddim',
  'uni_pc',
  'uni_pc_bh2',
] as const;
const SCHEDULERS = [
  'simple',
  'sgm_uniform',
  'karras',
  'exponential',
  'ddim_uniform',
  'beta',
  'normal',
  'linear_quadratic',
  'kl_optimal',
] as const;

const SEED = { default: 0, min: 0, max: 2 ** 64 - 1, control_after_generate: true } as const;
const STEPS = { default: 20, min: 1, max: 10000 } as const;
const CFG = { default: 8.0, min: 0.0, max: 100.0, step: 0.1, round: 0.01 } as const;
const HIDDEN_META = { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' } as const;

/** PNG/FLAC/MP4 metadata as the savers write it: `prompt`, then one entry per `extra_pnginfo` key. */
function metadata(ctx: RunContext): [string, string][] {
  const out: [string, string][] = [['prompt', pyJsonDumps(ctx.prompt)]];
  const extra = ctx.extraData.extra_pnginfo;
  if (extra && typeof extra === 'object' && !Array.isArray(extra)) {
    for (const [k, v] of Object.entries(extra as Record<string, unknown>)) out.push([k, pyJsonDumps(v)]);
  }
  return out;
}

function frameColours(images: Value): Rgb[] {
  return Array.from({ length: Math.max(1, images.count ?? 1) }, (_, i) => colourOf(`${images.hash}:${i}`));
}

function saveImages(
  ctx: RunContext,
  images: Value,
  prefix: string,
  dir: string,
  type: 'output' | 'temp',
): RunResult {
  const w = images.width ?? 512;
  const h = images.height ?? 512;
  const sp = getSaveImagePath(prefix, dir, w, h);
  const results: Record<string, unknown>[] = [];
  let counter = sp.counter;
  frameColours(images).forEach((colour, batch) => {
    const file = `${sp.filename.replaceAll('%batch_num%', String(batch))}_${pad5(counter)}_.png`;
    writeFileSync(path.join(sp.fullOutputFolder, file), encodePng(w, h, colour, metadata(ctx)));
    results.push({ filename: file, subfolder: sp.subfolder, type });
    counter++;
  });
  return { outputs: [], ui: { images: results } };
}

const TEMP_LETTERS = 'abcdefghijklmnopqrstupvxyz';
function tempSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += TEMP_LETTERS[Math.floor(Math.random() * TEMP_LETTERS.length)] ?? 'a';
  return s;
}

function samplerResult(ctx: RunContext, count: 1 | 2): RunResult {
  const latent = needValue(ctx.inputs, 'latent_image', 'LATENT');
  const out = latentValue(
    ctx.hash,
    latent.width ?? 512,
    latent.height ?? 512,
    latent.count ?? 1,
    latent.seconds,
  );
  return { outputs: count === 1 ? [out] : [out, { ...out, hash: `${ctx.hash}:denoised` }] };
}

function saveAudio(ctx: RunContext, prefix: string, dir: string, type: 'output' | 'temp'): RunResult {
  const audio = needValue(ctx.inputs, 'audio', 'AUDIO');
  const sp = getSaveImagePath(prefix, dir);
  const results: Record<string, unknown>[] = [];
  let counter = sp.counter;
  const rate = audio.sampleRate ?? 44100;
  for (let batch = 0; batch < Math.max(1, audio.count ?? 1); batch++) {
    const file = `${sp.filename.replaceAll('%batch_num%', String(batch))}_${pad5(counter)}_.flac`;
    const tone = 220 + (parseInt(audio.hash.slice(0, 4), 16) % 440);
    const samples = Math.max(1, Math.round((audio.seconds ?? 1) * rate));
    writeFileSync(
      path.join(sp.fullOutputFolder, file),
      encodeFlac(rate, audio.channels ?? 2, samples, tone, metadata(ctx)),
    );
    results.push({ filename: file, subfolder: sp.subfolder, type });
    counter++;
  }
  return { outputs: [], ui: { audio: results } };
}

const VHS_FORMATS = [
  'image/gif',
  'image/webp',
  'video/16bit-png',
  'video/8bit-png',
  'video/ProRes',
  'video/av1-webm',
  'video/ffmpeg-gif',
  'video/ffv1-mkv',
  'video/h264-mp4',
  'video/h265-mp4',
  'video/nvenc_av1-mp4',
  'video/nvenc_h264-mp4',
  'video/nvenc_hevc-mp4',
  'video/webm',
] as const;

const VHS_EXTENSIONS: Record<string, string> = {
  'video/ProRes': 'mov',
  'video/av1-webm': 'webm',
  'video/webm': 'webm',
  'video/ffmpeg-gif': 'gif',
  'video/ffv1-mkv': 'mkv',
  'video/16bit-png': 'png',
  'video/8bit-png': 'png',
};

/** Audio latents have no latent-to-RGB previewer, so their samplers send no preview frames. */
function hasImagePreview(inputs: Record<string, unknown>): boolean {
  const latent = inputs.latent_image;
  return !(isValue(latent) && latent.seconds !== undefined);
}

function stepsOf(inputs: Record<string, unknown>): number {
  const sigmas = inputs.sigmas;
  if (isValue(sigmas)) return sigmas.steps ?? 20;
  return Math.max(0, Math.trunc(num(inputs.steps, 20)));
}

/** Every node class the fake can run, by `class_type`. */
export const NODE_CLASSES: Record<string, NodeClass> = {
  CheckpointLoaderSimple: {
    inputTypes: (env) => ({
      required: {
        ckpt_name: [
          modelList(env, 'checkpoints'),
          { tooltip: 'The name of the checkpoint (model) to load.' },
        ],
      },
    }),
    output: ['MODEL', 'CLIP', 'VAE'],
    category: 'loaders',
    displayName: 'Load Checkpoint',
    pythonModule: 'nodes',
    run: (ctx) => ({
      outputs: [
        objectValue('MODEL', 'comfy.model_patcher.ModelPatcher', ctx.hash),
        objectValue('CLIP', 'comfy.sd.CLIP', ctx.hash),
        objectValue('VAE', 'comfy.sd.VAE', ctx.hash),
      ],
    }),
  },
  VAELoader: {
    inputTypes: (env) => ({ required: { vae_name: [[...modelList(env, 'vae'), 'pixel_space']] } }),
    output: ['VAE'],
    category: 'loaders',
    displayName: 'Load VAE',
    pythonModule: 'nodes',
    run: (ctx) => ({ outputs: [objectValue('VAE', 'comfy.sd.VAE', ctx.hash)] }),
  },
  LoraLoader: {
    inputTypes: (env) => ({
      required: {
        model: ['MODEL'],
        clip: ['CLIP'],
        lora_name: [modelList(env, 'loras')],
        strength_model: ['FLOAT', { default: 1.0, min: -100.0, max: 100.0, step: 0.01 }],
        strength_clip: ['FLOAT', { default: 1.0, min: -100.0, max: 100.0, step: 0.01 }],
      },
    }),
    output: ['MODEL', 'CLIP'],
    category: 'loaders',
    displayName: 'Load LoRA',
    pythonModule: 'nodes',
    run: (ctx) => ({
      outputs: [
        objectValue('MODEL', 'comfy.model_patcher.ModelPatcher', ctx.hash),
        objectValue('CLIP', 'comfy.sd.CLIP', ctx.hash),
      ],
    }),
  },
  UNETLoader: {
    inputTypes: (env) => ({
      required: {
        unet_name: [modelList(env, 'diffusion_models')],
        weight_dtype: [['default', 'fp8_e4m3fn', 'fp8_e4m3fn_fast', 'fp8_e5m2']],
      },
    }),
    output: ['MODEL'],
    category: 'advanced/loaders',
    displayName: 'Load Diffusion Model',
    pythonModule: 'nodes',
    run: (ctx) => ({ outputs: [objectValue('MODEL', 'comfy.model_patcher.ModelPatcher', ctx.hash)] }),
  },
  DualCLIPLoader: {
    inputTypes: (env) => ({
      required: {
        clip_name1: [modelList(env, 'text_encoders')],
        clip_name2: [modelList(env, 'text_encoders')],
        type: [['sdxl', 'sd3', 'flux', 'hunyuan_video', 'hidream', 'hunyuan_image']],
      },
      optional: { device: [['default', 'cpu'], { advanced: true }] },
    }),
    output: ['CLIP'],
    category: 'advanced/loaders',
    pythonModule: 'nodes',
    run: (ctx) => ({ outputs: [objectValue('CLIP', 'comfy.sd.CLIP', ctx.hash)] }),
  },
  CLIPTextEncode: {
    inputTypes: () => ({
      required: {
        text: ['STRING', { multiline: true, dynamicPrompts: true, tooltip: 'The text to be encoded.' }],
        clip: ['CLIP', { tooltip: 'The CLIP model used for encoding the text.' }],
      },
    }),
    output: ['CONDITIONING'],
    category: 'conditioning',
    displayName: 'CLIP Text Encode (Prompt)',
    pythonModule: 'nodes',
    run: (ctx) => {
      needValue(ctx.inputs, 'clip', 'CLIP');
      return {
        outputs: [
          {
            type: 'CONDITIONING',
            hash: ctx.hash,
            repr: "[[tensor([[[-0.3885,  0.0230, -0.0521,  ..., -0.4901, -0.3066,  0.0674]]]), {'pooled_output': tensor([[ 0.0302, -0.0127,  ...,  0.0215]])}]]",
          },
        ],
      };
    },
  },
  EmptyLatentImage: {
    inputTypes: () => ({
      required: {
        width: ['INT', { default: 512, min: 16, max: 16384, step: 8 }],
        height: ['INT', { default: 512, min: 16, max: 16384, step: 8 }],
        batch_size: ['INT', { default: 1, min: 1, max: 4096 }],
      },
    }),
    output: ['LATENT'],
    category: 'latent',
    displayName: 'Empty Latent Image',
    pythonModule: 'nodes',
    run: (ctx) => ({
      outputs: [
        latentValue(
          ctx.hash,
          num(ctx.inputs.width, 512),
          num(ctx.inputs.height, 512),
          num(ctx.inputs.batch_size, 1),
        ),
      ],
    }),
  },
  KSampler: {
    inputTypes: () => ({
      required: {
        model: ['MODEL'],
        seed: ['INT', SEED],
        steps: ['INT', STEPS],
        cfg: ['FLOAT', CFG],
        sampler_name: [SAMPLERS],
        scheduler: [SCHEDULERS],
        positive: ['CONDITIONING'],
        negative: ['CONDITIONING'],
        latent_image: ['LATENT'],
        denoise: ['FLOAT', { default: 1.0, min: 0.0, max: 1.0, step: 0.01 }],
      },
    }),
    output: ['LATENT'],
    category: 'sampling',
    pythonModule: 'nodes',
    progress: (inputs) => ({ steps: stepsOf(inputs), previews: hasImagePreview(inputs) }),
    run: (ctx) => samplerResult(ctx, 1),
  },
  KSamplerAdvanced: {
    inputTypes: () => ({
      required: {
        model: ['MODEL'],
        add_noise: [['enable', 'disable']],
        noise_seed: ['INT', SEED],
        steps: ['INT', STEPS],
        cfg: ['FLOAT', CFG],
        sampler_name: [SAMPLERS],
        scheduler: [SCHEDULERS],
        positive: ['CONDITIONING'],
        negative: ['CONDITIONING'],
        latent_image: ['LATENT'],
        start_at_step: ['INT', { default: 0, min: 0, max: 10000 }],
        end_at_step: ['INT', { default: 10000, min: 0, max: 10000 }],
        return_with_leftover_noise: [['disable', 'enable']],
      },
    }),
    output: ['LATENT'],
    category: 'sampling',
    displayName: 'KSampler (Advanced)',
    pythonModule: 'nodes',
    progress: (inputs) => {
      const steps = stepsOf(inputs);
      const start = Math.max(0, Math.trunc(num(inputs.start_at_step, 0)));
      const end = Math.trunc(num(inputs.end_at_step, 10000));
      return { steps: Math.max(0, Math.min(end, steps) - start), previews: hasImagePreview(inputs) };
    },
    run: (ctx) => samplerResult(ctx, 1),
  },
  SamplerCustom: {
    inputTypes: () => ({
      required: {
        model: ['MODEL'],
        add_noise: ['BOOLEAN', { default: true }],
        noise_seed: ['INT', SEED],
        cfg: ['FLOAT', CFG],
        positive: ['CONDITIONING'],
        negative: ['CONDITIONING'],
        sampler: ['SAMPLER'],
        sigmas: ['SIGMAS'],
        latent_image: ['LATENT'],
      },
    }),
    output: ['LATENT', 'LATENT'],
    outputNames: ['output', 'denoised_output'],
    category: 'sampling/custom_sampling',
    pythonModule: 'comfy_extras.nodes_custom_sampler',
    progress: (inputs) => ({ steps: stepsOf(inputs), previews: hasImagePreview(inputs) }),
    run: (ctx) => samplerResult(ctx, 2),
  },
  SamplerCustomAdvanced: {
    inputTypes: () => ({
      required: {
        noise: ['NOISE'],
        guider: ['GUIDER'],
        sampler: ['SAMPLER'],
        sigmas: ['SIGMAS'],
        latent_image: ['LATENT'],
      },
    }),
    output: ['LATENT', 'LATENT'],
    outputNames: ['output', 'denoised_output'],
    category: 'sampling/custom_sampling',
    pythonModule: 'comfy_extras.nodes_custom_sampler',
    progress: (inputs) => ({ steps: stepsOf(inputs), previews: hasImagePreview(inputs) }),
    run: (ctx) => samplerResult(ctx, 2),
  },
  KSamplerSelect: {
    inputTypes: () => ({ required: { sampler_name: [SAMPLERS] } }),
    output: ['SAMPLER'],
    category: 'sampling/custom_sampling/samplers',
    pythonModule: 'comfy_extras.nodes_custom_sampler',
    run: (ctx) => ({ outputs: [objectValue('SAMPLER', 'comfy.samplers.KSAMPLER', ctx.hash)] }),
  },
  BasicScheduler: {
    inputTypes: () => ({
      required: {
        model: ['MODEL'],
        scheduler: [SCHEDULERS],
        steps: ['INT', STEPS],
        denoise: ['FLOAT', { default: 1.0, min: 0.0, max: 1.0, step: 0.01 }],
      },
    }),
    output: ['SIGMAS'],
    category: 'sampling/custom_sampling/schedulers',
    pythonModule: 'comfy_extras.nodes_custom_sampler',
    run: (ctx) => {
      const steps = num(ctx.inputs.denoise, 1) <= 0 ? 0 : Math.trunc(num(ctx.inputs.steps, 20));
      return {
        outputs: [
          {
            type: 'SIGMAS',
            hash: ctx.hash,
            steps,
            repr:
              steps > 0
                ? 'tensor([14.6146, 10.7468,  8.0815,  ...,  0.1072,  0.0292,  0.0000])'
                : 'tensor([])',
          },
        ],
      };
    },
  },
  RandomNoise: {
    inputTypes: () => ({ required: { noise_seed: ['INT', SEED] } }),
    output: ['NOISE'],
    category: 'sampling/custom_sampling/noise',
    pythonModule: 'comfy_extras.nodes_custom_sampler',
    run: (ctx) => ({
      outputs: [objectValue('NOISE', 'comfy_extras.nodes_custom_sampler.Noise_RandomNoise', ctx.hash)],
    }),
  },
  CFGGuider: {
    inputTypes: () => ({
      required: {
        model: ['MODEL'],
        positive: ['CONDITIONING'],
        negative: ['CONDITIONING'],
        cfg: ['FLOAT', CFG],
      },
    }),
    output: ['GUIDER'],
    category: 'sampling/custom_sampling/guiders',
    pythonModule: 'comfy_extras.nodes_custom_sampler',
    run: (ctx) => ({ outputs: [objectValue('GUIDER', 'comfy.samplers.CFGGuider', ctx.hash)] }),
  },
  BasicGuider: {
    inputTypes: () => ({ required: { model: ['MODEL'], conditioning: ['CONDITIONING'] } }),
    output: ['GUIDER'],
    category: 'sampling/custom_sampling/guiders',
    pythonModule: 'comfy_extras.nodes_custom_sampler',
    run: (ctx) => ({
      outputs: [objectValue('GUIDER', 'comfy_extras.nodes_custom_sampler.Guider_Basic', ctx.hash)],
    }),
  },
  VAEDecode: {
    inputTypes: () => ({
      required: {
        samples: ['LATENT', { tooltip: 'The latent to be decoded.' }],
        vae: ['VAE', { tooltip: 'The VAE model used for decoding the latent.' }],
      },
    }),
    output: ['IMAGE'],
    category: 'latent',
    displayName: 'VAE Decode',
    pythonModule: 'nodes',
    run: (ctx) => {
      const l = needValue(ctx.inputs, 'samples', 'LATENT');
      needValue(ctx.inputs, 'vae', 'VAE');
      return { outputs: [imageValue(ctx.hash, l.width ?? 512, l.height ?? 512, l.count ?? 1)] };
    },
  },
  VAEEncode: {
    inputTypes: () => ({ required: { pixels: ['IMAGE'], vae: ['VAE'] } }),
    output: ['LATENT'],
    category: 'latent',
    displayName: 'VAE Encode',
    pythonModule: 'nodes',
    run: (ctx) => {
      const img = needValue(ctx.inputs, 'pixels', 'IMAGE');
      return { outputs: [latentValue(ctx.hash, img.width ?? 512, img.height ?? 512, img.count ?? 1)] };
    },
  },
  LoadImage: {
    inputTypes: (env) => ({ required: { image: [inputImages(env), { image_upload: true }] } }),
    output: ['IMAGE', 'MASK'],
    category: 'image',
    displayName: 'Load Image',
    pythonModule: 'nodes',
    isChanged: (inputs, env) =>
      createHash('sha256')
        .update(readFileSync(annotatedPath(str(inputs.image, ''), env)))
        .digest('hex'),
    validate: {
      inputs: ['image'],
      check: (inputs, env) =>
        existsSync(annotatedPath(str(inputs.image, ''), env))
          ? true
          : `Invalid image file: ${pyStr(inputs.image)}`,
    },
    run: (ctx) => {
      const file = annotatedPath(str(ctx.inputs.image, ''), ctx.env);
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch {
        throw new PyError('FileNotFoundError', `[Errno 2] No such file or directory: ${pyRepr(file)}`);
      }
      const size = pngSize(bytes) ?? { width: 512, height: 512 };
      const img = imageValue(ctx.hash, size.width, size.height, 1);
      return {
        outputs: [
          img,
          {
            type: 'MASK',
            hash: ctx.hash,
            width: size.width,
            height: size.height,
            repr: tensorRepr([1, 64, 64]),
          },
        ],
      };
    },
  },
  SaveImage: {
    inputTypes: () => ({
      required: {
        images: ['IMAGE', { tooltip: 'The images to save.' }],
        filename_prefix: ['STRING', { default: 'ComfyUI', tooltip: 'The prefix for the file to save.' }],
      },
      hidden: HIDDEN_META,
    }),
    output: [],
    outputNode: true,
    category: 'image',
    displayName: 'Save Image',
    description: 'Saves the input images to your ComfyUI output directory.',
    pythonModule: 'nodes',
    run: (ctx) =>
      saveImages(
        ctx,
        needValue(ctx.inputs, 'images', 'IMAGE'),
        str(ctx.inputs.filename_prefix, 'ComfyUI'),
        ctx.env.outputDir,
        'output',
      ),
  },
  PreviewImage: {
    inputTypes: () => ({ required: { images: ['IMAGE'] }, hidden: HIDDEN_META }),
    output: [],
    outputNode: true,
    category: 'image',
    displayName: 'Preview Image',
    description: 'Saves the input images to your ComfyUI output directory.',
    pythonModule: 'nodes',
    run: (ctx) =>
      saveImages(
        ctx,
        needValue(ctx.inputs, 'images', 'IMAGE'),
        `ComfyUI_temp_${tempSuffix()}`,
        ctx.env.tempDir,
        'temp',
      ),
  },
  SaveAnimatedWEBP: {
    inputTypes: () => ({
      required: {
        images: ['IMAGE'],
        filename_prefix: ['STRING', { default: 'ComfyUI' }],
        fps: ['FLOAT', { default: 6.0, min: 0.01, max: 1000.0, step: 0.01 }],
        lossless: ['BOOLEAN', { default: true }],
        quality: ['INT', { default: 80, min: 0, max: 100 }],
        method: [['default', 'fastest', 'slowest']],
      },
      hidden: HIDDEN_META,
    }),
    output: [],
    outputNode: true,
    category: 'image/animation',
    pythonModule: 'comfy_extras.nodes_images',
    run: (ctx) => {
      const images = needValue(ctx.inputs, 'images', 'IMAGE');
      const w = images.width ?? 512;
      const h = images.height ?? 512;
      const sp = getSaveImagePath(str(ctx.inputs.filename_prefix, 'ComfyUI'), ctx.env.outputDir, w, h);
      const file = `${sp.filename}_${pad5(sp.counter)}_.webp`;
      const frames = frameColours(images);
      const duration = Math.trunc(1000 / Math.max(num(ctx.inputs.fps, 6), 0.01));
      writeFileSync(path.join(sp.fullOutputFolder, file), encodeAnimatedWebp(w, h, frames, duration));
      return {
        outputs: [],
        ui: {
          images: [{ filename: file, subfolder: sp.subfolder, type: 'output' }],
          animated: [frames.length !== 1],
        },
      };
    },
  },
  EmptyLatentAudio: {
    inputTypes: () => ({
      required: {
        seconds: ['FLOAT', { default: 47.6, min: 1.0, max: 1000.0, step: 0.1 }],
        batch_size: ['INT', { default: 1, min: 1, max: 4096 }],
      },
    }),
    output: ['LATENT'],
    category: 'latent/audio',
    pythonModule: 'comfy_extras.nodes_audio',
    run: (ctx) => ({
      outputs: [latentValue(ctx.hash, 0, 0, num(ctx.inputs.batch_size, 1), num(ctx.inputs.seconds, 47.6))],
    }),
  },
  VAEDecodeAudio: {
    inputTypes: () => ({ required: { samples: ['LATENT'], vae: ['VAE'] } }),
    output: ['AUDIO'],
    category: 'latent/audio',
    pythonModule: 'comfy_extras.nodes_audio',
    run: (ctx) => {
      const l = needValue(ctx.inputs, 'samples', 'LATENT');
      const seconds = l.seconds ?? 1;
      return {
        outputs: [
          {
            type: 'AUDIO',
            hash: ctx.hash,
            seconds,
            sampleRate: 44100,
            channels: 2,
            count: l.count ?? 1,
            repr: `{'waveform': ${tensorRepr([l.count ?? 1, 2, Math.round(seconds * 44100)])}, 'sample_rate': 44100}`,
          },
        ],
      };
    },
  },
  SaveAudio: {
    inputTypes: () => ({
      required: { audio: ['AUDIO'], filename_prefix: ['STRING', { default: 'audio/ComfyUI' }] },
      hidden: HIDDEN_META,
    }),
    output: [],
    outputNode: true,
    category: 'audio',
    displayName: 'Save Audio (FLAC)',
    pythonModule: 'comfy_extras.nodes_audio',
    run: (ctx) => saveAudio(ctx, str(ctx.inputs.filename_prefix, 'ComfyUI'), ctx.env.outputDir, 'output'),
  },
  PreviewAudio: {
    inputTypes: () => ({ required: { audio: ['AUDIO'] }, hidden: HIDDEN_META }),
    output: [],
    outputNode: true,
    category: 'audio',
    displayName: 'Preview Audio',
    pythonModule: 'comfy_extras.nodes_audio',
    run: (ctx) => saveAudio(ctx, `ComfyUI_temp_${tempSuffix()}`, ctx.env.tempDir, 'temp'),
  },
  CreateVideo: {
    inputTypes: () => ({
      required: {
        images: ['IMAGE', { tooltip: 'The images to create a video from.' }],
        fps: ['FLOAT', { default: 30.0, min: 1.0, max: 120.0, step: 1.0 }],
      },
      optional: { audio: ['AUDIO', { tooltip: 'The audio to add to the video.' }] },
    }),
    output: ['VIDEO'],
    category: 'image/video',
    displayName: 'Create Video',
    description: 'Create a video from images.',
    pythonModule: 'comfy_extras.nodes_video',
    v3: true,
    run: (ctx) => {
      const images = needValue(ctx.inputs, 'images', 'IMAGE');
      const audio = isValue(ctx.inputs.audio) ? ctx.inputs.audio : undefined;
      return {
        outputs: [
          {
            type: 'VIDEO',
            hash: ctx.hash,
            width: images.width,
            height: images.height,
            count: images.count,
            fps: num(ctx.inputs.fps, 30),
            audio,
            repr: `<comfy_api.latest._input_impl.video_types.VideoFromComponents object at ${address(ctx.hash, 'VIDEO')}>`,
          },
        ],
      };
    },
  },
  SaveVideo: {
    inputTypes: () => ({
      required: {
        video: ['VIDEO', { tooltip: 'The video to save.' }],
        filename_prefix: ['STRING', { default: 'video/ComfyUI' }],
        format: [['auto', 'mp4'], { default: 'auto' }],
        codec: [['auto', 'h264'], { default: 'auto' }],
      },
      hidden: HIDDEN_META,
    }),
    output: [],
    outputNode: true,
    category: 'image/video',
    displayName: 'Save Video',
    description: 'Saves the input images to your ComfyUI output directory.',
    pythonModule: 'comfy_extras.nodes_video',
    v3: true,
    run: (ctx) => {
      const video = needValue(ctx.inputs, 'video', 'VIDEO');
      const w = video.width ?? 512;
      const h = video.height ?? 512;
      const sp = getSaveImagePath(str(ctx.inputs.filename_prefix, 'video/ComfyUI'), ctx.env.outputDir, w, h);
      const file = `${sp.filename}_${pad5(sp.counter)}_.mp4`;
      const frames = frameColours(video);
      writeFileSync(
        path.join(sp.fullOutputFolder, file),
        encodeMp4(w, h, frames, video.fps ?? 24, pyJsonDumps(ctx.prompt)),
      );
      return {
        outputs: [],
        ui: { images: [{ filename: file, subfolder: sp.subfolder, type: 'output' }], animated: [true] },
      };
    },
  },
  VHS_VideoCombine: {
    inputTypes: () => ({
      required: {
        images: ['IMAGE'],
        frame_rate: ['FLOAT', { default: 8, min: 1, step: 1 }],
        loop_count: ['INT', { default: 0, min: 0, max: 100, step: 1 }],
        filename_prefix: ['STRING', { default: 'AnimateDiff' }],
        format: [VHS_FORMATS],
        pingpong: ['BOOLEAN', { default: false }],
        save_output: ['BOOLEAN', { default: true }],
      },
      optional: { audio: ['AUDIO'], meta_batch: ['VHS_BatchManager'], vae: ['VAE'] },
      hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO', unique_id: 'UNIQUE_ID' },
    }),
    output: ['VHS_FILENAMES'],
    outputNames: ['Filenames'],
    outputNode: true,
    category: 'Video Helper Suite 🎥🅥🅗🅢',
    displayName: 'Video Combine 🎥🅥🅗🅢',
    pythonModule: 'custom_nodes.ComfyUI-VideoHelperSuite',
    progress: (inputs) => {
      const images = inputs.images;
      return { steps: isValue(images) ? Math.max(1, images.count ?? 1) : 1, previews: false };
    },
    run: (ctx) => {
      const images = needValue(ctx.inputs, 'images', 'IMAGE');
      const saveOutput = ctx.inputs.save_output !== false;
      const dir = saveOutput ? ctx.env.outputDir : ctx.env.tempDir;
      const sp = getSaveImagePath(str(ctx.inputs.filename_prefix, 'AnimateDiff'), dir);
      // VideoHelperSuite numbers its files itself: the highest `<stem>_<digits>...` present, plus one.
      let max = 0;
      const re = new RegExp(`^${sp.filename.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_(\\d+)\\D*\\..+$`, 'i');
      for (const f of readdirSync(sp.fullOutputFolder)) {
        const m = re.exec(f);
        if (m?.[1]) max = Math.max(max, Number(m[1]));
      }
      const counter = max + 1;
      const w = images.width ?? 512;
      const h = images.height ?? 512;
      const frames = frameColours(images);
      const first = `${sp.filename}_${pad5(counter)}.png`;
      writeFileSync(
        path.join(sp.fullOutputFolder, first),
        encodePng(w, h, frames[0] ?? [0, 0, 0], metadata(ctx)),
      );
      const format = str(ctx.inputs.format, 'image/gif');
      const fps = num(ctx.inputs.frame_rate, 8);
      const [kind, ext0] = format.split('/');
      const ext = kind === 'image' ? (ext0 ?? 'gif') : (VHS_EXTENSIONS[format] ?? 'mp4');
      let file = `${sp.filename}_${pad5(counter)}.${ext}`;
      const outputFiles = [path.join(sp.fullOutputFolder, first)];
      const encode = (): Buffer =>
        ext === 'webp'
          ? encodeAnimatedWebp(w, h, frames, Math.trunc(1000 / Math.max(fps, 0.01)))
          : encodeMp4(w, h, frames, fps, pyJsonDumps(ctx.prompt));
      writeFileSync(path.join(sp.fullOutputFolder, file), encode());
      outputFiles.push(path.join(sp.fullOutputFolder, file));
      if (isValue(ctx.inputs.audio) && kind === 'video') {
        file = `${sp.filename}_${pad5(counter)}-audio.${ext}`;
        writeFileSync(path.join(sp.fullOutputFolder, file), encode());
        outputFiles.push(path.join(sp.fullOutputFolder, file));
      }
      const preview = {
        filename: file,
        subfolder: sp.subfolder,
        type: saveOutput ? 'output' : 'temp',
        format,
        frame_rate: fps,
        workflow: first,
        fullpath: outputFiles[outputFiles.length - 1],
      };
      return {
        outputs: [{ type: 'VHS_FILENAMES', hash: ctx.hash, repr: pyStr([saveOutput, outputFiles]) }],
        ui: { gifs: [preview] },
      };
    },
  },
};

/** A sampler preview for step `step` of `steps`: a flat JPEG turning from grey to the result's colour. */
export function previewJpeg(
  hash: string,
  latent: unknown,
  step: number,
  steps: number,
  maxSize: number,
): Buffer {
  const lw = isValue(latent) && latent.width ? latent.width : 512;
  const lh = isValue(latent) && latent.height ? latent.height : 512;
  // latent2rgb previews are latent-sized (1/8) and the server scales them to fit --preview-size.
  const w0 = Math.max(1, Math.floor(lw / 8));
  const h0 = Math.max(1, Math.floor(lh / 8));
  const scale = maxSize / Math.max(w0, h0);
  const w = Math.max(1, Math.round(w0 * scale));
  const h = Math.max(1, Math.round(h0 * scale));
  return encodeJpeg(w, h, mixColour([128, 128, 128], colourOf(`${hash}:0`), steps > 0 ? step / steps : 1));
}

export { isValue };
