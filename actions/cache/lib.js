/**
 * Helpers shared by main.js (restore) and post.js (save) of the runcache
 * cache action: reading inputs and state the way the runner passes them,
 * writing workflow commands and file commands, choosing the runcache binary
 * (the `runcache-path` and `version` inputs, as restore-cache does) and
 * running it. Node built-ins only: the action runs from a checkout, with no
 * npm install and no bundling.
 */
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');

/** An input the action refuses; main.js fails the step with its message. */
class InputError extends Error {}

/** Input `name` as the runner passes it: env INPUT_<NAME>, trimmed. */
function input(name) {
  const value = process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] || '';
  return value.trim();
}

/**
 * A multi-line input, read as restore-cache and save-cache read it: each
 * line trimmed, `!  x` becomes `!x`, empty lines dropped. Each line is one
 * argument; nothing is globbed, split or expanded here.
 */
function lines(name) {
  return input(name)
    .split('\n')
    .map((line) => line.trim())
    .map((line) => (line.startsWith('!') ? '!' + line.slice(1).trimStart() : line))
    .filter((line) => line !== '');
}

/** A boolean input: true/True/TRUE, false/False/FALSE or empty; else refused. */
function boolean(name) {
  const value = input(name);
  if (['true', 'True', 'TRUE'].includes(value)) return true;
  if (['false', 'False', 'FALSE', ''].includes(value)) return false;
  throw new InputError(`Input ${name} must be true or false, not '${value}'`);
}

/** The `key` input: required, one line. */
function key() {
  const value = input('key');
  if (value === '' || value.includes('\n')) {
    throw new InputError('Input required and not supplied: key (one line)');
  }
  return value;
}

/** State saved by main.js, which the runner gives post.js as STATE_<name>. */
function state(name) {
  return process.env[`STATE_${name}`] || '';
}

// Workflow commands (`::warning::…`) on stdout, escaped as @actions/core does.
function command(kind, message) {
  const data = String(message).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  process.stdout.write(`::${kind}::${data}\n`);
}
const warning = (message) => command('warning', message);
const error = (message) => command('error', message);
const notice = (message) => command('notice', message);
const info = (message) => process.stdout.write(`${message}\n`);

/**
 * Appends `name` = `value` to the file command file in env `fileVar`
 * (GITHUB_OUTPUT, GITHUB_STATE) in the `name<<DELIM` form, which holds any
 * value. Returns false when the runner gave no such file.
 */
function fileCommand(fileVar, name, value) {
  const file = process.env[fileVar];
  if (!file) return false;
  const delim = `ghadelimiter_${crypto.randomUUID()}`;
  fs.appendFileSync(file, `${name}<<${delim}\n${value}\n${delim}\n`);
  return true;
}

/** Saves state for post.js; warns once when the runner gives no GITHUB_STATE. */
function saveState(name, value) {
  if (!fileCommand('GITHUB_STATE', name, value) && !saveState.warned) {
    saveState.warned = true;
    warning('GITHUB_STATE is not set: the post step cannot tell what was restored and will save');
  }
}

/** `bin args…` for the log, quoted where a shell would need it. */
function shown(bin, args) {
  const quote = (s) => (/^[\w@%+=:,./~-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return [bin, ...args].map(quote).join(' ');
}

/**
 * Runs `bin args…` synchronously, stderr to the log; stdout to the log too,
 * or captured with `capture`. Returns { status, stdout, error }: `error` set
 * when it could not start (e.g. ENOENT), `status` 1 when a signal ended it.
 */
function run(bin, args, { capture = false } = {}) {
  info(`[command]${shown(bin, args)}`);
  const r = spawnSync(bin, args, {
    stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
    encoding: 'utf8',
  });
  return { status: r.status === null ? 1 : r.status, stdout: r.stdout || '', error: r.error };
}

const isExecutable = (file) => {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
};

/**
 * The runcache to run, as restore-cache's install step chooses it:
 * `runcache-path`, else `runcache` on PATH; with `version`, that version,
 * installed with `cargo install` under $RUNNER_TOOL_CACHE when the one found
 * reports another, and added to GITHUB_PATH for later steps. An install
 * problem is a warning: running the returned path then fails to start,
 * which the callers report as "runcache not found".
 */
function runcacheBinary() {
  const bin = input('runcache-path') || 'runcache';
  const want = input('version');
  if (!want) return bin;
  const found = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  const have = ((found.stdout || '').trim().split(/\s+/)[1]) || '';
  if (have === want) return bin;
  const base = process.env.RUNNER_TOOL_CACHE || process.env.RUNNER_TEMP || os.tmpdir();
  const root = path.join(base, 'runcache', want);
  const installed = path.join(root, 'bin', 'runcache');
  if (!isExecutable(installed)) {
    const git = process.env.RUNCACHE_INSTALL_GIT;
    const src = git ? ['--git', git, '--tag', `v${want}`, 'runcache'] : [`runcache@${want}`];
    const r = run('cargo', ['install', '--locked', '--root', root, ...src]);
    if (r.error) {
      warning(`runcache ${want} is wanted (found: ${have || 'none'}) and cargo is not available to install it; install runcache on the runner image or drop the version input`);
    } else if (r.status !== 0) {
      warning(`installing runcache ${want} with cargo failed; see the log above`);
    }
  }
  if (isExecutable(installed) && process.env.GITHUB_PATH) {
    fs.appendFileSync(process.env.GITHUB_PATH, `${path.dirname(installed)}\n`);
  }
  return installed;
}

module.exports = {
  InputError, input, lines, boolean, key, state,
  warning, error, notice, info, fileCommand, saveState, run, runcacheBinary,
};
