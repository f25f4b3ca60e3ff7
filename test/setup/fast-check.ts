/** Every test file's property tests use the run's seed (see seed.ts). */
import fc from 'fast-check';

const seed = Number(process.env.FC_SEED);
if (Number.isInteger(seed)) fc.configureGlobal({ ...fc.readConfigureGlobal(), seed });
