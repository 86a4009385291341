import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import mime from 'mime-types';
import { UnsafePathError, relativeInside, resolveInside } from './safe-path.js';

export interface Artifact {
  jobId: string;
  /** Path relative to the artifacts root, forward slashes. */
  name: string;
  sizeBytes: number;
  contentType: string;
  sha256: string;
  createdAt: number;
}

/**
 * Files jobs produced, confined to one root. Only recorded artifacts are ever served, and each is
 * re-checked against the root when served (a symlink swapped in later is refused).
 */
export class ArtifactStore {
  private readonly byJob = new Map<string, Map<string, Artifact>>();

  constructor(
    readonly root: string,
    private readonly historySize: number,
    private readonly now: () => number = Date.now,
    private readonly maxPerJob = 1000,
  ) {}

  /**
   * Records a file under the root: `file` is relative to the root, or absolute but inside it. Hashes it
   * by streaming, so large videos cost no memory.
   */
  async add(jobId: string, file: string, contentType?: string): Promise<Artifact> {
    const name = file.startsWith('/') ? relativeInside(this.root, file) : file;
    if (name === undefined)
      throw new UnsafePathError('the file is outside the artifacts directory', 'outside');
    const real = await resolveInside(this.root, name);
    const st = await stat(real);
    if (!st.isFile()) throw new UnsafePathError('not a regular file', 'invalid');
    const hash = createHash('sha256');
    await pipeline(createReadStream(real), hash);
    const artifact: Artifact = {
      jobId,
      name,
      sizeBytes: st.size,
      contentType: contentType ?? (mime.lookup(name) || 'application/octet-stream'),
      sha256: hash.digest('hex'),
      createdAt: this.now(),
    };
    let list = this.byJob.get(jobId);
    if (!list) {
      list = new Map();
      this.byJob.set(jobId, list);
      while (this.byJob.size > this.historySize) {
        this.byJob.delete(this.byJob.keys().next().value as string);
      }
    }
    if (list.size >= this.maxPerJob && !list.has(name)) {
      throw new RangeError(`job ${jobId} already has ${this.maxPerJob} artifacts`);
    }
    list.set(name, artifact);
    return artifact;
  }

  list(jobId: string): Artifact[] | undefined {
    const list = this.byJob.get(jobId);
    return list ? [...list.values()] : undefined;
  }

  find(jobId: string, name: string): Artifact | undefined {
    return this.byJob.get(jobId)?.get(name);
  }

  /** The real path of a recorded artifact, checked again now. */
  async pathOf(artifact: Artifact): Promise<string> {
    return resolveInside(this.root, artifact.name);
  }
}

/** The download URL `/debug/artifacts` lists for an artifact. */
export function artifactUrl(a: Pick<Artifact, 'jobId' | 'name'>): string {
  return `/debug/artifacts/${encodeURIComponent(a.jobId)}/${a.name.split('/').map(encodeURIComponent).join('/')}`;
}
