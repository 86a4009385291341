import type { Job, Queue } from 'bullmq';
import { eventually } from './agent.js';

/**
 * The job once BullMQ has it completed or failed. The state is read first and the job after it: a job
 * read before its state could predate the move and lack its result or failure reason.
 */
export async function finishedJob(queue: Queue, id: string, timeoutMs = 30_000): Promise<Job> {
  return eventually(
    async () => {
      const state = await queue.getJobState(id);
      if (state !== 'completed' && state !== 'failed') return undefined;
      return queue.getJob(id);
    },
    timeoutMs,
    `job ${id} finished`,
  );
}
