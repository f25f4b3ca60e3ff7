/**
 * The memory plan of the compiled train micro-step at paper sizes, traced on shapes only (nothing
 * is computed): live intermediate bytes per micro-batch size and the largest micro-batch that fits the
 * wasm32 budget (what the trainer picks). Usage: npx tsx scripts/jit-memory.ts [model] [low] [high] [max]
 */
import * as E from '../src/index.ts';
import { MICRO_BATCH_BUDGET_BYTES, fitMicroBatch, microStepArenaBytes } from '../src/train/step.ts';

const [name = 'b0', low = '224', high = '1024', max = '64'] = process.argv.slice(2);
const model = E.nn.createModel(name, { key: E.random.key(0), lowSize: Number(low), highSize: Number(high) });
const spec = { name: 'bce', posWeight: 1, classWeights: null, focalGamma: 2, numClasses: 1 } as const;
const gib = (b: number) => `${(b / 2 ** 30).toFixed(3)} GiB`;
const seen = new Map<number, number>();
const bytesAt = (n: number) => {
  const t = performance.now();
  const b = microStepArenaBytes(model.config, spec, model.params, model.state, n);
  console.log(`${name} ${Object.values(model.config.sides).filter((s) => s !== null).join('+')} micro-batch ${String(n).padStart(3)}: intermediates ${gib(b)} (compiled in ${((performance.now() - t) / 1000).toFixed(1)} s)`);
  seen.set(n, b);
  return b;
};
const n = fitMicroBatch(bytesAt, Number(max));
console.log(`largest micro-batch ≤ ${max} within ${gib(MICRO_BATCH_BUDGET_BYTES)}: ${n}`);
