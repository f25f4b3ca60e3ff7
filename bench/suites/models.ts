/**
 * Model workloads: EfficientNet-B0 train steps and inference, and the paper's
 * full-split model, on this engine's CPU backend (eager: `cpu`; compiled by jit: `cpu-jit`, whose
 * rows also carry compileMs, firstCallMs, heapBytesPerStep and `profile`, one call's time per category of
 * operation from `Jitted.profile`) and — in the same run — on TensorFlow.js (wasm, cpu) with the same
 * architecture from tfjs layers, and PyTorch CPU when installed (its inference rows with a torch.profiler
 * `profile` in the same categories).
 * With `--backend gpu`: this engine's gpu backend (its best mode: webgpu where an adapter is
 * present), eager and through jit (fused kernels), and TensorFlow.js's WebGPU backend on the same
 * adapter (rows 'gpu', 'gpu-jit' and 'tfjs-webgpu', each with its compute dispatches per step).
 * Each (engine, workload) runs in its own process so peak RSS is its own. On the four B0 workloads PyTorch runs
 * too, our cpu-jit process and PyTorch's run in lockstep (bench/lockstep.ts): both build and warm up, then they take
 * turns one timed rep at a time, each waiting (idle) while the other runs, so every rep of ours has one of PyTorch's
 * beside it and the cpu-jit row's `pairedRatio` (the median of the per-pair ratios, ours ÷ PyTorch's) holds on a
 * machine whose speed drifts from minute to minute; the rows taken so say `pairedWith`. Without PyTorch, or when
 * --filter keeps only one of the two, each runs alone. The cpu-jit full-split step is taken in lockstep the same
 * way with a second process running the B0 8×224 step (its target is a ratio to it): its row's `pairedRatio` is
 * full split ÷ B0 per pair, `pairedMedianMs` the B0 step's median there. Opt-in:
 *   npm run bench -- --suite models [--quick] [--filter TEXT] [--backend gpu]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Pass, type Row, type Suite, matches } from '../harness.ts';
import { type PeerResult, failureReason, lockstep } from '../lockstep.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const WORKLOADS = ['b0/train-step-8x224', 'b0/inference-8x224', 'b0/train-step-16x128', 'b0/inference-16x128', 'b0-full-split/train-step-8x224+1024'];

function runWorkload(engine: string, workload: string, reps: number, timeoutMs: number): Record<string, unknown> | { error: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/peers/model-workload.ts', engine, workload, String(reps)], {
    cwd: root, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 24,
  });
  const line = r.stdout?.trim().split('\n').pop();
  if (r.status === 0 && line) return JSON.parse(line);
  return { error: r.error ? String(r.error.message) : failureReason(r.stderr ?? '', r.status, r.signal) };
}

/** Debian's python3 with python3-torch (`python3` on PATH may be another one); PyTorch on two OpenMP threads. */
const PYTHON = '/usr/bin/python3';
const TORCH_ENV = { ...process.env, OMP_NUM_THREADS: '2' };
let torchFound: boolean | undefined;

/** Whether PyTorch and torchvision import; says once why its rows are skipped when not. */
function hasTorch(): boolean {
  if (torchFound === undefined) {
    try {
      execFileSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
      torchFound = true;
    } catch {
      console.error('# models: PyTorch rows skipped (Debian python3-torch / python3-torchvision not installed)');
      torchFound = false;
    }
  }
  return torchFound;
}

/** PyTorch's rows for the given sizes ('8x224', '16x128'), each workload timed in one block, from one process. */
function torchRows(quick: boolean, sizes: string[]): Record<string, any>[] {
  const out = execFileSync(PYTHON, ['bench/peers/torch_models.py', ...(quick ? ['--quick'] : []), ...sizes.map((s) => `--only=${s}`)], {
    cwd: root, encoding: 'utf8', env: TORCH_ENV, maxBuffer: 1 << 24,
  });
  return out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** The workloads PyTorch runs too: our cpu-jit row and PyTorch's are taken there in lockstep. */
const TORCH_WORKLOADS = WORKLOADS.filter((w) => w.startsWith('b0/'));

/**
 * Our cpu-jit process and PyTorch's for workload `w` in lockstep, `reps` turns each; their rows (either may be an
 * error). The suite's log says so, with the per-pair ratios.
 */
async function pairedWithTorch(w: string, reps: number): Promise<[PeerResult, PeerResult]> {
  const { rows, ratios } = await lockstep(
    { name: 'cpu-jit', command: process.execPath, args: ['--import', 'tsx', 'bench/peers/model-workload.ts', 'cpu-jit', w, 'lockstep'], cwd: root },
    { name: 'torch', command: PYTHON, args: ['bench/peers/torch_models.py', `--lockstep=${w}`], cwd: root, env: TORCH_ENV },
    { reps, timeoutMs: 30 * 60_000 },
  );
  const ours = rows[0];
  if (ratios.length > 0 && !('error' in ours)) {
    const range = `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`;
    console.error(`# models: ${w} cpu-jit and torch in lockstep (${reps} alternating reps each): cpu-jit ÷ torch per pair, median ${(ours.pairedRatio as number).toFixed(3)}× (${range})`);
  }
  return rows;
}

/** The full-split step's target is a ratio to this one: its cpu-jit row is taken in lockstep with it. */
const FULL_SPLIT = 'b0-full-split/train-step-8x224+1024', ITS_B0 = 'b0/train-step-8x224';

/**
 * Our cpu-jit full-split step and B0 step, each in its own process, in lockstep for `reps` turns each: the full
 * split's row (or an error), with `pairedWith` naming the B0 step and `pairedRatio` the median full split ÷ B0 per pair.
 */
async function fullSplitPairedWithB0(reps: number): Promise<PeerResult> {
  const peer = (w: string, name: string) => ({ name, command: process.execPath, args: ['--import', 'tsx', 'bench/peers/model-workload.ts', 'cpu-jit', w, 'lockstep'], cwd: root });
  const { rows, ratios } = await lockstep(peer(FULL_SPLIT, `${FULL_SPLIT} cpu-jit`), peer(ITS_B0, `${ITS_B0} cpu-jit`), { reps, timeoutMs: 30 * 60_000 });
  const [ours, b0] = rows;
  if (ratios.length > 0 && !('error' in ours) && !('error' in b0)) {
    const range = `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`;
    console.error(`# models: ${FULL_SPLIT} and ${ITS_B0}, cpu-jit, in lockstep (${reps} alternating reps each): full split ÷ B0 per pair, median ${(ours.pairedRatio as number).toFixed(3)}× (${range}; B0 median ${(b0.medianMs as number).toFixed(1)} ms)`);
    return { ...ours, pairedMedianMs: b0.medianMs };
  }
  return ours;
}

/**
 * The gpu workloads: the cpu ones plus B0 training at batch 32 (a real GPU's scale); with --quick,
 * small ones that finish in minutes on a software adapter (lavapipe).
 */
const GPU_WORKLOADS = [...WORKLOADS, 'b0/train-step-32x224'];
const GPU_QUICK = ['b0/inference-4x64', 'b0/train-step-4x64', 'b0-full-split/train-step-4x64+128'];

/** The gpu rows: ours (gpu backend, best mode; eager and jitted) and tfjs-webgpu, per workload, each in its own process. */
function gpuRows(filter: string | undefined, quick: boolean, passOf: (w: string) => Pass): Row[] {
  const rows: Row[] = [];
  const reps = quick ? 2 : 3;
  for (const w of quick ? GPU_QUICK : GPU_WORKLOADS) {
    for (const engine of ['gpu', 'gpu-jit', 'tfjs-webgpu']) {
      if (!matches(filter, 'models', w, engine, passOf(w))) continue;
      if (engine === 'tfjs-webgpu' && w.startsWith('b0-full-split')) continue; // no tfjs build of the two-backbone model
      const r = runWorkload(engine, w, reps, 60 * 60_000);
      if ('error' in r) {
        console.error(`# models: ${w} ${engine}: ${r.error}`);
        continue;
      }
      rows.push({ suite: 'models', name: w, backend: engine, pass: passOf(w), ...(r as { medianMs: number; samples: number }) });
    }
  }
  return rows;
}

export const models: Suite & { optIn: boolean } = {
  name: 'models',
  description: 'EfficientNet-B0 / full-split train steps and inference vs TensorFlow.js and PyTorch (opt-in: --suite models)',
  optIn: true,
  async run({ filter, quick, backend }) {
    const rows: Row[] = [];
    const reps = quick ? 2 : 5;
    const passOf = (w: string): Pass => (w.includes('train-step') ? 'train-step' : 'inference');
    if (backend === 'gpu') return gpuRows(filter, !!quick, passOf);
    if (backend && backend !== 'cpu') throw new Error(`bench models: --backend must be cpu or gpu, got '${backend}'`);
    const torchDone = new Set<string>();
    const row = (w: string, engine: string, r: Record<string, unknown>): Row =>
      ({ suite: 'models', name: w, backend: engine, pass: passOf(w), ...(r as { medianMs: number; samples: number }) });
    for (const w of WORKLOADS) {
      for (const engine of ['cpu', 'cpu-jit', 'tfjs-wasm', 'tfjs-cpu']) {
        if (!matches(filter, 'models', w, engine, passOf(w))) continue;
        if (engine === 'cpu-jit' && TORCH_WORKLOADS.includes(w) && matches(filter, 'models', w, 'torch', passOf(w)) && hasTorch()) {
          const [ours, torch] = await pairedWithTorch(w, passOf(w) === 'inference' ? (quick ? 5 : 11) : quick ? 3 : 7);
          for (const [name, r] of [['cpu-jit', ours], ['torch', torch]] as const) {
            if ('error' in r) console.error(`# models: ${w} ${name}: ${r.error}`);
            else rows.push(row(w, name, r));
          }
          torchDone.add(w);
          continue;
        }
        if (engine.startsWith('tfjs') && w.startsWith('b0-full-split')) continue; // no tfjs build of the two-backbone model
        if (engine === 'cpu-jit' && w === FULL_SPLIT) {
          const r = await fullSplitPairedWithB0(quick ? 3 : 7);
          if ('error' in r) console.error(`# models: ${w} ${engine}: ${r.error}`);
          else rows.push(row(w, engine, r));
          continue;
        }
        // tfjs-cpu takes minutes per 224-px training step: one sample, and only with --filter naming it.
        if (engine === 'tfjs-cpu' && passOf(w) === 'train-step' && !filter?.includes('tfjs-cpu')) {
          console.error(`# models: ${w} tfjs-cpu skipped by default (minutes per step; --filter tfjs-cpu to run it)`);
          continue;
        }
        const r = runWorkload(engine, w, engine === 'tfjs-cpu' ? 1 : reps, 30 * 60_000);
        if ('error' in r) {
          console.error(`# models: ${w} ${engine}: ${r.error}`);
          continue;
        }
        rows.push(row(w, engine, r));
      }
    }
    // 200 consecutive train steps (8×128, so the run takes minutes, not half an hour): the medians
    // of the first and last 20 steps and the RSS after them show slowdowns and leaks.
    for (const engine of ['cpu', 'cpu-jit']) {
      if (!matches(filter, 'models', 'b0/steady', engine, 'train-step') || (quick && !filter?.includes('steady'))) continue;
      const r = runWorkload(engine, 'b0/steady-8x128', 200, 60 * 60_000);
      if ('error' in r) console.error(`# models: b0/steady-8x128 ${engine}: ${r.error}`);
      else rows.push({ suite: 'models', name: 'b0/steady-200-steps-8x128', backend: engine, pass: 'train-step', ...(r as { medianMs: number; samples: number }) });
    }
    // PyTorch's rows not taken in lockstep (--filter kept torch but not cpu-jit): one block per workload, as alone.
    const rest = TORCH_WORKLOADS.filter((w) => !torchDone.has(w) && matches(filter, 'models', w, 'torch', passOf(w)));
    if (rest.length > 0 && hasTorch()) {
      const sizes = [...new Set(rest.map((w) => w.split('-').pop()!))];
      for (const t of torchRows(!!quick, sizes)) {
        if (rest.includes(t.name)) rows.push({ suite: 'models', backend: 'torch', ...t } as Row);
      }
    }
    return rows;
  },
};
