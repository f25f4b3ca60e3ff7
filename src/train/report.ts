/**
 * Progress output: a cli-progress bar per epoch (images/s, ETA, running loss) on a terminal, one
 * summary line per epoch always; `--quiet` (or output that is not a terminal) keeps only the lines.
 */
import cliProgress from 'cli-progress';

export interface Reporter {
  /** A new phase ('train' or 'val') of `total` images. */
  start(label: string, total: number): void;
  /** `done` images so far; `loss` the running mean loss (train) or null. */
  update(done: number, loss: number | null): void;
  stop(): void;
  /** A line of output (summaries, notices). */
  line(text: string): void;
  warn(text: string): void;
}

const fmtSecs = (s: number): string => {
  if (!Number.isFinite(s)) return '--';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
};

/** A reporter writing to the given streams; a bar only when `bar` is set and the stream is a TTY. */
export function consoleReporter(opts: { quiet: boolean; out?: NodeJS.WriteStream; err?: NodeJS.WriteStream }): Reporter {
  const out = opts.out ?? process.stdout;
  const err = opts.err ?? process.stderr;
  const useBar = !opts.quiet && Boolean(err.isTTY);
  let bar: cliProgress.SingleBar | null = null;
  let t0 = 0;
  let total = 0;
  let label = '';
  return {
    start(l, n) {
      label = l;
      total = n;
      t0 = performance.now();
      if (!useBar) return;
      bar = new cliProgress.SingleBar(
        {
          stream: err,
          format: '{label} |{bar}| {value}/{total} img | {rate} img/s | ETA {eta_h} | loss {loss}',
          barsize: 28,
          hideCursor: true,
          clearOnComplete: true,
          etaBuffer: 50,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(n, 0, { label: l, rate: '--', eta_h: '--', loss: '--' });
    },
    update(done, loss) {
      if (!bar) return;
      const secs = (performance.now() - t0) / 1000;
      const rate = done / Math.max(secs, 1e-9);
      bar.update(done, {
        label,
        rate: rate.toFixed(rate < 10 ? 2 : 1),
        eta_h: fmtSecs((total - done) / Math.max(rate, 1e-9)),
        loss: loss === null ? '--' : loss.toFixed(4),
      });
    },
    stop() {
      bar?.stop();
      bar = null;
    },
    line(text) {
      out.write(`${text}\n`);
    },
    warn(text) {
      err.write(`warning: ${text}\n`);
    },
  };
}

/** A reporter that records lines (tests). */
export function memoryReporter(): Reporter & { readonly lines: string[] } {
  const lines: string[] = [];
  return { lines, start() {}, update() {}, stop() {}, line: (t) => void lines.push(t), warn: (t) => void lines.push(`warning: ${t}`) };
}
