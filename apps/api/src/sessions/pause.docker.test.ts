import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe } from 'vitest';
import { dockerApiTest, dockerSkip } from '../testing/docker-api.ts';
import { residentBytesOf } from '../testing/host-memory.ts';
import { type PauseCaseContext, pauseCases } from '../testing/pause-cases.ts';

// Issue 20 on Docker: no CRIU here, so a paused session keeps its workspace and its programs start again on
// resume; fork and snapshots copy the workspace. The same cases as on gVisor, memory assertions aside.

const run = promisify(execFile);
const test = dockerApiTest('pause');

/** The container's full id (its processes' command lines name it: containerd's shim), or '' when there is none. */
async function containerId(sandboxId: string): Promise<string> {
  const r = await run('docker', ['inspect', '-f', '{{.Id}} {{.State.Pid}}', `studio-${sandboxId}`]).catch(
    () => undefined,
  );
  return r?.stdout.trim() ?? '';
}

describe.skipIf(dockerSkip !== undefined)(
  `pause, fork and snapshots on Docker${dockerSkip ? ` (skipped: ${dockerSkip})` : ''}`,
  () => {
    let ctx: PauseCaseContext;
    test.beforeAll(async ({ api, admin }) => {
      ctx = {
        api,
        client: admin.client,
        token: admin.token,
        memory: false,
        hostMemoryBytes: async (sandboxId) => {
          const [id, pid] = (await containerId(sandboxId)).split(' ');
          if (!id || !pid || pid === '0') return 0;
          // The container's processes: its init's tree is under the shim; the cgroup is simplest to read.
          const { stdout } = await run('sh', ['-c', `cat /proc/${pid}/cgroup | cut -d: -f3`]);
          const cgroup = stdout.trim();
          const current = await run('cat', [`/sys/fs/cgroup${cgroup}/memory.current`]).catch(() => undefined);
          return current ? Number(current.stdout.trim()) : residentBytesOf(id);
        },
      };
    });
    pauseCases(() => ctx);
  },
);
