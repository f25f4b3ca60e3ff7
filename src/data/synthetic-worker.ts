/** Worker thread for ensureSynthetic: renders and writes the images i ≡ part (mod parts). */
import { parentPort, workerData } from 'node:worker_threads';
import sharp from 'sharp';
import { writeSyntheticImages } from './synthetic.ts';

export interface SyntheticJob {
  readonly dir: string;
  readonly seed: number;
  readonly size: number;
  readonly period: readonly [number, number];
  readonly labels: Uint8Array;
  readonly part: number;
  readonly parts: number;
}

sharp.concurrency(1);
const job = (workerData as { job: SyntheticJob }).job;
writeSyntheticImages(job).then(
  () => parentPort!.postMessage({ ok: true }),
  (e: unknown) => parentPort!.postMessage({ ok: false, error: e instanceof Error ? e.message : String(e) }),
);
