#!/usr/bin/env node
// Real-client harness: drives the UNMODIFIED npm `@actions/cache` library
// (version pinned in package.json) against a cache server, for Rust tests.
//
//   node client.mjs save <key> <path>...
//   node client.mjs restore <primaryKey> [--restore-keys k1,k2] [--lookup-only] [--] <path>...
//
// Configuration comes solely from the environment, exactly as on a runner:
//   ACTIONS_CACHE_SERVICE_V2 (any non-empty value => v2/Twirp), ACTIONS_RESULTS_URL,
//   ACTIONS_CACHE_URL (v1), ACTIONS_RUNTIME_TOKEN, GITHUB_SERVER_URL (a non
//   github.com / *.ghe.com / *.localhost host forces v1), RUNNER_TEMP (archive
//   temp dir; the library falls back to /home/actions/temp), RUNNER_DEBUG=1.
// The only default invented here: GITHUB_WORKSPACE falls back to cwd.
//
// stdout carries exactly one line: `RESULT {json}`. Everything the library
// prints (@actions/core workflow commands, tar/zstd output) goes to stderr;
// `::debug::` lines are dropped unless RUNNER_DEBUG=1, like on a runner.
// Exit code is 0 whenever the RESULT line was printed, 2 on usage errors.

import process from 'node:process';

const realStdoutWrite = process.stdout.write.bind(process.stdout);
const realStderrWrite = process.stderr.write.bind(process.stderr);
const showDebug = process.env.RUNNER_DEBUG === '1';

const warnings = [];
const errors = [];
// ReserveCacheError ("another job may be creating this cache") is reported by
// the library through core.info, not core.warning, so collect those too.
const failures = [];

// Workflow command values are escaped by @actions/core (toCommandValue/escapeData).
function unescapeData(s) {
  return s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');
}

let pending = '';
function captureLine(line) {
  const m = /^::(warning|error)(?: [^:]*)?::(.*)$/.exec(line);
  if (m) {
    (m[1] === 'warning' ? warnings : errors).push(unescapeData(m[2]));
  } else if (/^(Failed to (save|restore):|Cache reservation failed:)/.test(line)) {
    failures.push(line);
  }
  if (!showDebug && line.startsWith('::debug::')) return;
  realStderrWrite(line + '\n');
}

process.stdout.write = (chunk, encoding, cb) => {
  if (typeof encoding === 'function') {
    cb = encoding;
    encoding = undefined;
  }
  const text = Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk);
  pending += text;
  let idx;
  while ((idx = pending.indexOf('\n')) >= 0) {
    captureLine(pending.slice(0, idx).replace(/\r$/, ''));
    pending = pending.slice(idx + 1);
  }
  if (cb) cb();
  return true;
};

function flushPending() {
  if (pending) {
    captureLine(pending);
    pending = '';
  }
}

function emit(result) {
  flushPending();
  const line = 'RESULT ' + JSON.stringify({ ...result, warnings, errors, failures }) + '\n';
  realStdoutWrite(line, () => process.exit(0));
}

function usage(msg) {
  realStderrWrite(
    (msg ? `client.mjs: ${msg}\n` : '') +
      'usage: node client.mjs save <key> <path>...\n' +
      '       node client.mjs restore <primaryKey> [--restore-keys k1,k2] [--lookup-only] [--] <path>...\n'
  );
  process.exit(2);
}

const [op, key, ...rest] = process.argv.slice(2);
if (op !== 'save' && op !== 'restore') usage(`unknown or missing operation: ${op ?? ''}`);
if (key === undefined) usage('missing key');

if (process.env.GITHUB_WORKSPACE === undefined) {
  process.env.GITHUB_WORKSPACE = process.cwd();
}

let restoreKeys = [];
let lookupOnly = false;
const paths = [];
if (op === 'save') {
  paths.push(...rest);
} else {
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--') {
      paths.push(...rest.slice(i + 1));
      break;
    } else if (a === '--restore-keys') {
      if (i + 1 >= rest.length) usage('--restore-keys needs a value');
      restoreKeys = rest[++i].split(',').filter((k) => k.length > 0);
    } else if (a.startsWith('--restore-keys=')) {
      restoreKeys = a.slice('--restore-keys='.length).split(',').filter((k) => k.length > 0);
    } else if (a === '--lookup-only') {
      lookupOnly = true;
    } else {
      paths.push(a);
    }
  }
}

// Loaded after the stdout hook so nothing the library prints escapes it.
let cache;
try {
  cache = await import('@actions/cache');
} catch (e) {
  realStderrWrite(
    `client.mjs: cannot load @actions/cache (${e && e.message}); run install.sh first\n`
  );
  process.exit(3);
}

function errFields(e) {
  if (!e) return { error: null, errorName: null };
  return { error: String(e.message ?? e), errorName: e.name ?? null };
}

process.on('unhandledRejection', (e) => {
  emit({ op, ...(op === 'save' ? { cacheId: null } : { matchedKey: null }), ...errFields(e), unhandled: true });
});

if (op === 'save') {
  try {
    const cacheId = await cache.saveCache(paths, key);
    emit({ op: 'save', cacheId: typeof cacheId === 'number' ? cacheId : null, error: null, errorName: null });
  } catch (e) {
    emit({ op: 'save', cacheId: null, ...errFields(e) });
  }
} else {
  try {
    const matched = await cache.restoreCache(paths, key, restoreKeys, { lookupOnly });
    emit({ op: 'restore', matchedKey: matched ?? null, error: null, errorName: null });
  } catch (e) {
    emit({ op: 'restore', matchedKey: null, ...errFields(e) });
  }
}
