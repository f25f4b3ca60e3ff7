/**
 * Command-line options as data: each command declares its options once, as a table of entries
 * (flag, help, parser, default), and its commander program, its `--help` text and its parsed,
 * validated values are all made from that table, so they cannot drift apart. Options several
 * commands take are declared once (src/cli/shared.ts) and spread into each table.
 */
import { Command, Option as CommanderOption } from 'commander';
import { EXIT, UsageExit, cliMain, parseArgs, program } from './program.ts';

// ---- parsers: a string to a value, or a ParseError saying what the value must be ------------------

export class ParseError extends Error {}
export const fail = (m: string): never => {
  throw new ParseError(m);
};

export const int = (min: number, max = Infinity) => (s: string): number => {
  const n = Number(s);
  if (s.trim() === '' || !Number.isInteger(n) || n < min || n > max) fail(max < Infinity ? `must be an integer from ${min} to ${max}` : `must be an integer ≥ ${min}`);
  return n;
};
export const num = (lo: number, hi = Infinity, openLo = false) => (s: string): number => {
  const n = Number(s);
  if (s.trim() === '' || !Number.isFinite(n) || n < lo || (openLo && n === lo) || n > hi) {
    fail(`must be a number ${openLo ? '>' : '≥'} ${lo}${hi < Infinity ? ` and ≤ ${hi}` : ''}`);
  }
  return n;
};
export const oneOf = <T extends string>(xs: readonly T[]) => (s: string): T => (xs.includes(s as T) ? (s as T) : fail(`must be one of ${xs.join(', ')}`));
export const orNone = <T>(p: (s: string) => T) => (s: string): T | null => (s === 'none' || s === 'null' ? null : p(s));
export const str = (s: string): string => (s.trim() === '' ? fail('must not be empty') : s);
export const bool = (s: string): boolean => (s === 'true' ? true : s === 'false' ? false : fail('must be true or false'));

// ---- the table entry -----------------------------------------------------------------------------

/**
 * One command-line option: everything the parser and `--help` know of it. Declare a table's
 * entries as object literals (`satisfies Options`): the type of each parsed value is then inferred
 * from the entry's parser and default.
 */
export interface Option {
  /** e.g. '--img-size <px>'; a boolean flag has no value ('--quiet', or '--no-augment' for a default of true). */
  readonly flags: string;
  readonly help: string;
  /** Parses one command-line value (a repeatable flag: one occurrence); throws ParseError. */
  readonly parse: (s: string) => unknown;
  /** The value when the flag is not given (null: none, or derived elsewhere; then `derived` says from what). */
  readonly default: unknown;
  /** What a null (or empty) default stands for, as --help shows it (e.g. "the training run's"). */
  readonly derived?: string;
  /** The command fails without it; --help says "required" instead of a default. */
  readonly required?: boolean;
  /** May be given several times; the value is the list (the default an empty one). */
  readonly repeatable?: boolean;
  readonly boolean?: boolean;
}

export type Options = Readonly<Record<string, Option>>;

/** The value type of an entry: what its parser returns, a list of that for a repeatable one, or null where the default is null. */
type ValueOf<O> = O extends { parse: (s: string) => infer V; default: infer D }
  ? O extends { repeatable: true } ? V[] : O extends { required: true } ? V : V | (D extends null ? null : never)
  : never;
/** The parsed values of a table: each option's parsed value, its default when not given. */
export type Values<T extends Options> = { -readonly [K in keyof T]: ValueOf<T[K]> };

/** How a value reads in --help. */
export const showValue = (v: unknown): string => (v === null ? 'none' : v === true ? 'on' : v === false ? 'off' : Array.isArray(v) ? v.join(', ') : String(v));

/** The "(default: …)" text of an option in --help: its default, or what a null default stands for. */
export function shownDefault(o: Option): string {
  const unset = o.default === null || (Array.isArray(o.default) && o.default.length === 0);
  return unset ? (o.derived ?? 'none') : showValue(o.default);
}

/** The --help text of an option: its help, then its default (or that it is required). */
export const helpLine = (o: Option, shown: (o: Option) => string = shownDefault): string => `${o.help} (${o.required ? 'required' : `default: ${shown(o)}`})`;

/** The flag itself, e.g. '--img-size' (a negated boolean as its positive spelling, for messages). */
export const flagName = (o: Option): string => o.flags.split(' ')[0].replace('--no-', '--');

/** One raw value through an option's parser; the message of a bad one names the flag and the value. */
export function parseOption(o: Option, raw: string, where = ''): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: o.parse(raw) };
  } catch (e) {
    if (e instanceof ParseError) return { ok: false, message: `invalid value '${raw}' for ${flagName(o)}${where}: ${e.message}` };
    throw e;
  }
}

// ---- commands ------------------------------------------------------------------------------------

export interface CommandSpec<T extends Options> {
  readonly name: string;
  readonly description: string;
  readonly options: T;
  /** Positional arguments: [syntax, help], e.g. ['<images...>', 'image files']. */
  readonly args?: readonly (readonly [string, string])[];
  /** Text after the option list in --help. */
  readonly after?: string;
  /** An option's --help text (default `helpLine`). */
  readonly helpLine?: (o: Option) => string;
}

/** A command's spec as written, its option table's types kept (what `commandMain` and the parsed values are typed from). */
export const defineCommand = <T extends Options>(spec: CommandSpec<T>): CommandSpec<T> => spec;

/** The commander program of a command: one commander option per table entry, its help text from the entry. */
export function command<T extends Options>(spec: CommandSpec<T>): Command {
  const cmd = program(spec.name, spec.description);
  for (const [syntax, help] of spec.args ?? []) cmd.argument(syntax, help);
  for (const [key, o] of Object.entries(spec.options)) {
    const opt = new CommanderOption(o.flags, (spec.helpLine ?? helpLine)(o));
    if (opt.attributeName() !== key) throw new Error(`${spec.name}: option ${o.flags} must have the key '${opt.attributeName()}', not '${key}'`);
    if (o.repeatable) opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    if (o.required) opt.makeOptionMandatory();
    cmd.addOption(opt);
  }
  if (spec.after) cmd.addHelpText('after', spec.after);
  return cmd;
}

export interface Parsed<T extends Options> {
  /** Every option: the parsed value given, else the default. */
  readonly values: Values<T>;
  /** Only the options given on the command line. */
  readonly given: Partial<Values<T>>;
  /** The positional arguments. */
  readonly args: string[];
}

/**
 * Parses the user's arguments with a command's table: null after --help (printed); a usage error
 * (unknown flag, missing required option, bad value naming its flag) is thrown as UsageExit.
 */
export function parseOptions<T extends Options>(spec: CommandSpec<T>, argv: readonly string[]): Parsed<T> | null {
  const cmd = parseArgs(command(spec), argv);
  if (!cmd) return null;
  const raw = cmd.opts() as Record<string, unknown>;
  const given: Record<string, unknown> = {};
  const values: Record<string, unknown> = {};
  for (const [key, o] of Object.entries(spec.options)) {
    if (cmd.getOptionValueSource(key) === 'cli') given[key] = o.boolean ? raw[key] : o.repeatable ? (raw[key] as string[]).map((s) => valueOf(o, s)) : valueOf(o, String(raw[key]));
    values[key] = key in given ? given[key] : o.default;
  }
  return { values: values as Values<T>, given: given as Partial<Values<T>>, args: cmd.args };
}

const valueOf = (o: Option, raw: string): unknown => {
  const r = parseOption(o, raw);
  if (!r.ok) throw new UsageExit(r.message);
  return r.value;
};

/**
 * A command's main from its spec: the arguments parsed with its table (exit 0 after --help), then
 * `body` with them; a UsageExit thrown anywhere is printed as a usage error (exit 2).
 */
export const commandMain = <T extends Options>(spec: CommandSpec<T>, body: (parsed: Parsed<T>, argv: readonly string[]) => Promise<number>) =>
  cliMain(spec.name, async (argv) => {
    const parsed = parseOptions(spec, argv);
    return parsed ? body(parsed, argv) : EXIT.ok;
  });
