/**
 * One fast-check seed per `vitest run`: fresh each run (so property tests explore new cases),
 * printed once, and replayable with `FC_SEED=<seed> npx vitest run …`. The global setup runs in the
 * main process before the test forks start, so they inherit FC_SEED from its environment.
 */
export default function setup(): void {
  const given = process.env.FC_SEED;
  if (given !== undefined && !/^-?\d+$/.test(given)) throw new Error(`FC_SEED must be an integer, got '${given}'`);
  const seed = given ?? String((Date.now() ^ Math.floor(Math.random() * 2 ** 31)) | 0);
  process.env.FC_SEED = seed;
  console.log(`fast-check seed: FC_SEED=${seed}${given ? ' (given)' : ' (fresh; set FC_SEED to replay)'}`);
}
