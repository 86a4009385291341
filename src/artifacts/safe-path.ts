import { realpath } from 'node:fs/promises';
import path from 'node:path';

export class UnsafePathError extends Error {
  constructor(
    message: string,
    readonly reason: 'absolute' | 'traversal' | 'invalid' | 'outside' | 'missing',
  ) {
    super(message);
    this.name = 'UnsafePathError';
  }
}

/**
 * Checks a relative artifact name before it touches the file system: no absolute paths, no `..`
 * segments, no NUL or control characters, no backslashes (Windows separators smuggled in), no empty
 * segments. Returns the name normalised to forward slashes.
 */
export function checkRelativeName(name: string): string {
  if (name.length === 0 || name.length > 1024)
    throw new UnsafePathError('name is empty or too long', 'invalid');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f\\]/.test(name))
    throw new UnsafePathError('name has control characters or backslashes', 'invalid');
  if (path.posix.isAbsolute(name) || /^[a-zA-Z]:/.test(name)) {
    throw new UnsafePathError('absolute names are not allowed', 'absolute');
  }
  const parts = name.split('/');
  if (parts.some((p) => p === '..')) throw new UnsafePathError('".." is not allowed in names', 'traversal');
  if (parts.some((p) => p === '' || p === '.'))
    throw new UnsafePathError('empty or "." path segments', 'invalid');
  return parts.join('/');
}

/**
 * Resolves `name` under `root` and proves the real file (symlinks followed) is inside the real root.
 * Throws UnsafePathError otherwise, `missing` when the file does not exist.
 */
export async function resolveInside(root: string, name: string): Promise<string> {
  const rel = checkRelativeName(name);
  const realRoot = await realpath(root);
  let real: string;
  try {
    real = await realpath(path.join(realRoot, rel));
  } catch {
    throw new UnsafePathError('no such file', 'missing');
  }
  if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
    throw new UnsafePathError('the path leads outside the artifacts directory', 'outside');
  }
  return real;
}

/** The name of `file` relative to `root` when it lies inside, for absolute paths workloads report. */
export function relativeInside(root: string, file: string): string | undefined {
  const rel = path.relative(path.resolve(root), path.resolve(file));
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  return rel.split(path.sep).join('/');
}
