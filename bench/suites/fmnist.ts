/**
 * Fashion-MNIST training speed: one training step of the 75,850-parameter depthwise-separable +
 * dilated net (src/nn/dwsnet.ts) at batch 128 — augmentation (flip, pad-2 crop), forward, softmax
 * cross-entropy, backward, Adam at the one-cycle rate — on this engine (`cpu`, eager; `cpu-jit`, the
 * forward and backward pass compiled with `jit`) and on PyTorch (`torch`,
 * bench/peers/torch_fmnist.py, OMP_NUM_THREADS=2) in the same run. Each row also carries
 * `secondsPerEpoch` = median step × 469 steps (60,000 images / 128), extrapolated, and the
 * parameter count each side built, and `cpuMsPerStep`, the process's CPU time per step (all
 * threads; less sensitive than wall time to other processes on a shared machine). Opt-in (steps take seconds): npm run bench -- --suite fmnist [--quick]
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as E from '../../src/index.ts';
import { makeStep } from '../../src/train/classifier.ts';
import { type Row, type Suite, matches, measure } from '../harness.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const BATCH = 128;
const STEPS_PER_EPOCH = Math.ceil(60_000 / BATCH);
const NAME = `train-step-${BATCH}x28`;

/** A random uint8 image set shaped like Fashion-MNIST, so the bench needs no dataset. */
function randomSet(n: number): E.datasets.IdxImageSet {
  const u = E.random.uniformArray(E.random.key(0), n * 28 * 28);
  return { images: Uint8Array.from(u, (v) => Math.floor(v * 256)), labels: Uint8Array.from({ length: n }, (_, i) => i % 10), count: n, rows: 28, cols: 28 };
}

async function engineRow(backend: 'cpu' | 'cpu-jit', reps: number): Promise<Row> {
  const net = E.nn.createNetwork(E.nn.dwsNet(), { key: E.random.key(0), inputShape: [1, 1, 28, 28] });
  const optimizer = E.classifier.adam();
  // cpu-jit: the forward and backward pass compiled with `jit`; the Adam update runs eagerly either way.
  const step = makeStep(net, optimizer, { jit: backend === 'cpu-jit' });
  const set = randomSet(BATCH);
  const idx = Int32Array.from({ length: BATCH }, (_, i) => i);
  let ts = { params: net.params, state: net.state, opt: optimizer.init(net.params) };
  let i = 0;
  let cpu = 0;
  const m = await measure(() => {
    const c0 = process.cpuUsage();
    const k = E.random.key(++i);
    const { x, labels } = E.datasets.idxBatch(set, idx, { mean: 0.286, std: 0.353, flip: true, padCrop: 2, key: k });
    ts = step(ts, x, labels, 3e-3, k)[0];
    const c = process.cpuUsage(c0);
    cpu = i > 2 ? cpu + (c.user + c.system) / 1000 : 0; // after the 2 warm-up steps
  }, { iterations: reps, time: 0, warmup: 2 });
  return { suite: 'fmnist', name: NAME, backend, pass: 'train-step', ...m, cpuMsPerStep: cpu / m.samples, params: E.nn.parameterCount(net), stepsPerEpoch: STEPS_PER_EPOCH, secondsPerEpoch: (m.medianMs * STEPS_PER_EPOCH) / 1000 };
}

function torchRow(reps: number): Row | null {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' });
  } catch {
    console.error('# fmnist: torch row skipped (Debian python3-torch not installed)');
    return null;
  }
  const out = execFileSync('/usr/bin/python3', ['bench/peers/torch_fmnist.py', 'bench', `--batches=${reps}`, `--batch=${BATCH}`], {
    cwd: root, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2' },
  });
  const r = JSON.parse(out.trim().split('\n').pop()!);
  return { suite: 'fmnist', backend: 'torch', ...r, name: NAME } as Row;
}

export const fmnist: Suite & { optIn: boolean } = {
  name: 'fmnist',
  description: 'Fashion-MNIST dwsnet train step (batch 128) and seconds per epoch: cpu, cpu-jit vs PyTorch (opt-in: --suite fmnist)',
  optIn: true,
  async run({ filter, quick }) {
    const reps = quick ? 3 : 10;
    const rows: Row[] = [];
    for (const backend of ['cpu', 'cpu-jit'] as const) {
      if (!matches(filter, 'fmnist', NAME, backend, 'train-step')) continue;
      const r = await engineRow(backend, reps);
      rows.push(r);
    }
    if (matches(filter, 'fmnist', NAME, 'torch', 'train-step')) {
      const t = torchRow(reps);
      if (t) rows.push(t);
    }
    const torch = rows.find((r) => r.backend === 'torch');
    for (const r of rows) {
      if (r.params !== undefined && torch && r.params !== torch.params) throw new Error(`fmnist: ${r.backend} built ${r.params} parameters but PyTorch ${torch.params}`);
      const ratio = torch && r !== torch ? `, ${(r.medianMs / torch.medianMs).toFixed(2)}× torch` : '';
      const cpuRatio = torch && r !== torch ? `, ${((r.cpuMsPerStep as number) / (torch.cpuMsPerStep as number)).toFixed(2)}× torch` : '';
      console.error(`# fmnist: ${r.backend}: ${(r.secondsPerEpoch as number).toFixed(0)} s/epoch (extrapolated from ${r.samples} steps of ${r.medianMs.toFixed(0)} ms${ratio}); CPU ${(r.cpuMsPerStep as number).toFixed(0)} ms/step${cpuRatio}; ${r.params} parameters`);
    }
    return rows;
  },
};
