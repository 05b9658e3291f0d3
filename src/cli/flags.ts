// Kube-style flags for every command (issue #20), applied once to the whole program:
// - Booleans take `--flag`, `--flag=true` and `--flag=false` (any value Go's strconv.ParseBool
//   accepts: 1 t T TRUE true True, 0 f F FALSE false False), as kube-apiserver's pflag flags do;
//   `--flag value` does not consume `value`, as in pflag. Each boolean also gets a hidden `--no-flag`
//   (what `--flag=false` becomes), so a false on the command line beats a true from the environment.
// - Every flag has an ATREST_* environment variable: the one a command names, else ATREST_ and the
//   long name in upper snake case (`--dry-run` → ATREST_DRY_RUN). A boolean's variable is parsed
//   like its `=value` (commander alone would take any value, even `false`, as true).
// - Help: one format for every option's details, `(one of: a, b; default: x; env: ATREST_X)`,
//   wrapped to the terminal width (80 columns off a terminal); a flag too long for two columns gets
//   its description on the lines below, as in kubectl's help.
import type { EventEmitter } from 'node:events';
import { Command, Help, InvalidArgumentError, Option } from 'commander';
import { nanosToMillis, parseGoDuration } from '../config/go-duration.js';
import { messageOf } from '../errors.js';

const TRUE_WORDS: ReadonlySet<string> = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE_WORDS: ReadonlySet<string> = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** Go's strconv.ParseBool; undefined for anything else. */
export function parseBool(value: string): boolean | undefined {
  if (TRUE_WORDS.has(value)) return true;
  if (FALSE_WORDS.has(value)) return false;
  return undefined;
}

/**
 * An argParser for a Go duration flag (`15s`, `1m30s`: time.ParseDuration's forms), in milliseconds.
 * A value that does not parse is refused with Go's words after `prefix`; a parsed one with what
 * `refuse` says of it (undefined: taken).
 */
export function goDurationArg(refuse: (ms: number) => string | undefined, prefix = ''): (value: string) => number {
  return (value) => {
    let ms: number;
    try {
      ms = nanosToMillis(parseGoDuration(value));
    } catch (err) {
      throw new InvalidArgumentError(`${prefix}${messageOf(err)}`);
    }
    const refusal = refuse(ms);
    if (refusal !== undefined) throw new InvalidArgumentError(refusal);
    return ms;
  };
}

/** `--dry-run` → `ATREST_DRY_RUN`. */
export function envVarName(option: Option): string {
  return `ATREST_${(option.long ?? option.short ?? '').replace(/^-+/, '').replace(/^no-/, '').replace(/-/g, '_').toUpperCase()}`;
}

/** A flag without a value (not `--no-x`, not `--help`/`--version`). */
export function isBooleanFlag(option: Option): boolean {
  return option.isBoolean() && option.long !== '--version' && option.long !== '--help';
}

function isExempt(cmd: Command, option: Option): boolean {
  return option.negate || option.long === '--help' || (cmd.parent === null && option.long === '--version');
}

/** A value for help: bare unless empty or spaced (then JSON-quoted); lists joined with commas. */
function shown(value: unknown): string {
  if (Array.isArray(value)) return value.map(shown).join(',');
  const s = String(value);
  return s === '' || /\s/.test(s) ? JSON.stringify(s) : s;
}

/** The one help renderer of every command. */
class AtrestHelp extends Help {
  override optionDescription(option: Option): string {
    const details: string[] = [];
    if (option.argChoices) details.push(`one of: ${option.argChoices.join(', ')}`);
    if (option.defaultValueDescription !== undefined) details.push(`default: ${option.defaultValueDescription}`);
    else if (option.defaultValue !== undefined && option.defaultValue !== false) details.push(`default: ${shown(option.defaultValue)}`);
    if (option.envVar !== undefined) details.push(`env: ${option.envVar}`);
    return details.length === 0 ? option.description : `${option.description} (${details.join('; ')})`;
  }

  /**
   * Long terms (serve's flags) would leave commander too narrow a column, and it then stops
   * wrapping: put the description under the term instead, indented, as kubectl's help does.
   */
  override formatItem(term: string, termWidth: number, description: string, helper: Help): string {
    const width = this.helpWidth ?? 80;
    if (!description || width - termWidth - 4 >= this.minWidthToWrap) return super.formatItem(term, termWidth, description, helper);
    const indent = ' '.repeat(8);
    return `  ${term}\n${indent}${helper.boxWrap(description, width - indent.length).replace(/\n/g, `\n${indent}`)}`;
  }
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

/**
 * Gives every option its environment variable and every boolean its `--no-` form, and installs the
 * help renderer and the boolean environment parsing. Call once, after every command is registered.
 */
export function configureKubeFlags(program: Command): Command {
  for (const cmd of allCommands(program)) {
    cmd.createHelp = () => Object.assign(new AtrestHelp(), cmd.configureHelp());
    for (const option of [...cmd.options]) {
      if (isExempt(cmd, option)) continue;
      if (option.envVar === undefined) giveEnvVar(cmd, option, envVarName(option));
      if (isBooleanFlag(option) && !cmd.options.some((o) => o.negate && o.attributeName() === option.attributeName())) {
        cmd.addOption(new Option(`--no-${(option.long ?? '').slice(2)}`).hideHelp());
      }
    }
  }
  program.hook('preAction', (_hooked, action) => {
    for (let cmd: Command | null = action; cmd; cmd = cmd.parent) parseBooleanEnv(cmd);
  });
  return program;
}

/**
 * Sets an option's environment variable after it was added: commander listens for a variable only
 * on options that had one when added, so the option is added again (same place, same listeners).
 */
function giveEnvVar(cmd: Command, option: Option, name: string): void {
  // commander's own list and events (a Command is an EventEmitter; its typings say neither).
  const options = cmd.options as Option[];
  const index = options.indexOf(option);
  options.splice(index, 1);
  (cmd as unknown as EventEmitter).removeAllListeners(`option:${option.name()}`);
  option.env(name);
  cmd.addOption(option);
  options.splice(options.indexOf(option), 1);
  options.splice(index, 0, option);
}

/** Boolean options set from their environment variable: parse the value like `--flag=value`. */
function parseBooleanEnv(cmd: Command): void {
  for (const option of cmd.options) {
    if (!isBooleanFlag(option) || option.envVar === undefined) continue;
    const key = option.attributeName();
    if (cmd.getOptionValueSource(key) !== 'env') continue;
    const raw = process.env[option.envVar] ?? '';
    const value = parseBool(raw);
    if (value === undefined) {
      cmd.error(`error: environment variable ${option.envVar}=${JSON.stringify(raw)} for ${option.long ?? ''} is not a boolean (true or false)`, { exitCode: 2, code: 'atrest.invalidEnv' });
    }
    cmd.setOptionValueWithSource(key, value, 'env');
  }
}

/**
 * Rewrites `--flag=true|false` of boolean flags into `--flag` / `--no-flag` before commander parses
 * (commander takes `--flag=x` only for flags with a value). Follows the subcommands named on the
 * command line to know which flags are booleans; stops at `--`. A value that is not a boolean is a
 * usage error in pflag's words.
 */
export function kubeArgv(program: Command, argv: readonly string[]): string[] {
  const out = argv.slice(0, 2);
  let cmd = program;
  let rest = false;
  for (const arg of argv.slice(2)) {
    if (rest || arg === '--') {
      rest = true;
      out.push(arg);
      continue;
    }
    const m = /^(--[^=]+)=(.*)$/s.exec(arg);
    if (m) {
      const [, long, raw] = m as unknown as [string, string, string];
      if (findBoolean(cmd, long)) {
        const value = parseBool(raw);
        // pflag's words for a bad boolean
        if (value === undefined) cmd.error(`error: invalid argument ${JSON.stringify(raw)} for ${JSON.stringify(long)} flag: strconv.ParseBool: parsing ${JSON.stringify(raw)}: invalid syntax`, { exitCode: 2, code: 'atrest.invalidBoolean' });
        out.push(value ? long : `--no-${long.slice(2)}`);
        continue;
      }
    } else if (!arg.startsWith('-')) {
      const sub = cmd.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
      if (sub) cmd = sub;
    }
    out.push(arg);
  }
  return out;
}

function findBoolean(cmd: Command, long: string): Option | undefined {
  for (let c: Command | null = cmd; c; c = c.parent) {
    const option = c.options.find((o) => o.long === long);
    if (option) return isBooleanFlag(option) ? option : undefined;
  }
  return undefined;
}
