import { NODE_CLASSES, PyError, pyFloat, pyInt, pyRepr, pyStr, pyTruthy } from './nodes.js';
import type { Env, InputSpec, InputType } from './nodes.js';

/**
 * `POST /prompt` validation with ComfyUI's rules and error shapes (execution.py: validate_prompt and
 * validate_inputs): unknown classes and missing `class_type` stop everything with a top-level error;
 * per-input problems are collected into `node_errors`, and only outputs whose whole upstream graph is
 * valid are executed.
 */

export interface ErrorItem {
  type: string;
  message: string;
  details: string;
  extra_info: Record<string, unknown>;
}

export interface NodeErrors {
  errors: ErrorItem[];
  dependent_outputs: string[];
  class_type: unknown;
}

export type ValidationResult =
  | { kind: 'valid'; outputs: string[]; nodeErrors: Record<string, NodeErrors> }
  | { kind: 'invalid'; error: ErrorItem; nodeErrors: Record<string, NodeErrors> }
  /** Python would raise outside any handler: aiohttp answers 500. */
  | { kind: 'crash'; message: string };

type Verdict = [boolean, ErrorItem[], string];

/** A `traceback.format_tb` entry for a line of ComfyUI's execution.py. */
function frame(line: number, func: string, code: string, marks = ''): string {
  return `  File "/ComfyUI/execution.py", line ${line}, in ${func}\n    ${code}\n${marks ? `    ${marks}\n` : ''}`;
}

const FRAME_VALIDATE_PROMPT = frame(
  1010,
  'validate_prompt',
  'm = await validate_inputs(prompt_id, prompt, o, validated)',
  '    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^',
);
const FRAME_INNER = frame(
  808,
  'validate_inputs',
  'r = await validate_inputs(prompt_id, prompt, o_id, validated)',
  '    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^',
);

function raise(pyType: string, message: string, at: string): never {
  const e = new PyError(pyType, message);
  frames.set(e, [at]);
  throw e;
}

const frames = new WeakMap<PyError, string[]>();

function framesOf(e: unknown): string[] {
  return e instanceof PyError ? (frames.get(e) ?? []) : [];
}

function asPy(e: unknown): PyError {
  if (e instanceof PyError) return e;
  return new PyError('Exception', e instanceof Error ? e.message : String(e));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function pyTypeName(v: unknown): string {
  if (v === null || v === undefined) return 'NoneType';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return 'dict';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  return 'str';
}

/** `validate_node_input`: exact match, `*`, or overlapping comma-separated unions. */
export function validateNodeInput(received: unknown, input: InputType): boolean {
  if (typeof received !== 'string' || typeof input !== 'string') return false;
  if (received === input || received === '*' || input === '*') return true;
  const a = new Set(received.split(',').map((t) => t.trim()));
  return input.split(',').some((t) => a.has(t.trim()));
}

function pyEquals(a: unknown, b: unknown): boolean {
  if (typeof a === 'boolean' || typeof b === 'boolean') {
    const n = (x: unknown): unknown => (typeof x === 'boolean' ? Number(x) : x);
    return n(a) === n(b);
  }
  return a === b;
}

function lessThan(a: unknown, b: unknown, op: '<' | '>'): boolean {
  const an = typeof a === 'boolean' ? Number(a) : a;
  const bn = typeof b === 'boolean' ? Number(b) : b;
  if (typeof an === 'number' && typeof bn === 'number') return op === '<' ? an < bn : an > bn;
  if (typeof an === 'string' && typeof bn === 'string') return op === '<' ? an < bn : an > bn;
  throw new PyError(
    'TypeError',
    `'${op}' not supported between instances of '${pyTypeName(a)}' and '${pyTypeName(b)}'`,
  );
}

class Validator {
  readonly validated = new Map<string, Verdict>();
  private readonly active = new Set<string>();

  constructor(
    private readonly prompt: Record<string, unknown>,
    private readonly env: Env,
  ) {}

  private node(id: string): Record<string, unknown> {
    const n = this.prompt[id];
    return isObject(n) ? n : {};
  }

  validateInputs(id: string): Verdict {
    const known = this.validated.get(id);
    if (known) return known;
    if (this.active.has(id)) throw new PyError('RecursionError', 'maximum recursion depth exceeded');
    this.active.add(id);
    try {
      return this.validateInputsOnce(id);
    } finally {
      this.active.delete(id);
    }
  }

  private validateInputsOnce(id: string): Verdict {
    const node = this.node(id);
    if (!('inputs' in node))
      raise('KeyError', "'inputs'", frame(730, 'validate_inputs', "inputs = prompt[unique_id]['inputs']"));
    const inputs = node.inputs;
    if (!isObject(inputs)) {
      throw new PyError('TypeError', `argument of type '${pyTypeName(inputs)}' is not iterable`);
    }
    const cls = NODE_CLASSES[String(node.class_type)];
    if (!cls) throw new PyError('KeyError', pyRepr(node.class_type));
    const types = cls.inputTypes(this.env);
    const specs: [string, InputSpec, 'required' | 'optional'][] = [];
    for (const [k, s] of Object.entries(types.required ?? {})) specs.push([k, s, 'required']);
    for (const [k, s] of Object.entries(types.optional ?? {})) {
      if (!specs.some(([n]) => n === k)) specs.push([k, s, 'optional']);
    }
    const validateInputs = cls.validate?.inputs ?? [];
    const errors: ErrorItem[] = [];
    let valid = true;

    for (const [x, spec, category] of specs) {
      const [inputType, extra = {}] = spec;
      const info = [inputType, extra];
      if (!(x in inputs)) {
        if (category === 'required') {
          errors.push({
            type: 'required_input_missing',
            message: 'Required input is missing',
            details: x,
            extra_info: { input_name: x },
          });
        }
        continue;
      }
      let val = inputs[x];
      if (Array.isArray(val)) {
        if (val.length !== 2) {
          errors.push({
            type: 'bad_linked_input',
            message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
            details: x,
            extra_info: { input_name: x, input_config: info, received_value: val },
          });
          continue;
        }
        const [oId, slot] = val as [unknown, unknown];
        const lookup = frame(
          788,
          'validate_inputs',
          "o_class_type = prompt[o_id]['class_type']",
          '               ~~~~~~^^^^^^',
        );
        if (Array.isArray(oId) || isObject(oId))
          raise('TypeError', `unhashable type: '${pyTypeName(oId)}'`, lookup);
        if (typeof oId !== 'string' || !Object.hasOwn(this.prompt, oId))
          raise('KeyError', pyRepr(oId), lookup);
        const upstream = NODE_CLASSES[String(this.node(oId).class_type)];
        const returns = upstream?.output ?? [];
        const at = frame(790, 'validate_inputs', 'received_type = r[val[1]]', '                ~^^^^^^^^');
        if (!(typeof slot === 'boolean' || (typeof slot === 'number' && Number.isInteger(slot)))) {
          raise('TypeError', `tuple indices must be integers or slices, not ${pyTypeName(slot)}`, at);
        }
        const index = Number(slot);
        const resolved = index < 0 ? returns.length + index : index;
        if (resolved < 0 || resolved >= returns.length) raise('IndexError', 'tuple index out of range', at);
        const receivedType = returns[resolved];
        if (!validateInputs.includes('input_types') && !validateNodeInput(receivedType, inputType)) {
          errors.push({
            type: 'return_type_mismatch',
            message: 'Return type mismatch between linked nodes',
            details: `${x}, received_type(${pyStr(receivedType)}) mismatch input_type(${pyStr(inputType)})`,
            extra_info: { input_name: x, input_config: info, received_type: receivedType, linked_node: val },
          });
          continue;
        }
        try {
          const r = this.validateInputs(oId);
          if (!r[0]) {
            valid = false;
            continue;
          }
        } catch (err) {
          const ex = asPy(err);
          valid = false;
          const reasons: ErrorItem[] = [
            {
              type: 'exception_during_inner_validation',
              message: 'Exception when validating inner node',
              details: ex.message,
              extra_info: {
                input_name: x,
                input_config: info,
                exception_message: ex.message,
                exception_type: ex.pyType,
                traceback: [FRAME_INNER, ...framesOf(ex)],
                linked_node: val,
              },
            },
          ];
          this.validated.set(oId, [false, reasons, oId]);
          continue;
        }
      } else {
        try {
          if (isObject(val) && '__value__' in val) {
            val = val.__value__;
            inputs[x] = val;
          }
          if (inputType === 'INT') val = pyInt(val);
          else if (inputType === 'FLOAT') val = pyFloat(val);
          else if (inputType === 'STRING') val = pyStr(val);
          else if (inputType === 'BOOLEAN') val = pyTruthy(val);
          inputs[x] = val;
        } catch (err) {
          const ex = asPy(err);
          errors.push({
            type: 'invalid_input_type',
            message: `Failed to convert an input value to a ${pyStr(inputType)} value`,
            details: `${x}, ${pyStr(val)}, ${ex.message}`,
            extra_info: {
              input_name: x,
              input_config: info,
              received_value: val,
              exception_message: ex.message,
            },
          });
          continue;
        }
        if (!validateInputs.includes(x)) {
          const isFloat = inputType === 'FLOAT';
          if ('min' in extra && lessThan(val, extra.min, '<')) {
            errors.push({
              type: 'value_smaller_than_min',
              message: `Value ${pyStr(val, isFloat)} smaller than min of ${pyStr(extra.min, isFloat)}`,
              details: x,
              extra_info: { input_name: x, input_config: info, received_value: val },
            });
            continue;
          }
          if ('max' in extra && lessThan(val, extra.max, '>')) {
            errors.push({
              type: 'value_bigger_than_max',
              message: `Value ${pyStr(val, isFloat)} bigger than max of ${pyStr(extra.max, isFloat)}`,
              details: x,
              extra_info: { input_name: x, input_config: info, received_value: val },
            });
            continue;
          }
          if (Array.isArray(inputType)) {
            const options = inputType as readonly unknown[];
            if (!options.some((o) => pyEquals(o, val))) {
              const long = options.length > 20;
              errors.push({
                type: 'value_not_in_list',
                message: 'Value not in list',
                details: `${x}: '${pyStr(val)}' not in ${long ? `(list of length ${options.length})` : pyStr(options)}`,
                extra_info: { input_name: x, input_config: long ? null : info, received_value: val },
              });
              continue;
            }
          }
        }
      }
    }

    if (cls.validate) {
      const given: Record<string, unknown> = {};
      for (const name of cls.validate.inputs) {
        if (name in inputs && !Array.isArray(inputs[name])) given[name] = inputs[name];
      }
      if (Object.keys(given).length === cls.validate.inputs.length) {
        const r = cls.validate.check(given, this.env);
        if (r !== true) {
          for (const name of Object.keys(given)) {
            errors.push({
              type: 'custom_validation_failed',
              message: 'Custom validation failed for node',
              details: `${name} - ${r}`,
              extra_info: { input_name: name },
            });
          }
        }
      }
    }

    const verdict: Verdict = errors.length > 0 || !valid ? [false, errors, id] : [true, [], id];
    this.validated.set(id, verdict);
    return verdict;
  }
}

function crashFor(v: unknown): ValidationResult {
  return { kind: 'crash', message: `TypeError: '${pyTypeName(v)}' object is not iterable` };
}

/**
 * Validates an API-format prompt. `order` is the order of its node ids as sent (a JS object would
 * put integer-like keys first); `targets` is `partial_execution_targets`, if given.
 */
export function validatePrompt(
  prompt: unknown,
  order: string[],
  targets: unknown,
  env: Env,
): ValidationResult {
  const noOutputs: ValidationResult = {
    kind: 'invalid',
    error: { type: 'prompt_no_outputs', message: 'Prompt has no outputs', details: '', extra_info: {} },
    nodeErrors: {},
  };
  if (Array.isArray(prompt) || typeof prompt === 'string')
    return prompt.length === 0 ? noOutputs : crashFor(prompt);
  if (!isObject(prompt)) return crashFor(prompt);

  const outputs: string[] = [];
  for (const x of order) {
    const node = prompt[x];
    if (typeof node === 'string') {
      if (node.includes('class_type'))
        return { kind: 'crash', message: 'TypeError: string indices must be integers' };
    } else if (!isObject(node) && !Array.isArray(node)) {
      return { kind: 'crash', message: `TypeError: argument of type '${pyTypeName(node)}' is not iterable` };
    }
    if (!isObject(node) || !('class_type' in node)) {
      return {
        kind: 'invalid',
        error: {
          type: 'invalid_prompt',
          message: 'Cannot execute because a node is missing the class_type property.',
          details: `Node ID '#${x}'`,
          extra_info: {},
        },
        nodeErrors: {},
      };
    }
    const classType = node.class_type;
    if (Array.isArray(classType) || isObject(classType)) {
      return { kind: 'crash', message: `TypeError: unhashable type: '${pyTypeName(classType)}'` };
    }
    const cls =
      typeof classType === 'string' && Object.hasOwn(NODE_CLASSES, classType)
        ? NODE_CLASSES[classType]
        : undefined;
    if (!cls) {
      return {
        kind: 'invalid',
        error: {
          type: 'invalid_prompt',
          message: `Cannot execute because node ${pyStr(classType)} does not exist.`,
          details: `Node ID '#${x}'`,
          extra_info: {},
        },
        nodeErrors: {},
      };
    }
    if (cls.outputNode) {
      if (targets === undefined || targets === null) outputs.push(x);
      else if (
        Array.isArray(targets) ? targets.includes(x) : typeof targets === 'string' && targets.includes(x)
      )
        outputs.push(x);
    }
  }
  if (outputs.length === 0) return noOutputs;

  const v = new Validator(prompt, env);
  const good: string[] = [];
  const failed: [string, ErrorItem[]][] = [];
  const nodeErrors: Record<string, NodeErrors> = {};
  for (const o of outputs) {
    let verdict: [boolean, ErrorItem[]];
    try {
      const [okNow, reasonsNow] = v.validateInputs(o);
      verdict = [okNow, reasonsNow];
    } catch (err) {
      const ex = asPy(err);
      const reasonsNow: ErrorItem[] = [
        {
          type: 'exception_during_validation',
          message: 'Exception when validating node',
          details: ex.message,
          extra_info: { exception_type: ex.pyType, traceback: [FRAME_VALIDATE_PROMPT, ...framesOf(ex)] },
        },
      ];
      v.validated.set(o, [false, reasonsNow, o]);
      verdict = [false, reasonsNow];
    }
    const [ok, reasons] = verdict;
    if (ok) {
      good.push(o);
      continue;
    }
    failed.push([o, reasons]);
    // As in ComfyUI, every failing node seen so far is charged with this output.
    for (const [nodeId, [nodeOk, nodeReasons]] of v.validated) {
      if (nodeOk || nodeReasons.length === 0) continue;
      const entry = (nodeErrors[nodeId] ??= {
        errors: nodeReasons,
        dependent_outputs: [],
        class_type: (prompt[nodeId] as Record<string, unknown> | undefined)?.class_type,
      });
      entry.dependent_outputs.push(o);
    }
  }
  if (good.length === 0) {
    return {
      kind: 'invalid',
      error: {
        type: 'prompt_outputs_failed_validation',
        message: 'Prompt outputs failed validation',
        details: failed.flatMap(([, errs]) => errs.map((e) => `${e.message}: ${e.details}`)).join('\n'),
        extra_info: {},
      },
      nodeErrors,
    };
  }
  return { kind: 'valid', outputs: good, nodeErrors };
}
