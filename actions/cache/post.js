/**
 * Post step of the runcache cache action: at the end of a successful job
 * (`post-if: success()` in action.yml), `runcache save --key … --path …`,
 * unless main.js restored the key exactly (cache-hit == 'true'), as
 * actions/cache skips saving on an exact hit.
 *
 * The key and the runcache binary come from the state main.js saved
 * (STATE_key, STATE_runcache), `path` from the inputs, which the runner
 * passes to the post step again. Nothing here fails the job: a failed or
 * impossible save is a `::warning::` and exit 0, as in save-cache (never an
 * `::error::`: a green job must show no error).
 */
'use strict';

const lib = require('./lib.js');

function post() {
  const key = lib.state('key') || lib.input('key');
  if (!key || key.includes('\n')) {
    lib.warning('Key is not specified; cache not saved');
    return;
  }
  if (lib.state('cache-hit') === 'true') {
    lib.info(`Cache hit occurred on the primary key ${key}, not saving cache.`);
    return;
  }
  const paths = lib.lines('path');
  if (paths.length === 0) {
    lib.warning('Input path is empty; cache not saved');
    return;
  }
  if (lib.input('upload-chunk-size')) {
    lib.notice("upload-chunk-size is ignored: runcache's backend decides how uploads are split");
  }
  // --best-effort: runcache warns about a failed save itself and exits 0;
  // its JSON document (runcache.save) says the save happened.
  const args = ['save', '--best-effort', '--json', '--key', key];
  for (const p of paths) args.push('--path', p);

  const bin = lib.state('runcache') || lib.input('runcache-path') || 'runcache';
  const r = lib.run(bin, args, { capture: true });
  let report = null;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    // No document: the save did not happen (runcache said why on stderr).
  }
  if (r.error) {
    lib.warning(`runcache not found (${bin}): install it on the runner or set the runcache-path or version input; cache not saved`);
  } else if (r.status !== 0) {
    lib.warning(`runcache save failed (exit ${r.status}); the build goes on without saving ${key}`);
  } else if (report && report.schema === 'runcache.save') {
    lib.info(report.status === 'already-cached'
      ? `Cache already exists with key: ${key}; nothing uploaded`
      : `Cache saved with key: ${key}`);
  } else {
    lib.info(`Cache not saved: ${key}`);
  }
}

try {
  post();
} catch (e) {
  // Whatever goes wrong here, the job's result stands.
  lib.warning(`runcache cache post step: ${e && e.message}`);
}
process.exitCode = 0;
