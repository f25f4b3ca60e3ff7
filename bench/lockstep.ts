/**
 * Two benchmark processes measured in lockstep: each builds and warms up its workload, then they take turns, one
 * timed rep at a time (a, b, a, b, …), so every rep of one has a rep of the other taken right next to it and the
 * per-pair ratios do not depend on how fast the machine happens to be that minute. Each peer stays its own process
 * (its peak RSS and profile are its own) and runs alone: it is started, warmed up and finished while the other waits.
 *
 * The line protocol a peer speaks on stdin/stdout (one JSON object per line; other stdout lines are ignored):
 *   peer → `{"ready": true}` once built and warmed up;
 *   `rep` → peer times one rep and answers `{"ms": <time>}`;
 *   `end` (or stdin closed) → peer finishes (untimed extras such as a profile) and prints its row, then exits 0.
 *
 * A waiting peer must not take CPU from the one measured. Its idle threads block (the engine's pool in
 * Atomics.wait, the event loop on stdin), but runtimes keep working briefly after a turn: libgomp's OpenMP threads
 * spin before they sleep (PyTorch used 4–8 ms of CPU in the 10–25 ms after each B0 16×128 inference on the 2-core
 * dev box, a core taken from our next rep if it started at once; our process, 0–1.5 ms), OpenBLAS's threads yield,
 * V8 finishes concurrent GC. So before each turn the suite waits until the peer that just ran is quiet: none of its
 * threads running or waiting to run (Linux `/proc/PID/task/TID/stat`). Each row reports those waits (`lockstep`:
 * `settleMs` and the CPU used in them, `afterTurnCpuMs`, medians) and the CPU the peer still used while the other
 * ran (`waitingCpuMs`, a total: near zero when the waits work).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { median } from './harness.ts';

export interface PeerSpec {
  /** The name the other peer's row calls it by (`pairedWith`), e.g. 'torch'. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export interface LockstepOptions {
  /** Timed reps of each peer (= pairs). */
  readonly reps: number;
  /** The whole run's limit; on expiry both peers are killed and whatever has not finished reports an error. */
  readonly timeoutMs: number;
  /** Waits until the process `pid` is quiet; resolves to what it waited. Default: `settleCpu`. */
  readonly settle?: (pid: number) => Promise<Settled>;
}

export interface Settled {
  /** Time waited (ms). */
  readonly waitedMs: number;
  /** CPU time the process used during the wait, all its threads (ms). */
  readonly cpuMs: number;
}

export type PeerRow = Record<string, unknown>;
export type PeerResult = PeerRow | { error: string };

export interface LockstepResult {
  /** a's row and b's row: each peer's own final line, plus `pairedWith` and `lockstep` (and on a's, `pairedRatio`). */
  readonly rows: [PeerResult, PeerResult];
  /** a's time ÷ b's time, per pair, in order (empty unless both peers finished every rep). */
  readonly ratios: number[];
}

/** Why a bench child failed: its first 'Error: …' line (tfjs prints pages of minified source before it), else the exit. */
export function failureReason(stderr: string, status: number | null, signal?: string | null): string {
  const why = stderr.split('\n').find((l) => /^\w*Error: /.test(l))?.slice(0, 200);
  return why ?? (signal ? `killed by ${signal}` : `exit ${status}`);
}

/**
 * The threads of `pid`: their CPU time so far (ns, the scheduler's statistics) and how many are running or waiting
 * to run (state R: a spinning thread is, even while other processes keep it off the cores; a blocked one is not).
 * Null where /proc has neither.
 */
export function processThreads(pid: number): { cpuNs: number; runnable: number } | null {
  let cpuNs = 0;
  let runnable = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        cpuNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        if (stat[stat.lastIndexOf(')') + 2] === 'R') runnable++;
      } catch {
        // The thread exited between the listing and the read: its time no longer counts anywhere.
      }
    }
  } catch {
    return null;
  }
  return { cpuNs, runnable };
}

/**
 * Waits until none of `pid`'s threads is running or waiting to run, at two samples 2 ms apart (at most `maxMs`).
 * The state, not the CPU used: a spinning thread that the machine's other load keeps off the cores uses little CPU
 * but takes a core the moment one frees. Without /proc (not Linux), a fixed 100 ms pause: libgomp's default spin
 * (300,000 iterations) and V8's concurrent GC end well within it.
 */
export async function settleCpu(pid: number, maxMs = 1000): Promise<Settled> {
  const t0 = performance.now();
  const first = processThreads(pid);
  if (first === null) {
    await sleep(100);
    return { waitedMs: performance.now() - t0, cpuMs: NaN };
  }
  let last = first;
  for (let quiet = 0; quiet < 2 && performance.now() - t0 < maxMs; ) {
    await sleep(2);
    last = processThreads(pid) ?? last;
    quiet = last.runnable === 0 ? quiet + 1 : 0;
  }
  return { waitedMs: performance.now() - t0, cpuMs: (last.cpuNs - first.cpuNs) / 1e6 };
}

/** One peer process and its stdout as a queue of JSON lines. */
class Peer {
  readonly proc: ChildProcess;
  private readonly lines: PeerRow[] = [];
  private wake: (() => void) | null = null;
  private stderr = '';
  private exited: string | null = null;

  constructor(readonly spec: PeerSpec) {
    this.proc = spawn(spec.command, [...spec.args], { cwd: spec.cwd, env: spec.env, stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout! }).on('line', (l) => {
      if (!l.startsWith('{')) return;
      try {
        this.lines.push(JSON.parse(l));
      } catch {
        return; // not one of the protocol's lines
      }
      this.wake?.();
    });
    this.proc.stderr!.on('data', (d) => {
      if (this.stderr.length < 1 << 20) this.stderr += d;
    });
    // A peer that exits early may not read its stdin any more: writes then fail with EPIPE, reported by `next`.
    this.proc.stdin!.on('error', () => {});
    this.proc.on('error', (e) => this.fail(e.message));
    this.proc.on('close', (code, signal) => this.fail(failureReason(this.stderr, code, signal)));
  }

  private fail(why: string): void {
    this.exited ??= why;
    this.wake?.();
  }

  send(command: 'rep' | 'end'): void {
    if (this.exited === null) this.proc.stdin!.write(`${command}\n`);
  }

  /** The next JSON line, or an error once the process has exited without one, or past `deadline`. */
  async next(deadline: number): Promise<PeerRow> {
    for (;;) {
      const line = this.lines.shift();
      if (line) return line;
      if (this.exited !== null) throw new Error(`${this.spec.name}: ${this.exited}`);
      const left = deadline - performance.now();
      if (left <= 0) {
        this.proc.kill('SIGKILL');
        throw new Error(`${this.spec.name}: timed out`);
      }
      const timer = new AbortController();
      await Promise.race([new Promise<void>((r) => (this.wake = r)), sleep(left, undefined, { signal: timer.signal }).catch(() => {})]);
      timer.abort();
      this.wake = null;
    }
  }

  kill(): void {
    if (this.exited === null) this.proc.kill('SIGKILL');
  }
}

/** What a peer's turns cost the suite: waits for it to go quiet, and the CPU it used while the other was timed. */
interface Turns {
  ms: number[];
  settledMs: number[];
  afterTurnCpuMs: number[];
  waitingCpuMs: number;
}

const newTurns = (): Turns => ({ ms: [], settledMs: [], afterTurnCpuMs: [], waitingCpuMs: 0 });

/** A paired row's `lockstep` field: its reps' times in order, the waits after its turns, its CPU while waiting. */
const turnStats = (t: Turns) => ({
  repMs: t.ms.map((m) => +m.toFixed(2)),
  settleMs: +median(t.settledMs).toFixed(1),
  afterTurnCpuMs: +median(t.afterTurnCpuMs).toFixed(1),
  waitingCpuMs: +t.waitingCpuMs.toFixed(1),
});

async function quiet(peer: Peer, turns: Turns, settle: (pid: number) => Promise<Settled>): Promise<void> {
  if (peer.proc.pid === undefined) return;
  const s = await settle(peer.proc.pid);
  turns.settledMs.push(s.waitedMs);
  turns.afterTurnCpuMs.push(s.cpuMs);
}

/** Starts `spec` and waits for its ready line (a's settle before b starts is the caller's). */
async function start(spec: PeerSpec, deadline: number): Promise<Peer | { error: string }> {
  const p = new Peer(spec);
  try {
    const l = await p.next(deadline);
    if (l.ready !== true) throw new Error(`${spec.name}: expected {"ready": true} first, got ${JSON.stringify(l).slice(0, 100)}`);
    return p;
  } catch (e) {
    p.kill();
    return { error: (e as Error).message };
  }
}

/** One timed rep of `p`, its time appended to `turns.ms`; the other peer's CPU meanwhile is added to its waitingCpuMs. */
async function rep(p: Peer, turns: Turns, other: { peer: Peer; turns: Turns } | null, deadline: number): Promise<void> {
  const c0 = other?.peer.proc.pid !== undefined ? processThreads(other!.peer.proc.pid)?.cpuNs ?? null : null;
  p.send('rep');
  const l = await p.next(deadline);
  const c1 = c0 !== null ? processThreads(other!.peer.proc.pid!)?.cpuNs ?? null : null;
  if (c0 !== null && c1 !== null) other!.turns.waitingCpuMs += (c1 - c0) / 1e6;
  if (typeof l.ms !== 'number') throw new Error(`${p.spec.name}: expected {"ms": …} after 'rep', got ${JSON.stringify(l).slice(0, 100)}`);
  turns.ms.push(l.ms);
}

/** Runs `a` and `b` in lockstep for `opts.reps` pairs; either failing, the other finishes its reps alone. */
export async function lockstep(a: PeerSpec, b: PeerSpec, opts: LockstepOptions): Promise<LockstepResult> {
  const settle = opts.settle ?? ((pid: number) => settleCpu(pid));
  const deadline = performance.now() + opts.timeoutMs;
  const specs = [a, b];
  const turns = [newTurns(), newTurns()];
  const errors: (string | null)[] = [null, null];
  const peers: (Peer | null)[] = [null, null];
  for (const i of [0, 1]) {
    const p = await start(specs[i], deadline);
    if ('error' in p) errors[i] = p.error;
    else {
      peers[i] = p;
      await quiet(p, turns[i], settle);
    }
  }
  for (let k = 0; k < opts.reps; k++) {
    for (const i of [0, 1]) {
      const p = peers[i];
      if (!p) continue;
      const o = peers[1 - i];
      try {
        await rep(p, turns[i], o ? { peer: o, turns: turns[1 - i] } : null, deadline);
        await quiet(p, turns[i], settle);
      } catch (e) {
        errors[i] = (e as Error).message;
        p.kill();
        peers[i] = null;
      }
    }
  }
  const paired = errors.every((e) => e === null);
  const ratios = paired ? turns[0].ms.map((m, k) => m / turns[1].ms[k]) : [];
  const rows: PeerResult[] = [];
  for (const i of [0, 1]) {
    const p = peers[i];
    if (!p) {
      rows.push({ error: errors[i]! });
      continue;
    }
    try {
      p.send('end');
      p.proc.stdin!.end();
      const row = await p.next(deadline);
      rows.push({
        ...row,
        ...(paired ? { pairedWith: specs[1 - i].name, lockstep: turnStats(turns[i]) } : {}),
        ...(paired && i === 0 ? { pairedRatio: median(ratios), pairRatios: ratios.map((r) => +r.toFixed(4)) } : {}),
      });
    } catch (e) {
      p.kill();
      rows.push({ error: (e as Error).message });
    }
  }
  return { rows: rows as [PeerResult, PeerResult], ratios };
}
