// Issue #20 §4: kube-style flags for every command. Walks every command's options: each has an
// ATREST_* variable (the README promises one for every flag), help shows details the same way
// everywhere, and every boolean takes `--flag`, `--flag=true|false` (pflag's ParseBool words) and its
// variable as true/false, a false on the command line beating a true from the environment. Then, as
// a user runs them: a typo'd flag exits 2 for every command, `atrest version` / `--version`, and
// `serve --encryption-provider-config-automatic-reload=true` is taken (it used to be refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CommanderError, type Command, type Option } from 'commander';
import { buildProgram } from '../../src/cli/main.js';
import { isBooleanFlag, kubeArgv } from '../../src/cli/flags.js';
import { repoRoot, runCli } from '../helpers/cli.js';

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

function pathOf(cmd: Command): string[] {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names;
}

/** The program with every action replaced by one that records the parsed options, and quiet errors. */
function capturingProgram(): { program: Command; parsed: () => Record<string, unknown> | undefined } {
  const program = buildProgram();
  let last: Record<string, unknown> | undefined;
  for (const cmd of allCommands(program)) {
    cmd.configureOutput({ writeOut: () => undefined, writeErr: () => undefined, outputError: () => undefined });
    // Commands with subcommands too (kms-plugin serves with its own flags), not the program itself.
    if (cmd.parent !== null) cmd.action(() => { last = cmd.optsWithGlobals(); });
  }
  return { program, parsed: () => last };
}

async function parse(argv: string[], env: Record<string, string> = {}): Promise<Record<string, unknown> | CommanderError> {
  const saved = { ...process.env };
  Object.assign(process.env, { ATREST_ENCRYPTION_PROVIDER_CONFIG: '/dev/null' }, env);
  try {
    const { program, parsed } = capturingProgram();
    await program.parseAsync(kubeArgv(program, ['node', 'atrest', ...argv]));
    return parsed() ?? {};
  } catch (err) {
    if (err instanceof CommanderError) return err;
    throw err;
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

const visible = (cmd: Command): Option[] => cmd.options.filter((o) => !o.hidden && o.long !== '--help' && !(cmd.parent === null && o.long === '--version'));

test('every flag of every command has an ATREST_* variable, one per flag, and help shows details the same way', () => {
  const program = buildProgram();
  let flags = 0;
  for (const cmd of allCommands(program)) {
    const help = cmd.createHelp();
    const seen = new Map<string, string>();
    for (const option of visible(cmd)) {
      flags++;
      const where = `${['atrest', ...pathOf(cmd)].join(' ')} ${option.flags}`;
      assert.match(option.envVar ?? '', /^ATREST_[A-Z0-9_]+$/, where);
      assert.equal(seen.get(option.envVar!), undefined, `${where}: ${option.envVar} is also ${seen.get(option.envVar!)}`);
      seen.set(option.envVar!, option.flags);
      // Defaults only through the helper (kube's feature-gate list has its own `default=` words).
      assert.doesNotMatch(option.description.replace(/default=/g, ''), /\bdefault\b(?!\/)/i, `${where}: a default in the description text`);
      const text = help.optionDescription(option);
      assert.ok(text.endsWith(`env: ${option.envVar})`), `${where}: ${text}`);
      if (option.defaultValue !== undefined && option.defaultValue !== false) assert.match(text, /\(.*default: [^;]+; env: /, `${where}: ${text}`);
    }
  }
  assert.ok(flags > 80, `walked ${flags} flags`);
  // The decrypt flags the README promised and it lacked.
  const decrypt = program.commands.find((c) => c.name() === 'decrypt')!;
  for (const long of ['--data-dir', '--etcd-servers']) assert.ok(decrypt.options.find((o) => o.long === long)?.envVar?.startsWith('ATREST_'), long);
});

test('help: every line of every command wraps at 80 columns; the checking tools list their exit codes 0-3', () => {
  for (const cmd of allCommands(buildProgram())) {
    const help = cmd.helpInformation();
    const where = ['atrest', ...pathOf(cmd)].join(' ');
    for (const line of help.split('\n')) assert.ok(line.length <= 80, `${where}: ${line.length} columns: ${line}`);
  }
  const program = buildProgram();
  for (const name of ['verify', 'status', 'rewrite', 'decrypt']) {
    const cmd = program.commands.find((c) => c.name() === name)!;
    let after = '';
    cmd.configureOutput({ writeOut: (str) => { after += str; } });
    cmd.outputHelp();
    assert.match(after, /\nExit codes:\n {2}0 {2}.+\n {2}1 {2}.+\n(?: {5}.+\n)* {2}2 {2}.+\n(?: {5}.+\n)* {2}3 {2}/, `${name}:\n${after}`);
  }
});

test('every boolean flag: --flag, --flag=true|false, its variable as true/false; the command line beats the environment', async () => {
  const program = buildProgram();
  const booleans = allCommands(program).flatMap((cmd) => cmd.options.filter((o) => isBooleanFlag(o) && !(cmd.parent === null)).map((o) => ({ cmd, o })));
  assert.ok(booleans.length >= 5, booleans.map((b) => b.o.long).join(' '));
  // Booleans that defaulted to true were once an optional value (`--leader-elect [bool]`) and a choice (`--authority-repair on|off`).
  for (const long of ['--leader-elect', '--authority-repair']) assert.ok(booleans.some((b) => b.o.long === long), `${long} is a kube-style boolean`);
  for (const { cmd, o } of booleans) {
    const args = [...pathOf(cmd), ...(cmd.registeredArguments.some((a) => a.required) ? ['/registry/secrets/a/b'] : [])];
    const key = o.attributeName();
    const where = `${pathOf(cmd).join(' ')} ${o.long!}`;
    const value = async (extra: string[], env: Record<string, string> = {}) => {
      const r = await parse([...args, ...extra], env);
      assert.ok(!(r instanceof CommanderError), `${where} ${extra.join(' ')}: ${r instanceof CommanderError ? r.message : ''}`);
      return (r as Record<string, unknown>)[key];
    };
    const dflt = o.defaultValue === true;
    assert.equal(await value([]), dflt ? true : undefined, `${where}: default`);
    assert.equal(await value([o.long!]), true, where);
    for (const t of ['true', 'True', 'TRUE', 't', '1']) assert.equal(await value([`${o.long!}=${t}`]), true, `${where}=${t}`);
    for (const f of ['false', 'False', 'F', '0']) assert.equal(await value([`${o.long!}=${f}`]), false, `${where}=${f}`);
    assert.equal(await value([], { [o.envVar!]: 'true' }), true, `${where} ${o.envVar}=true`);
    assert.equal(await value([], { [o.envVar!]: 'false' }), false, `${where} ${o.envVar}=false`);
    assert.equal(await value([`${o.long!}=false`], { [o.envVar!]: 'true' }), false, `${where}=false beats ${o.envVar}=true`);
    const bad = await parse([...args, `${o.long!}=maybe`]);
    assert.ok(bad instanceof CommanderError && bad.code === 'atrest.invalidBoolean' && bad.exitCode === 2, where);
    const badEnv = await parse(args, { [o.envVar!]: 'maybe' });
    assert.ok(badEnv instanceof CommanderError && badEnv.code === 'atrest.invalidEnv' && badEnv.exitCode === 2, `${where} env`);
  }
  // `--flag value` does not take `value` (pflag): decrypt --prefix before its KEY argument.
  const r = await parse(['decrypt', '--data-dir', '/x', '--prefix', '/registry/secrets/']);
  assert.ok(!(r instanceof CommanderError) && r['prefix'] === true);
  // After `--` nothing is rewritten.
  assert.deepEqual(kubeArgv(program, ['node', 'atrest', 'rewrite', '--', '--dry-run=true']).slice(2), ['rewrite', '--', '--dry-run=true']);
});

test('the built CLI: a typo\'d flag exits 2 for every command; atrest version and --version; a kube-style boolean is taken', async () => {
  const commands = allCommands(buildProgram()).filter((c) => c.parent !== null && c.commands.length === 0).map(pathOf);
  // With the mandatory flags given by their variable, the typo is the one error.
  const typos = await Promise.all(commands.map((path) => runCli([...path, '--no-such-flag'], { env: { ATREST_ENCRYPTION_PROVIDER_CONFIG: '/dev/null', ATREST_KEY: '/registry/secrets/a/b', ATREST_KEY_ID: 'local:v1:0123456789abcdef' } })));
  typos.forEach((r, i) => {
    assert.equal(r.code, 2, `${commands[i]!.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /unknown option '--no-such-flag'/);
  });
  const version = JSON.parse(readFileSync(`${repoRoot}/package.json`, 'utf8')) as { version: string };
  const [text, flag, json] = await Promise.all([runCli(['version']), runCli(['--version']), runCli(['version', '-o', 'json'])]);
  assert.equal(text.code, 0);
  assert.match(text.stdout, new RegExp(`^atrest v${version.version.replace(/\./g, '\\.')} \\(Kubernetes API v1\\.32, node v\\d+`));
  assert.equal(flag.stdout, text.stdout);
  assert.equal((JSON.parse(json.stdout) as { atrestVersion: string }).atrestVersion, `v${version.version}`);
  // Parsed, so serve gets as far as its own check of the flag combination (exit 1, not a usage error).
  const reload = await runCli(['serve', '--encryption-provider-config-automatic-reload=true', '--data-dir', '/nonexistent/atrest']);
  assert.equal(reload.code, 1, reload.stderr);
  assert.match(reload.stderr, /--encryption-provider-config-automatic-reload must be set with --encryption-provider-config/);
  const bad = await runCli(['serve', '--encryption-provider-config-automatic-reload=yes please']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid argument "yes please" for "--encryption-provider-config-automatic-reload" flag: strconv\.ParseBool/);
});
