import type { Artifact } from '../artifacts/artifact-store.js';
import { artifactUrl } from '../artifacts/artifact-store.js';
import { iso } from './gpu.js';

/** `GET /debug/artifacts`: a job's artifacts with download URLs. */
export function buildArtifactsView(jobId: string | null, artifacts: Artifact[]) {
  return {
    job_id: jobId,
    artifacts: artifacts.map((a) => ({
      name: a.name,
      size_bytes: a.sizeBytes,
      content_type: a.contentType,
      sha256: a.sha256,
      created_at: iso(a.createdAt),
      url: artifactUrl(a),
    })),
  };
}
