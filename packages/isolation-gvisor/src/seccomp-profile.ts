import { readFile } from 'node:fs/promises';
import { IsolationError } from '@studio/isolation';

/** One condition on a syscall argument, as Docker's (and OCI's) seccomp profiles write it. */
export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

/** A rule of a Docker-format seccomp profile (`infra/seccomp/studio.json`). */
export interface SeccompRule {
  names: string[];
  action: string;
  args?: SeccompArg[] | null;
  errnoRet?: number | null;
  includes?: { arches?: string[] | null; caps?: string[] | null; minKernel?: string | null } | null;
  excludes?: { arches?: string[] | null; caps?: string[] | null; minKernel?: string | null } | null;
}

/** A Docker-format seccomp profile. */
export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number | null;
  syscalls: SeccompRule[];
}

/** `linux.seccomp` of an OCI spec, as runsc (`--oci-seccomp`) reads it. */
export interface OciSeccomp {
  defaultAction: string;
  architectures: string[];
  syscalls: Array<{ names: string[]; action: string; args?: SeccompArg[] }>;
}

const ARCH = 'amd64';
const EPERM = 1;
const ENOSYS = 38;
const ACTIONS = new Set([
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_LOG',
]);

/** Options of {@link ociSeccomp}. */
export interface OciSeccompOptions {
  /**
   * The capabilities the sandbox's process holds, which enable the profile's rules that `includes` them, as
   * Docker reads a profile for a container's capabilities. Default none: a session holds none, so a rule granted
   * by a capability never applies. A template build's root passes `DOCKER_DEFAULT_CAPS` (issue 19), which adds
   * `chroot` (CAP_SYS_CHROOT) and nothing else with Studio's profile.
   */
  caps?: readonly string[];
}

/**
 * The Docker backend's seccomp profile as the OCI `linux.seccomp` runsc installs in the sandbox's first
 * process (every process descends from it, so every one runs filtered, `Seccomp: 2`): the rules that apply
 * to an amd64 process with the given capabilities (default none), in Docker's own reading of `includes`/`excludes`.
 *
 * runsc 20240729 ignores `errnoRet` (its OCI spec types predate the field): every `SCMP_ACT_ERRNO` answers
 * EPERM. That keeps every denial a denial, except one: Docker answers `clone3` with ENOSYS so glibc falls
 * back to `clone`, whose flags the filter can inspect; EPERM there makes every thread creation fail. An
 * ENOSYS rule becomes `SCMP_ACT_TRACE`, which the kernel answers with ENOSYS when no tracer is attached,
 * and none can be: `ptrace` is not in the profile, so nothing in the sandbox can trace. A profile that
 * allows `ptrace` is refused rather than silently opening that door. Other errno values become EPERM.
 */
export function ociSeccomp(profile: SeccompProfile, options: OciSeccompOptions = {}): OciSeccomp {
  const caps = options.caps ?? [];
  for (const action of [profile.defaultAction, ...profile.syscalls.map((r) => r.action)]) {
    if (!ACTIONS.has(action)) {
      throw new IsolationError('INVALID_INPUT', `seccomp profile: unsupported action ${action}`);
    }
  }
  const syscalls: OciSeccomp['syscalls'] = [];
  for (const rule of profile.syscalls.filter((r) => applies(r, caps))) {
    const action = ociAction(rule.action, rule.errnoRet ?? profile.defaultErrnoRet);
    syscalls.push({ names: [...rule.names], action, ...(rule.args?.length ? { args: rule.args } : {}) });
  }
  const traced = syscalls.some((r) => r.action === 'SCMP_ACT_TRACE');
  if (traced && syscalls.some((r) => r.action === 'SCMP_ACT_ALLOW' && r.names.includes('ptrace'))) {
    throw new IsolationError(
      'INVALID_INPUT',
      'seccomp profile: allows ptrace and answers a syscall with ENOSYS; runsc can only express ENOSYS as SCMP_ACT_TRACE, which a tracer would turn into an allow',
    );
  }
  return {
    defaultAction: ociAction(profile.defaultAction, profile.defaultErrnoRet),
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls,
  };
}

function ociAction(action: string, errnoRet: number | null | undefined): string {
  if (action !== 'SCMP_ACT_ERRNO') return action;
  return (errnoRet ?? EPERM) === ENOSYS ? 'SCMP_ACT_TRACE' : 'SCMP_ACT_ERRNO';
}

/** Whether a Docker profile rule applies to an amd64 process with `caps` (Docker's own logic). */
function applies(rule: SeccompRule, caps: readonly string[]): boolean {
  const inc = rule.includes ?? {};
  const exc = rule.excludes ?? {};
  if (inc.arches?.length && !inc.arches.includes(ARCH)) return false;
  if (inc.caps?.length && !inc.caps.every((c) => caps.includes(c))) return false;
  if (exc.arches?.length && exc.arches.includes(ARCH)) return false;
  if (exc.caps?.length && exc.caps.some((c) => caps.includes(c))) return false;
  // minKernel guards host-kernel seccomp bugs (the pre-4.8 ptrace bypass); gVisor's kernel has none of them.
  return true;
}

/**
 * Reads a Docker-format profile file and converts it with {@link ociSeccomp}. `UNAVAILABLE`, naming the option to
 * pass, when the file cannot be read; `INVALID_INPUT` when it is not a profile runsc can express.
 */
export async function readOciSeccomp(path: string, options: OciSeccompOptions = {}): Promise<OciSeccomp> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new IsolationError(
      'UNAVAILABLE',
      `seccomp profile not found at ${path}: pass seccompProfile (the API's STUDIO_SECCOMP_PROFILE)`,
      { cause: error },
    );
  }
  return ociSeccomp(JSON.parse(text) as SeccompProfile, options);
}
