import { defaultPolicy, SANDBOX_LIMIT_BOUNDS } from '@studio/policy';
import { describe, expect, it } from 'vitest';
import { type IsolationErrorCode, isIsolationError } from './errors.ts';
import { newSandboxId } from './sandbox-id.ts';
import type { ResourceLimits, SandboxSpec } from './types.ts';
import { validateSandboxSpec } from './validate-spec.ts';

const MiB = 2 ** 20;
const resources: ResourceLimits = {
  memoryBytes: 256 * MiB,
  cpus: 1,
  pids: 128,
  diskBytes: 64 * MiB,
  inodes: 4096,
  tmpBytes: 16 * MiB,
};
const spec: SandboxSpec = {
  image: 'studio-sandbox:latest',
  resources,
  labels: { 'studio.session': 'ses_1' },
};

function refusal(
  s: unknown,
  limits?: Partial<ResourceLimits>,
): { code: IsolationErrorCode; message: string } {
  try {
    validateSandboxSpec(s as SandboxSpec, limits);
  } catch (error) {
    if (isIsolationError(error)) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error(`accepted ${JSON.stringify(s)}`);
}
const withResources = (r: Partial<Record<keyof ResourceLimits, unknown>>) => ({
  ...spec,
  resources: { ...resources, ...r },
});

describe('validateSandboxSpec', () => {
  it('accepts a well-formed spec, the policy defaults and every bound itself', () => {
    validateSandboxSpec(spec);
    validateSandboxSpec({ ...spec, network: 'none', labels: {} });
    const { memoryBytes, cpus, pids, diskBytes, inodes, tmpBytes } = defaultPolicy.sandbox;
    validateSandboxSpec({ ...spec, resources: { memoryBytes, cpus, pids, diskBytes, inodes, tmpBytes } });
    const b = SANDBOX_LIMIT_BOUNDS;
    validateSandboxSpec(
      withResources({
        memoryBytes: b.memoryBytes.min,
        cpus: b.cpus.min,
        pids: b.pids.min,
        diskBytes: b.diskBytes.min,
        inodes: b.inodes.min,
        tmpBytes: b.tmpBytes.min,
      }) as SandboxSpec,
    );
  });

  it('accepts a caller-chosen id of the one shape and refuses any other', () => {
    validateSandboxSpec({ ...spec, id: newSandboxId() });
    validateSandboxSpec({ ...spec, id: 'sbx-0123456789abcdef' });
    for (const id of [
      '',
      'sbx-0123',
      'sbx-0123456789ABCDEF',
      '../sbx-0123456789abcdef',
      'sbx-0123456789abcdef\n',
      7,
    ]) {
      const e = refusal({ ...spec, id });
      expect(e.code).toBe('INVALID_INPUT');
      expect(e.message).toMatch(/newSandboxId/);
    }
  });

  // Before there was one validator, Docker took memory ≥ 32 MiB, gVisor ≥ 64 MiB; pids ≥ 1 and ≥ 16 where the
  // policy says 64; disk ≥ 8 MiB where the policy says 64 MiB; inodes and /tmp had no floor and no ceiling; only
  // gVisor refused an empty image. A spec one backend took and another refused now means the same everywhere.
  it.each([
    ['48 MiB memory (Docker took it, gVisor refused it)', { memoryBytes: 48 * MiB }, 'memoryBytes'],
    ['32 pids (both backends took it, the policy floor is 64)', { pids: 32 }, 'pids'],
    ['16 MiB disk (both backends took it, the policy floor is 64 MiB)', { diskBytes: 16 * MiB }, 'diskBytes'],
    ['100 inodes (no backend had a floor)', { inodes: 100 }, 'inodes'],
    ['/tmp larger than memory (no backend checked)', { tmpBytes: 512 * MiB }, 'tmpBytes'],
    ['memory above 16 GiB (no backend had a ceiling)', { memoryBytes: 32 * 1024 * MiB }, 'memoryBytes'],
    ['cpus 0.05', { cpus: 0.05 }, 'cpus'],
  ])('refuses %s, naming the field', (_, r, field) => {
    const e = refusal(withResources(r));
    expect(e.code).toBe('INVALID_INPUT');
    expect(e.message).toContain(`resources.${field}`);
  });

  it.each([
    ['memoryBytes 0', { memoryBytes: 0 }],
    ['memoryBytes -1', { memoryBytes: -1 }],
    ['memoryBytes NaN', { memoryBytes: Number.NaN }],
    ['memoryBytes a string', { memoryBytes: '268435456' }],
    ['cpus 0', { cpus: 0 }],
    ['cpus Infinity', { cpus: Number.POSITIVE_INFINITY }],
    ['pids Infinity', { pids: Number.POSITIVE_INFINITY }],
    ['pids 100.5', { pids: 100.5 }],
    ['diskBytes -1', { diskBytes: -1 }],
    ['inodes 1.5', { inodes: 1.5 }],
    ['tmpBytes -1', { tmpBytes: -1 }],
    ['tmpBytes missing', { tmpBytes: undefined }],
  ])('refuses %s (the conformance suite asks every backend the same)', (_, r) => {
    expect(refusal(withResources(r)).code).toBe('INVALID_INPUT');
  });

  it('refuses an unknown resource key, so no runtime parameter rides along', () => {
    expect(refusal({ ...spec, resources: { ...resources, privileged: true } }).code).toBe('INVALID_INPUT');
  });

  it.each([
    ['empty', ''],
    ['with a space', 'studio sandbox'],
    ['with a newline', 'studio\nsandbox'],
    ['too long', 'a'.repeat(256)],
    ['not a string', 42],
  ])('refuses an image %s', (_, image) => {
    expect(refusal({ ...spec, image }).code).toBe('INVALID_INPUT');
  });

  it('refuses a network other than none as UNSUPPORTED', () => {
    expect(refusal({ ...spec, network: 'host' }).code).toBe('UNSUPPORTED');
    expect(refusal({ ...spec, network: 'bridge' }).code).toBe('UNSUPPORTED');
  });

  it('refuses the backend-owned studio.* labels and non-string values; allows the caller ones', () => {
    for (const key of ['studio.managed', 'studio.backend', 'studio.instance', 'studio.sandbox', 'studio.x']) {
      const e = refusal({ ...spec, labels: { [key]: 'forged' } });
      expect(e.code).toBe('INVALID_INPUT');
      expect(e.message).toContain(key);
    }
    validateSandboxSpec({
      ...spec,
      labels: { 'studio.session': 's', 'studio.owner': 'o', 'studio.test': 't', 'conformance.run': 'r' },
    });
    expect(refusal({ ...spec, labels: { a: 1 } }).code).toBe('INVALID_INPUT');
    expect(refusal({ ...spec, labels: ['studio.managed'] }).code).toBe('INVALID_INPUT');
  });

  it('applies per-deployment ceilings on top of the bounds', () => {
    validateSandboxSpec(spec, { memoryBytes: 256 * MiB, pids: 128 });
    const e = refusal(spec, { memoryBytes: 128 * MiB });
    expect(e).toMatchObject({ code: 'INVALID_INPUT' });
    expect(e.message).toMatch(/resources\.memoryBytes .* limit of 134217728/);
    expect(refusal(spec, { cpus: 0.5 }).message).toContain('resources.cpus');
  });

  it('refuses a spec that is not an object', () => {
    expect(refusal(null).code).toBe('INVALID_INPUT');
    expect(refusal('studio-sandbox:latest').code).toBe('INVALID_INPUT');
  });
});
