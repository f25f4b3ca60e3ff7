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
 * Each (engine, workload) runs in its own process so peak RSS is its own. Opt-in:
 *   npm run bench -- --suite models [--quick] [--filter TEXT] [--backend gpu]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Pass, type Row, type Suite, matches } from '../harness.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const WORKLOADS = ['b0/train-step-8x224', 'b0/inference-8x224', 'b0/train-step-16x128', 'b0/inference-16x128', 'b0-full-split/train-step-8x224+1024'];

function runWorkload(engine: string, workload: string, reps: number, timeoutMs: number): Record<string, unknown> | { error: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/peers/model-workload.ts', engine, workload, String(reps)], {
    cwd: root, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 24,
  });
  const line = r.stdout?.trim().split('\n').pop();
  if (r.status === 0 && line) return JSON.parse(line);
  // The first 'Error: …' line says why (tfjs prints pages of minified source before it).
  const why = (r.stderr ?? '').split('\n').find((l) => /^\w*Error: /.test(l))?.slice(0, 200);
  return { error: r.error ? String(r.error.message) : why ?? `exit ${r.status}` };
}

function torchRows(quick: boolean): Record<string, any>[] {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
  } catch {
    console.error('# models: PyTorch rows skipped (Debian python3-torch / python3-torchvision not installed)');
    return [];
  }
  const out = execFileSync('/usr/bin/python3', ['bench/peers/torch_models.py', ...(quick ? ['--quick'] : [])], {
    cwd: root, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2' }, maxBuffer: 1 << 24,
  });
  return out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
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
    for (const w of WORKLOADS) {
      for (const engine of ['cpu', 'cpu-jit', 'tfjs-wasm', 'tfjs-cpu']) {
        if (!matches(filter, 'models', w, engine, passOf(w))) continue;
        if (engine.startsWith('tfjs') && w.startsWith('b0-full-split')) continue; // no tfjs build of the two-backbone model
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
        rows.push({ suite: 'models', name: w, backend: engine, pass: passOf(w), ...(r as { medianMs: number; samples: number }) });
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
    if (WORKLOADS.some((w) => matches(filter, 'models', w, 'torch', passOf(w)))) {
      for (const t of torchRows(!!quick)) {
        if (matches(filter, 'models', t.name, 'torch', t.pass)) rows.push({ suite: 'models', backend: 'torch', ...t } as Row);
      }
    }
    return rows;
  },
};
