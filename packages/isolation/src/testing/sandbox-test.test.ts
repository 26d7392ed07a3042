import { describe, expect } from 'vitest';
import type { IsolationBackend, Sandbox, SandboxSpec } from '../types.ts';
import { SMALL_LIMITS } from './harness.ts';
import { sandboxTest } from './sandbox-test.ts';

// A stub backend that records what the fixtures ask of it; the Docker regression tests use the same fixtures
// on a real daemon.
const created: SandboxSpec[] = [];
let closed = 0;
const stub = {
  name: 'stub',
  capabilities: () => ({
    pause: false,
    checkpoint: false,
    snapshots: false,
    networkModes: ['none'] as const,
    terminal: false,
    diskQuota: false,
    connect: false,
    listen: false,
  }),
  available: async () => ({ ok: true as const }),
  create: async (spec: SandboxSpec) => {
    created.push(spec);
    return { id: `sbx-${created.length}`, backend: 'stub', destroy: async () => {} } as unknown as Sandbox;
  },
  get: async () => {
    throw new Error('unused');
  },
  list: async () => [],
  destroy: async () => {},
  listSnapshots: async () => [],
  deleteSnapshot: async () => {},
  close: async () => {
    closed++;
  },
} satisfies IsolationBackend;

const test = sandboxTest({
  createBackend: () => stub,
  image: 'studio-sandbox:latest',
  labels: { 'studio.test': 'sandbox-test' },
  requireRuntime: true,
});

describe('sandboxTest', () => {
  test('gives the backend, and one labelled sandbox with the small limits', async ({ backend, sandbox }) => {
    expect(backend).toBe(stub);
    expect(sandbox.id).toBe('sbx-1');
    expect(created).toEqual([
      {
        image: 'studio-sandbox:latest',
        resources: SMALL_LIMITS,
        network: 'none',
        labels: { 'studio.test': 'sandbox-test' },
      },
    ]);
  });

  test('shares that sandbox with every test of the file and keeps the backend open', async ({ sandbox }) => {
    expect(sandbox.id).toBe('sbx-1');
    expect(created).toHaveLength(1);
    expect(closed).toBe(0);
  });
});
