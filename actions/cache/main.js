/**
 * Main step of the runcache cache action (the drop-in for actions/cache):
 * `runcache restore --key … [--restore-key …] --path … --json`, then the
 * state post.js needs (the runcache binary, the key, cache-hit) to the
 * runner's GITHUB_STATE file.
 *
 * `runcache restore` writes the outputs cache-hit, cache-primary-key and
 * cache-matched-key to $GITHUB_OUTPUT itself and prints its report as JSON
 * (the `runcache.restore` document: `cacheHit`, `cacheMatchedKey`…); this
 * step writes them only when runcache gave none (it did not start, or
 * failed first). A cache problem is a warning and a miss; only
 * `fail-on-cache-miss: true` fails the step when nothing matched, and a
 * refused input (a non-boolean, no key, no path) fails it as it does in
 * restore-cache.
 */
'use strict';

const lib = require('./lib.js');

function main() {
  let args;
  let key;
  let failOnMiss;
  try {
    const lookupOnly = lib.boolean('lookup-only');
    failOnMiss = lib.boolean('fail-on-cache-miss');
    const crossOs = lib.boolean('enableCrossOsArchive');
    key = lib.key();
    const paths = lib.lines('path');
    if (paths.length === 0) throw new lib.InputError('Input required and not supplied: path');
    args = ['restore', '--key', key];
    for (const k of lib.lines('restore-keys')) args.push('--restore-key', k);
    for (const p of paths) args.push('--path', p);
    if (lookupOnly) args.push('--lookup-only');
    if (failOnMiss) args.push('--fail-on-cache-miss');
    if (lib.input('trust')) args.push('--trust', lib.input('trust'));
    args.push('--json');
    if (crossOs) {
      lib.notice('enableCrossOsArchive is ignored: runcache entries are not tied to an OS; put runner.os in the key when they must be');
    }
  } catch (e) {
    if (!(e instanceof lib.InputError)) throw e;
    lib.error(e.message);
    return 1;
  }

  const bin = lib.runcacheBinary();
  // What post.js needs, saved before the restore so that it is there
  // whatever the restore does.
  lib.saveState('runcache', bin);
  lib.saveState('key', key);

  const r = lib.run(bin, args, { capture: true });
  let report = null;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    // runcache did not start, or failed before printing its report.
  }
  const gave = report !== null && typeof report === 'object' && report.schema === 'runcache.restore';
  if (!gave) {
    if (r.error) {
      lib.warning(`runcache not found (${bin}): install it on the runner or set the runcache-path or version input; continuing without cache`);
    } else {
      lib.warning(`runcache restore failed (exit ${r.status}); continuing without cache`);
    }
    const outputs = { 'cache-hit': '', 'cache-primary-key': key, 'cache-matched-key': '' };
    for (const [name, value] of Object.entries(outputs)) lib.fileCommand('GITHUB_OUTPUT', name, value);
    report = {};
  }
  const hit = report.cacheHit || '';
  const matched = report.cacheMatchedKey || '';
  lib.saveState('cache-hit', hit);
  lib.saveState('cache-matched-key', matched);

  if (failOnMiss && matched === '') {
    // runcache annotates its own failure when it ran; say it when it did not.
    if (!gave) {
      lib.error(`Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: ${key}`);
    }
    return r.status || 1;
  }
  if (r.status !== 0 && gave) {
    lib.warning(`runcache restore exited ${r.status}; continuing with the outputs it gave`);
  }
  if (matched) {
    lib.info(`Cache ${args.includes('--lookup-only') ? 'found and can be restored' : 'restored'} from key: ${matched}`);
  } else {
    lib.info(`Cache not found for input keys: ${[key, ...lib.lines('restore-keys')].join(', ')}`);
  }
  return 0;
}

try {
  process.exitCode = main();
} catch (e) {
  // Not a cache miss but a bug or a broken runner: fail only when asked to
  // fail without a cache.
  const failOnMiss = /^true$/i.test(lib.input('fail-on-cache-miss'));
  (failOnMiss ? lib.error : lib.warning)(`runcache cache main step: ${e && e.message}`);
  process.exitCode = failOnMiss ? 1 : 0;
}
