#!/usr/bin/env node
// Derives studio.json from Docker's default seccomp profile (docker-default.json, a verbatim copy of
// moby's profiles/seccomp/default.json). Every difference is made here and explained in README.md, so the
// profile stays "Docker's default, minus a documented list" and can be re-derived when upstream changes.
//
//   node infra/seccomp/generate.mjs           rewrite studio.json
//   node infra/seccomp/generate.mjs --check   exit 1 when studio.json is stale or breaks an invariant
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const upstreamPath = join(here, 'docker-default.json');
const outputPath = join(here, 'studio.json');

/** Never allowed, whatever capabilities a sandbox is given (README.md says why, one by one). */
const DENIED_FOR_EVERYONE = [
  // namespaces and mounts: the way into most container escapes
  'unshare',
  'setns',
  'mount',
  'umount',
  'umount2',
  'pivot_root',
  'fsopen',
  'fsconfig',
  'fsmount',
  'fspick',
  'move_mount',
  'open_tree',
  'mount_setattr',
  // tracing and reading or writing another process's memory or descriptors
  'ptrace',
  'process_vm_readv',
  'process_vm_writev',
  'process_madvise',
  'pidfd_getfd',
  'kcmp',
  // kernel keyring: not namespaced
  'keyctl',
  'add_key',
  'request_key',
  // large kernel attack surfaces that sandboxed code does not need
  'userfaultfd',
  'bpf',
  'perf_event_open',
  'io_uring_setup',
  'io_uring_enter',
  'io_uring_register',
  'kexec_load',
  'kexec_file_load',
  // file handles: the "shocker" escape
  'open_by_handle_at',
  'name_to_handle_at',
];

/** personality(2) values still allowed: PER_LINUX and the 0xffffffff query. */
const PERSONALITY_ALLOWED = [0, 4294967295];

/** Native architectures whose 32-bit compatibility ABIs are dropped from the filter. */
const NO_SUBARCHITECTURES = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64'];

/** @param {any} upstream Docker's default profile, parsed. @returns {any} Studio's profile. */
function derive(upstream) {
  const profile = structuredClone(upstream);
  const denied = new Set(DENIED_FOR_EVERYONE);

  for (const arch of profile.archMap) {
    if (NO_SUBARCHITECTURES.includes(arch.architecture)) arch.subArchitectures = null;
  }

  const rules = [];
  for (const rule of profile.syscalls) {
    const isPersonality = rule.names.length === 1 && rule.names[0] === 'personality';
    if (isPersonality && !PERSONALITY_ALLOWED.includes(rule.args?.[0]?.value)) continue;

    if (rule.action === 'SCMP_ACT_ALLOW') {
      rule.names = rule.names.filter((name) => !denied.has(name));
      // CAP_SYS_ADMIN would otherwise bring back clone() with namespace flags and an allowed clone3().
      if (rule.includes?.caps?.includes('CAP_SYS_ADMIN')) {
        rule.names = rule.names.filter((name) => name !== 'clone' && name !== 'clone3');
      }
      if (rule.names.length === 0) continue;
    }
    // The namespace-flag check on clone() and the ENOSYS answer to clone3() hold with or without caps.
    if (rule.names.includes('clone') || rule.names.includes('clone3')) dropCapsCondition(rule);
    rules.push(rule);
  }
  profile.syscalls = rules;
  return profile;
}

/** Removes a rule's `excludes.caps`, keeping its other conditions. */
function dropCapsCondition(rule) {
  if (!rule.excludes?.caps) return;
  delete rule.excludes.caps;
  if (Object.keys(rule.excludes).length === 0) delete rule.excludes;
}

/** @returns {string[]} every broken invariant of a derived profile. */
function violations(profile) {
  const problems = [];
  const denied = new Set(DENIED_FOR_EVERYONE);
  if (profile.defaultAction !== 'SCMP_ACT_ERRNO') problems.push('defaultAction must be SCMP_ACT_ERRNO');
  for (const rule of profile.syscalls) {
    if (rule.action === 'SCMP_ACT_ALLOW') {
      for (const name of rule.names) {
        if (denied.has(name))
          problems.push(`${name} is allowed by a rule (${JSON.stringify(rule.includes ?? {})})`);
      }
      if (rule.names.includes('clone3')) problems.push('clone3 is allowed (it cannot be filtered by flags)');
      if (rule.names.includes('clone') && !rule.args?.length)
        problems.push('clone is allowed without flag check');
    }
    if (rule.names.includes('clone') || rule.names.includes('clone3')) {
      if (rule.excludes?.caps) problems.push('a clone/clone3 rule still depends on capabilities');
    }
    if (rule.names.includes('personality') && !PERSONALITY_ALLOWED.includes(rule.args?.[0]?.value)) {
      problems.push(`personality(${rule.args?.[0]?.value}) is allowed`);
    }
  }
  return problems;
}

const upstream = JSON.parse(readFileSync(upstreamPath, 'utf8'));
const derived = derive(upstream);
const problems = violations(derived);
if (problems.length > 0) {
  console.error(`studio.json would break its invariants:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}

if (process.argv.includes('--check')) {
  const current = JSON.parse(readFileSync(outputPath, 'utf8'));
  if (!isDeepStrictEqual(current, derived)) {
    console.error('infra/seccomp/studio.json is stale: run node infra/seccomp/generate.mjs');
    process.exit(1);
  }
  console.log('infra/seccomp/studio.json is up to date');
} else {
  writeFileSync(outputPath, `${JSON.stringify(derived, null, 2)}\n`);
  console.log(`wrote ${outputPath}`);
}
