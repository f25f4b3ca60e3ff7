/** The option table is the one source: --help, the defaults, the synthetic run's values and the paper preset all come from it. */
import { describe, expect, it } from 'vitest';
import * as E from 'fp-ts/lib/Either.js';
import { DEFAULTS, FLAGS, PAPER_PRESET, SYNTHETIC_DEFAULTS, flagOf, helpLine, parseValue, resolveConfig, showValue, shownDefault } from '../../src/train/config.ts';
import { trainCommand } from '../../src/train/cli.ts';

const resolved = (cli: Parameters<typeof resolveConfig>[0]) => {
  const r = resolveConfig(cli);
  if (E.isLeft(r)) throw new Error(r.left.message);
  return r.right;
};
const squash = (s: string) => s.replace(/\s+/g, ' ');

describe('the option table', () => {
  it('--help shows every option with the help and default of its table entry', () => {
    const help = squash(trainCommand().helpInformation());
    for (const f of FLAGS) expect(help).toContain(`${f.flags} ${squash(helpLine(f))}`);
    expect(shownDefault(FLAGS.find((f) => f.key === 'epochs')!)).toBe('60; 6 on the synthetic set');
    expect(shownDefault(FLAGS.find((f) => f.key === 'momentum')!)).toBe('0 (--optimizer sgd: 0.9)');
    expect(shownDefault(FLAGS.find((f) => f.key === 'imgSize')!)).toBe("the model's, 224 for b0; 32 on the synthetic set; 224 with --preset paper");
  });

  it('each default shown is the value a run gets', () => {
    const withData = resolved({ data: ['d'] });
    const noData = resolved({});
    for (const f of FLAGS) {
      if (f.key === 'data') continue;
      const shown = shownDefault(f);
      if (f.default !== null) expect(shown.startsWith(showValue(f.default)), f.key).toBe(true);
      expect(withData[f.key], f.key).toEqual(f.key === 'microBatch' ? Math.min(DEFAULTS.microBatch, DEFAULTS.batchSize) : f.default);
      expect(noData[f.key], f.key).toEqual(f.synthetic !== undefined ? f.synthetic : f.default);
      if (f.synthetic !== undefined) expect(shown, f.key).toContain(`${showValue(f.synthetic)} on the synthetic set`);
    }
    expect(Object.keys(SYNTHETIC_DEFAULTS).sort()).toEqual(['augment', 'baseline', 'batchSize', 'bnMomentum', 'depthMult', 'epochs', 'hrSize', 'imgSize', 'microBatch', 'optimizer', 'schedule', 'warmupEpochs', 'widthMult']);
  });

  it('--preset paper pins its settings (also over the synthetic defaults); flags and dependent defaults layer on top', () => {
    const p = resolved({ preset: 'paper' });
    for (const [k, v] of Object.entries(PAPER_PRESET)) expect(p[k as keyof typeof p], k).toEqual(v);
    expect(Object.keys(PAPER_PRESET)).toHaveLength(17);
    expect(resolved({ preset: 'paper', lr: 0.5 }).lr).toBe(0.5);
    expect(resolved({ data: ['d'], optimizer: 'sgd' }).momentum).toBe(0.9);
    expect(resolved({ data: ['d'], preset: 'paper', optimizer: 'sgd' }).momentum).toBe(0); // the preset pins it
    expect(resolved({ data: ['d'], task: 'multiclass' }).loss).toBe('ce');
  });

  it('a bad value names its flag', () => {
    for (const f of FLAGS) {
      let bad: string | null = null;
      for (const v of ['', 'x!', '-1']) {
        try {
          f.parse(v);
        } catch {
          bad = v;
          break;
        }
      }
      if (bad === null) continue; // any string is a valid value (file names, model names)
      const r = parseValue(f.key, bad);
      expect(E.isLeft(r) && r.left.message, f.key).toContain(`for ${flagOf(f.key)}`);
    }
  });
});
