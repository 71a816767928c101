/**
 * Tests the runcache cache action (actions/cache/) as the runner runs it,
 * against the real runcache binary:
 *
 *   node actions/cache/test.mjs
 *
 * A "job" runs main.js, then (only when main.js succeeded: `post-if:
 * success()`) post.js, each in its own node process with the runner's
 * environment: INPUT_* from the `with:` of the case plus the defaults in
 * action.yml, fresh GITHUB_OUTPUT / GITHUB_STATE / GITHUB_PATH files, and
 * for post.js the STATE_* variables read from the state file main.js wrote.
 * The cache is runcache's local backend in a temporary RUNCACHE_HOME, the
 * workspace a temporary directory with a small tree.
 *
 * The binary: $RUNCACHE_BIN, else target/debug/runcache in the repository
 * (`cargo build -p runcache`). Node built-ins only.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const BIN = path.resolve(repo, process.env.RUNCACHE_BIN || 'target/debug/runcache');
if (!fs.existsSync(BIN)) {
  console.error(`actions/cache/test.mjs: no runcache binary at ${BIN}; build it with \`cargo build -p runcache\` or set RUNCACHE_BIN`);
  process.exit(1);
}

// --- action.yml ---------------------------------------------------------------
// Our action files keep one layout (2-space indents); this reads the input
// names and defaults and the `runs:` keys, nothing more.

function readAction(file) {
  const inputs = {};
  const runs = {};
  let section = '';
  let name = '';
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (/^[a-z]/.test(line)) section = line.replace(/:.*/, '');
    let m;
    if (section === 'inputs' && (m = /^ {2}([A-Za-z][\w-]*):\s*$/.exec(line))) {
      name = m[1];
      inputs[name] = '';
    } else if (section === 'inputs' && (m = /^ {4}default:\s*(.*)$/.exec(line))) {
      inputs[name] = m[1].replace(/^'(.*)'$/, '$1');
    } else if (section === 'runs' && (m = /^ {2}([\w-]+):\s*(.*)$/.exec(line))) {
      runs[m[1]] = m[2];
    }
  }
  return { inputs, runs };
}
const action = readAction(path.join(here, 'action.yml'));

// --- the runner ------------------------------------------------------------------

/** name=value and name<<DELIM … DELIM lines of a file command file. */
function readFileCommands(file) {
  const values = {};
  const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n') : [];
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^=]+?)<<(.+)$/.exec(lines[i]);
    if (heredoc) {
      const value = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) value.push(lines[i]);
      values[heredoc[1]] = value.join('\n');
    } else if (lines[i].includes('=')) {
      const at = lines[i].indexOf('=');
      values[lines[i].slice(0, at)] = lines[i].slice(at + 1);
    }
  }
  return values;
}

const roots = [];
after(() => roots.forEach((root) => fs.rmSync(root, { recursive: true, force: true })));

/** A fresh cache, workspace and runner directory, with the small tree. */
function sandbox() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'runcache-action-'));
  roots.push(root);
  const sb = {
    root,
    cache: path.join(root, 'runcache-home'),
    ws: path.join(root, 'workspace'),
    home: path.join(root, 'home'),
    steps: 0,
  };
  fs.mkdirSync(sb.home);
  writeTree(sb);
  return sb;
}

const TREE = {
  'deps/a.txt': 'alpha\n',
  'deps/sub/b.txt': 'beta\n',
  'deps/skip.log': 'not cached\n',
  'other dir/c.txt': 'gamma\n',
};
// One pattern per line, with the blank lines, padding and `!  ` of real
// workflows: the action must pass deps, other dir and !deps/*.log.
const PATHS = 'deps\n  other dir  \n\n!  deps/*.log\n';

function writeTree(sb) {
  for (const [file, text] of Object.entries(TREE)) {
    fs.mkdirSync(path.dirname(path.join(sb.ws, file)), { recursive: true });
    fs.writeFileSync(path.join(sb.ws, file), text);
  }
}
function clearTree(sb) {
  for (const dir of ['deps', 'other dir']) fs.rmSync(path.join(sb.ws, dir), { recursive: true, force: true });
}
/** relative path → contents of every file under the workspace. */
function snapshot(dir, prefix = '') {
  const files = {};
  for (const entry of fs.readdirSync(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = path.join(prefix, entry.name);
    if (entry.isDirectory()) Object.assign(files, snapshot(dir, rel));
    else files[rel] = fs.readFileSync(path.join(dir, rel), 'utf8');
  }
  return files;
}

/** The environment the runner gives a step of a job in `sb`. */
function stepEnv(sb, job, extra) {
  return {
    PATH: process.env.PATH,
    HOME: sb.home,
    LANG: 'C.UTF-8',
    GITHUB_ACTIONS: 'true',
    GITHUB_REPOSITORY: 'acme/app',
    GITHUB_REF: 'refs/heads/main',
    GITHUB_EVENT_NAME: 'push',
    GITHUB_WORKSPACE: sb.ws,
    RUNCACHE_HOME: sb.cache,
    RUNNER_TEMP: job.temp,
    RUNNER_TOOL_CACHE: path.join(sb.root, 'tool-cache'),
    GITHUB_PATH: job.githubPath,
    ...extra,
  };
}

/** Runs actions/cache/SCRIPT as a step: INPUT_* with defaults, STATE_*. */
function step(sb, job, script, inputs, state, extraEnv) {
  const n = ++sb.steps;
  const files = {
    GITHUB_OUTPUT: path.join(sb.root, `output-${n}`),
    GITHUB_STATE: path.join(sb.root, `state-${n}`),
  };
  for (const file of Object.values(files)) fs.writeFileSync(file, '');
  for (const name of Object.keys(inputs)) assert.ok(name in action.inputs, `undeclared input ${name}`);
  const env = stepEnv(sb, job, { ...files, ...extraEnv });
  for (const [name, value] of Object.entries({ ...action.inputs, ...inputs })) {
    env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value;
  }
  for (const [name, value] of Object.entries(state)) env[`STATE_${name}`] = value;
  const r = spawnSync(process.execPath, [path.join(here, script)], { cwd: sb.ws, env, encoding: 'utf8' });
  return {
    status: r.status,
    log: r.stdout + r.stderr,
    outputs: readFileCommands(files.GITHUB_OUTPUT),
    state: readFileCommands(files.GITHUB_STATE),
  };
}

/**
 * A job using the action: main.js, then BETWEEN (the job's other steps),
 * then post.js only when main.js succeeded. ENV adds to every step's.
 */
function job(sb, inputs, { between, env = {} } = {}) {
  const temp = fs.mkdtempSync(path.join(sb.root, 'runner-temp-'));
  const j = { temp, githubPath: `${temp}.github_path` };
  fs.writeFileSync(j.githubPath, '');
  const main = step(sb, j, action.runs.main, inputs, {}, env);
  if (main.status !== 0) return { main, post: null, githubPath: fs.readFileSync(j.githubPath, 'utf8') };
  if (between) between();
  const post = step(sb, j, action.runs.post, inputs, main.state, env);
  return { main, post, githubPath: fs.readFileSync(j.githubPath, 'utf8') };
}

/** Asks the binary directly whether KEY is stored for PATHS. */
function stored(sb, key) {
  const args = ['restore', '--lookup-only', '--json', '--key', key, '--path', 'deps', '--path', 'other dir', '--path', '!deps/*.log'];
  const r = spawnSync(BIN, args, {
    cwd: sb.ws,
    env: stepEnv(sb, { temp: fs.mkdtempSync(path.join(sb.root, 'lookup-')), githubPath: '' }, {}),
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout).cacheHit === 'true';
}

const RUNCACHE = { 'runcache-path': BIN };
const cached = { ...TREE };
delete cached['deps/skip.log'];

// --- action.yml ------------------------------------------------------------------

test('action.yml: a node20 action with a post step on success and the actions/cache inputs', () => {
  assert.deepEqual(action.runs, { using: 'node20', main: 'main.js', post: 'post.js', 'post-if': 'success()' });
  const actionsCache = ['path', 'key', 'restore-keys', 'upload-chunk-size', 'enableCrossOsArchive', 'fail-on-cache-miss', 'lookup-only'];
  const ours = [
    ...Object.keys(readAction(path.join(here, '../restore-cache/action.yml')).inputs),
    ...Object.keys(readAction(path.join(here, '../save-cache/action.yml')).inputs),
  ];
  for (const name of [...actionsCache, ...ours]) assert.ok(name in action.inputs, `input ${name} missing`);
  // Every input the scripts read is declared (a typo would read '').
  for (const script of ['main.js', 'post.js', 'lib.js']) {
    const text = fs.readFileSync(path.join(here, script), 'utf8');
    for (const m of text.matchAll(/\b(?:input|lines|boolean)\('([\w-]+)'\)/g)) {
      assert.ok(m[1] in action.inputs, `${script} reads undeclared input ${m[1]}`);
    }
  }
});

// --- the cases ---------------------------------------------------------------------

test('first run: a miss, then the post step saves', () => {
  const sb = sandbox();
  const { main, post } = job(sb, { ...RUNCACHE, key: 'deps-v1', path: PATHS });
  assert.equal(main.status, 0, main.log);
  // As actions/cache@v4, a miss leaves cache-hit empty (actions/cache#1466);
  // workflows test `!= 'true'`.
  assert.deepEqual(main.outputs, { 'cache-hit': '', 'cache-primary-key': 'deps-v1', 'cache-matched-key': '' });
  assert.match(main.log, /Cache not found for input keys: deps-v1/);
  assert.equal(main.state.key, 'deps-v1');
  assert.equal(main.state['cache-hit'], '');
  assert.equal(main.state.runcache, BIN);
  assert.equal(post.status, 0, post.log);
  assert.match(post.log, /Cache saved with key: deps-v1/);
  assert.doesNotMatch(post.log, /::(warning|error)/);
  assert.ok(stored(sb, 'deps-v1'), 'deps-v1 is stored');
});

test('second run with the same key: an exact hit restores the files and the post step does not save', () => {
  const sb = sandbox();
  const inputs = { ...RUNCACHE, key: 'deps-v1', path: PATHS };
  assert.equal(job(sb, inputs).post.status, 0);
  clearTree(sb);
  assert.deepEqual(snapshot(sb.ws), {});
  const { main, post } = job(sb, inputs);
  assert.equal(main.status, 0, main.log);
  assert.deepEqual(main.outputs, { 'cache-hit': 'true', 'cache-primary-key': 'deps-v1', 'cache-matched-key': 'deps-v1' });
  assert.equal(main.state['cache-hit'], 'true');
  assert.deepEqual(snapshot(sb.ws), cached, 'the files come back byte for byte, deps/*.log excluded');
  assert.equal(post.status, 0, post.log);
  assert.match(post.log, /Cache hit occurred on the primary key deps-v1, not saving cache\./);
  assert.doesNotMatch(post.log, /\[command\]/, 'runcache save did not run');
});

test('a restore-key prefix hit: cache-hit false, the matched key set, the post step saves the new key', () => {
  const sb = sandbox();
  assert.equal(job(sb, { ...RUNCACHE, key: 'deps-v1', path: PATHS }).post.status, 0);
  clearTree(sb);
  const inputs = { ...RUNCACHE, key: 'deps-v2', 'restore-keys': '\n  deps-\n\n', path: PATHS };
  const { main, post } = job(sb, inputs, {
    // The job's build: brings the restored files up to date.
    between: () => {
      assert.deepEqual(snapshot(sb.ws), cached, 'deps-v1 restored');
      fs.writeFileSync(path.join(sb.ws, 'deps/new.txt'), 'delta\n');
    },
  });
  assert.equal(main.status, 0, main.log);
  assert.deepEqual(main.outputs, { 'cache-hit': 'false', 'cache-primary-key': 'deps-v2', 'cache-matched-key': 'deps-v1' });
  assert.match(main.log, /Cache restored from key: deps-v1/);
  assert.equal(post.status, 0, post.log);
  assert.match(post.log, /Cache saved with key: deps-v2/);
  // The next run restores deps-v2 exactly, with what the build added.
  clearTree(sb);
  const next = job(sb, { ...RUNCACHE, key: 'deps-v2', path: PATHS });
  assert.equal(next.main.outputs['cache-hit'], 'true');
  assert.deepEqual(snapshot(sb.ws), { ...cached, 'deps/new.txt': 'delta\n' });
});

test('a failed save in the post step is a warning and exits 0', () => {
  const sb = sandbox();
  const { main, post } = job(sb, { ...RUNCACHE, key: 'nothing-v1', path: 'does-not-exist' });
  assert.equal(main.status, 0, main.log);
  assert.equal(main.outputs['cache-hit'], '');
  assert.equal(post.status, 0, post.log);
  assert.match(post.log, /^::warning[^:]*::save failed, the build goes on without saving `nothing-v1`/m);
  assert.doesNotMatch(post.log, /::error/, 'a green job shows no error annotation');
  assert.doesNotMatch(post.log, /Cache saved/);
});

test('no runcache: a warning and a miss in main, a warning in post, the job goes on', () => {
  const sb = sandbox();
  const missing = path.join(sb.root, 'nowhere/runcache');
  const { main, post } = job(sb, { 'runcache-path': missing, key: 'deps-v1', path: PATHS });
  assert.equal(main.status, 0, main.log);
  assert.match(main.log, /^::warning::runcache not found \(.*nowhere\/runcache\).*continuing without cache$/m);
  assert.deepEqual(main.outputs, { 'cache-hit': '', 'cache-primary-key': 'deps-v1', 'cache-matched-key': '' });
  assert.equal(post.status, 0, post.log);
  assert.match(post.log, /^::warning::runcache not found .*cache not saved$/m);
});

test('runcache restore failing (here: a trust level it refuses) is a warning and a miss', () => {
  const sb = sandbox();
  const { main, post } = job(sb, { ...RUNCACHE, key: 'deps-v1', path: PATHS, trust: 'bogus' });
  assert.equal(main.status, 0, main.log);
  assert.match(main.log, /^::warning::runcache restore failed \(exit 2\); continuing without cache$/m);
  assert.deepEqual(main.outputs, { 'cache-hit': '', 'cache-primary-key': 'deps-v1', 'cache-matched-key': '' });
  assert.match(post.log, /Cache saved with key: deps-v1/);
});

test('fail-on-cache-miss with no entry fails the step with an error annotation; post does not run', () => {
  const sb = sandbox();
  const { main, post } = job(sb, { ...RUNCACHE, key: 'deps-v1', path: PATHS, 'fail-on-cache-miss': 'true' });
  assert.notEqual(main.status, 0, main.log);
  assert.match(main.log, /^::error\b.*deps-v1.*fail-on-cache-miss/m);
  assert.equal(main.outputs['cache-hit'], '');
  assert.equal(post, null);
  assert.ok(!stored(sb, 'deps-v1'));
  // Without runcache it fails the same way, with actions/cache's message.
  const none = job(sb, { 'runcache-path': path.join(sb.root, 'nowhere/runcache'), key: 'k', path: PATHS, 'fail-on-cache-miss': 'TRUE' });
  assert.equal(none.main.status, 1);
  assert.match(none.main.log, /^::error::Failed to restore cache entry\. Exiting as fail-on-cache-miss is set\. Input key: k$/m);
});

test('lookup-only: a hit downloads nothing and post does not save', () => {
  const sb = sandbox();
  assert.equal(job(sb, { ...RUNCACHE, key: 'deps-v1', path: PATHS }).post.status, 0);
  clearTree(sb);
  const { main, post } = job(sb, { ...RUNCACHE, key: 'deps-v1', path: PATHS, 'lookup-only': 'true' });
  assert.equal(main.status, 0, main.log);
  assert.equal(main.outputs['cache-hit'], 'true');
  assert.match(main.log, /Cache found and can be restored from key: deps-v1/);
  assert.deepEqual(snapshot(sb.ws), {}, 'nothing downloaded');
  assert.match(post.log, /not saving cache/);
});

test('a refused input fails main before runcache runs', () => {
  const sb = sandbox();
  const bad = job(sb, { ...RUNCACHE, key: 'k', path: PATHS, 'lookup-only': 'yes' });
  assert.equal(bad.main.status, 1);
  assert.match(bad.main.log, /^::error::Input lookup-only must be true or false, not 'yes'$/m);
  assert.doesNotMatch(bad.main.log, /\[command\]/);
  const nokey = job(sb, { ...RUNCACHE, key: '  ', path: PATHS });
  assert.equal(nokey.main.status, 1);
  assert.match(nokey.main.log, /^::error::Input required and not supplied: key/m);
  const nopath = job(sb, { ...RUNCACHE, key: 'k', path: '\n  \n' });
  assert.equal(nopath.main.status, 1);
  assert.match(nopath.main.log, /^::error::Input required and not supplied: path$/m);
});

test('version: the binary found is used when it reports that version; another one without cargo is a warning', () => {
  const sb = sandbox();
  const version = spawnSync(BIN, ['--version'], { encoding: 'utf8' }).stdout.trim().split(/\s+/)[1];
  const same = job(sb, { ...RUNCACHE, version, key: 'deps-v1', path: PATHS });
  assert.equal(same.main.state.runcache, BIN);
  assert.match(same.post.log, /Cache saved with key: deps-v1/);
  assert.equal(same.githubPath, '');
  // Another version, and no cargo on PATH to install it.
  const emptyPath = fs.mkdtempSync(path.join(sb.root, 'path-'));
  const other = job(sb, { ...RUNCACHE, version: '0.0.0-other', key: 'deps-v1', path: PATHS }, { env: { PATH: emptyPath } });
  assert.equal(other.main.status, 0, other.main.log);
  assert.match(other.main.log, /^::warning::runcache 0\.0\.0-other is wanted \(found: .+\) and cargo is not available/m);
  assert.match(other.main.log, /^::warning::runcache not found/m);
  assert.equal(other.main.state.runcache, path.join(sb.root, 'tool-cache/runcache/0.0.0-other/bin/runcache'));
  assert.equal(other.main.outputs['cache-hit'], '');
  assert.equal(other.post.status, 0);
  assert.match(other.post.log, /^::warning::runcache not found .*cache not saved$/m);
});
