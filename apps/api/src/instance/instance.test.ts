import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireLock, dataDirInstanceId, legacyInstanceId } from './instance.ts';

const dir = () => mkdtempSync(join(tmpdir(), 'studio-instance-'));

describe('acquireLock', () => {
  it('holds until released; a second holder is refused with who holds it and the fix', () => {
    const path = join(dir(), 'x.lock');
    const release = acquireLock(path, 'thing', 'use another');
    expect(() => acquireLock(path, 'thing', 'use another')).toThrow(
      expect.objectContaining({
        code: 'INVALID_STATE',
        message: expect.stringMatching(/^thing is in use by process \d+ on .+: use another$/),
      }),
    );
    release();
    acquireLock(path, 'thing', 'use another')();
  });

  it('takes over a lock left by a process of this host that no longer runs (kill -9)', () => {
    const path = join(dir(), 'x.lock');
    // pid 2^22 + 1 is above the kernel's pid_max limit: never a live process
    writeFileSync(path, JSON.stringify({ pid: 4_194_305, host: hostname(), since: 'then' }));
    const release = acquireLock(path, 'thing', 'fix');
    expect(JSON.parse(readFileSync(path, 'utf8')).pid).toBe(process.pid);
    release();
  });

  it('does not take over a lock of another host (a shared folder): that process may be alive', () => {
    const path = join(dir(), 'x.lock');
    writeFileSync(path, JSON.stringify({ pid: 4_194_305, host: `${hostname()}-other`, since: 'then' }));
    expect(() => acquireLock(path, 'thing', 'fix')).toThrow(/in use by process 4194305 on/);
  });
});

describe('dataDirInstanceId', () => {
  it('makes a random id once and keeps it', async () => {
    const d = dir();
    const id = await dataDirInstanceId(d, async () => false);
    expect(id).toMatch(/^api-[0-9a-f]{16}$/);
    expect(await dataDirInstanceId(d, async () => false)).toBe(id);
  });

  it('keeps the host-name id of an earlier release when the store still has sessions under it', async () => {
    const d = dir();
    const seen: string[] = [];
    const id = await dataDirInstanceId(d, async (legacy) => {
      seen.push(legacy);
      return true;
    });
    expect(id).toBe(legacyInstanceId());
    expect(seen).toEqual([legacyInstanceId()]);
    expect(readFileSync(join(d, 'instance-id'), 'utf8')).toBe(`${id}\n`);
  });

  it('refuses a hand-edited id that could not be a label', async () => {
    const d = dir();
    writeFileSync(join(d, 'instance-id'), '../../etc\n');
    await expect(dataDirInstanceId(d, async () => false)).rejects.toMatchObject({ code: 'INPUT_INVALID' });
  });
});
