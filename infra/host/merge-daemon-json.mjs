#!/usr/bin/env node
// Registers runsc with Docker by merging one entry into /etc/docker/daemon.json, keeping every other key
// and every other runtime the operator configured (the file is theirs; we only own runtimes.runsc).
//   node merge-daemon-json.mjs FILE           write the entry if missing or different; prints "changed" or "unchanged"
//   node merge-daemon-json.mjs --check FILE   exit 0 when the entry is in place, 1 otherwise; writes nothing
// Exit 2: FILE is not a JSON object (left untouched, so a hand-edited file is never clobbered).
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

// --network=none: gVisor's own networking fails in a root network namespace on these hosts (see
// RUNTIME-FACTS), and Studio sandboxes have no network by default anyway.
const RUNSC = { path: '/usr/bin/runsc', runtimeArgs: ['--network=none'] };

const args = process.argv.slice(2);
const check = args[0] === '--check';
const file = check ? args[1] : args[0];
if (!file) {
  console.error('usage: merge-daemon-json.mjs [--check] FILE');
  process.exit(2);
}

let config = {};
if (existsSync(file)) {
  const text = readFileSync(file, 'utf8');
  try {
    config = text.trim() === '' ? {} : JSON.parse(text);
  } catch (error) {
    console.error(`${file} is not valid JSON (${error.message}); fix it by hand, then re-run`);
    process.exit(2);
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    console.error(`${file} does not hold a JSON object; fix it by hand, then re-run`);
    process.exit(2);
  }
}

const current = config.runtimes?.runsc;
const same = JSON.stringify(current) === JSON.stringify(RUNSC);
if (check) {
  console.log(same ? 'present' : 'absent');
  process.exit(same ? 0 : 1);
}
if (same) {
  console.log('unchanged');
  process.exit(0);
}
config.runtimes = { ...(config.runtimes ?? {}), runsc: RUNSC };
// Write then rename: dockerd never reads a half-written file.
writeFileSync(`${file}.tmp`, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 });
renameSync(`${file}.tmp`, file);
console.log('changed');
