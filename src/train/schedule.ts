/**
 * Learning-rate schedules as pure functions of the position in training (epoch, step within the
 * epoch): no state to save, so a resumed run gets the same rate by recomputing it.
 */

export type ScheduleName = 'exponential' | 'cosine' | 'onecycle' | 'constant';
export const scheduleNames: readonly ScheduleName[] = ['exponential', 'cosine', 'onecycle', 'constant'];

export interface ScheduleConfig {
  readonly name: ScheduleName;
  /** The base (peak) learning rate. */
  readonly lr: number;
  readonly epochs: number;
  readonly stepsPerEpoch: number;
  /**
   * exponential: epochs at the base rate before the decay starts (the paper: 15);
   * cosine: epochs of linear warm-up from 0; ignored by onecycle and constant.
   */
  readonly warmupEpochs?: number;
  /** exponential: factor per epoch after the warm-up (the paper: 0.9). */
  readonly decay?: number;
  /** cosine: the final rate (default 0). */
  readonly minLr?: number;
  /** onecycle: fraction of the steps spent rising (PyTorch's pct_start, default 0.3). */
  readonly pctStart?: number;
  /** onecycle: start = lr / divFactor (default 25), end = start / finalDivFactor (default 1e4). */
  readonly divFactor?: number;
  readonly finalDivFactor?: number;
}

const cosAnneal = (start: number, end: number, pct: number) => end + ((start - end) / 2) * (1 + Math.cos(Math.PI * pct));

export function validateSchedule(c: ScheduleConfig): void {
  const bad = (m: string) => {
    throw new Error(`schedule '${c.name}': ${m}`);
  };
  if (!scheduleNames.includes(c.name)) bad(`unknown schedule (${scheduleNames.join(', ')})`);
  if (!(c.lr > 0) || !Number.isFinite(c.lr)) bad(`lr must be a positive number, got ${c.lr}`);
  if (!Number.isInteger(c.epochs) || c.epochs < 1) bad(`epochs must be an integer ≥ 1, got ${c.epochs}`);
  if (!Number.isInteger(c.stepsPerEpoch) || c.stepsPerEpoch < 1) bad(`stepsPerEpoch must be an integer ≥ 1, got ${c.stepsPerEpoch}`);
  if ((c.warmupEpochs ?? 0) < 0) bad(`warmupEpochs must be ≥ 0, got ${c.warmupEpochs}`);
  if (c.decay !== undefined && !(c.decay > 0 && c.decay <= 1)) bad(`decay must be in (0, 1], got ${c.decay}`);
}

/**
 * The learning rate for step `step` (0-based, within the epoch) of epoch `epoch` (0-based).
 * - constant: lr.
 * - exponential (the paper): lr for the first `warmupEpochs` epochs, then × decay per epoch:
 *   lr · decay^max(0, epoch − warmupEpochs + 1).
 * - cosine: linear warm-up over `warmupEpochs` (per step), then half a cosine down to minLr.
 * - onecycle: PyTorch's OneCycleLR (two phases, cosine annealing) over all steps.
 * @example learningRate({ name: 'exponential', lr: 1e-3, epochs: 60, stepsPerEpoch: 1, warmupEpochs: 15, decay: 0.9 }, 15, 0) // 9e-4
 */
export function learningRate(c: ScheduleConfig, epoch: number, step = 0): number {
  const total = c.epochs * c.stepsPerEpoch;
  const t = epoch * c.stepsPerEpoch + step; // global step
  switch (c.name) {
    case 'constant':
      return c.lr;
    case 'exponential': {
      const w = c.warmupEpochs ?? 15;
      return c.lr * (c.decay ?? 0.9) ** Math.max(0, epoch - w + 1);
    }
    case 'cosine': {
      const warm = Math.round((c.warmupEpochs ?? 0) * c.stepsPerEpoch);
      const min = c.minLr ?? 0;
      if (t < warm) return (c.lr * (t + 1)) / warm;
      const span = Math.max(1, total - warm);
      return cosAnneal(c.lr, min, Math.min(1, (t - warm) / span));
    }
    case 'onecycle': {
      const pct = c.pctStart ?? 0.3;
      const start = c.lr / (c.divFactor ?? 25);
      const end = start / (c.finalDivFactor ?? 1e4);
      const up = pct * total - 1;
      const down = total - 1;
      if (t <= up) return cosAnneal(start, c.lr, up <= 0 ? 1 : t / up);
      return cosAnneal(c.lr, end, Math.min(1, (t - up) / (down - up)));
    }
    default:
      throw new Error(`learningRate: unknown schedule '${c.name as string}' (${scheduleNames.join(', ')})`);
  }
}
