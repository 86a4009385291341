import { constants } from 'node:fs';
import { copyFile, mkdir, realpath, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Artifact, ArtifactStore } from '../artifacts/artifact-store.js';
import { UnsafePathError, checkRelativeName, relativeInside, resolveInside } from '../artifacts/safe-path.js';
import { ComfyUnreachableError } from './client.js';
import type { ComfyClient } from './client.js';
import type { OutputFile } from './protocol.js';

export interface CollectOptions {
  client: ComfyClient;
  artifacts: ArtifactStore;
  /** ComfyUI's base directory (with output/, temp/, input/), when the agent can read it. */
  comfyDir?: string;
  signal?: AbortSignal;
}

/** A directory name for a job id: job ids are the producer's strings and may hold anything. */
export function jobDirName(jobId: string): string {
  const safe = jobId.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 200);
  return safe === '' || safe.startsWith('.') ? `job_${safe}` : safe;
}

/** The relative name a ComfyUI output file takes under the job's directory, checked. */
function artifactName(jobId: string, f: OutputFile): string {
  const rel = f.subfolder ? `${f.subfolder}/${f.filename}` : f.filename;
  // ComfyUI's own names; refused when they try to leave the job's directory.
  checkRelativeName(rel);
  return `${jobDirName(jobId)}/${f.type === 'output' ? '' : `${checkRelativeName(f.type)}/`}${rel}`;
}

/**
 * Brings one output file of ComfyUI under the artifacts root and records it (size, type, sha256). A
 * file already inside the root (ARTIFACTS_DIR set to ComfyUI's output folder) is recorded where it is;
 * one readable in COMFYUI_DIR is copied; anything else is fetched through `/view`. Names from ComfyUI are
 * checked like any other: traversal, absolute names and symlinks out are refused.
 */
export async function collectOutputFile(
  jobId: string,
  f: OutputFile,
  opts: CollectOptions,
): Promise<Artifact> {
  const { artifacts, client, comfyDir, signal } = opts;
  const rel = f.subfolder ? `${f.subfolder}/${f.filename}` : f.filename;
  let source: string | undefined;
  if (comfyDir) {
    const folder = path.join(comfyDir, checkRelativeName(f.type));
    source = await resolveInside(folder, rel).catch((err: unknown) => {
      if (err instanceof UnsafePathError && err.reason === 'missing') return undefined;
      throw err;
    });
    if (source) {
      const inRoot = relativeInside(await realpath(artifacts.root), source);
      if (inRoot !== undefined) return artifacts.add(jobId, inRoot);
    }
  }
  const name = artifactName(jobId, f);
  const realRoot = await realpath(artifacts.root);
  const dest = path.join(realRoot, name);
  await mkdir(path.dirname(dest), { recursive: true });
  // The directory chain may hold a symlink planted before: the real directory must still be inside.
  const realDir = await realpath(path.dirname(dest));
  if (realDir !== realRoot && !realDir.startsWith(realRoot + path.sep)) {
    throw new UnsafePathError('the path leads outside the artifacts directory', 'outside');
  }
  // A retried job writes its files again: the old ones are replaced, never written through.
  await unlink(dest).catch(() => undefined);
  let contentType: string | undefined;
  try {
    if (source) await copyFile(source, dest, constants.COPYFILE_EXCL);
    else {
      // A download cut off by the network (a dead pooled connection) is tried once more afresh.
      for (let attempt = 1; ; attempt++) {
        try {
          contentType = (await client.download(f, dest, signal)).contentType;
          break;
        } catch (err) {
          if (attempt >= 2 || signal?.aborted || !(err instanceof ComfyUnreachableError)) throw err;
          await unlink(dest).catch(() => undefined);
        }
      }
    }
  } catch (err) {
    // A partial file is never left behind, whatever stopped the write.
    await unlink(dest).catch(() => undefined);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw new Error(`no space left in the artifacts directory ${artifacts.root} (${code}) for ${name}`, {
        cause: err,
      });
    }
    throw err;
  }
  return artifacts.add(jobId, name, usableContentType(contentType));
}

/** ComfyUI's `/view` answers octet-stream for some kinds; then the name says more. */
function usableContentType(ct: string | undefined): string | undefined {
  if (!ct) return undefined;
  const base = ct.split(';')[0]?.trim();
  return base && base !== 'application/octet-stream' ? base : undefined;
}
