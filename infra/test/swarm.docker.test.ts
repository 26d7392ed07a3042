import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IN_CI, INFRA, readSwarmEnv as readEnv, run, which } from './helpers.ts';

// The three-node Swarm that issue 23's CI builds on this one machine (infra/swarm/netns-swarm.sh): each node a
// network namespace with its own dockerd, wired through a hub bridge. Everything is read through the nodes'
// own sockets with dockerode, never from CLI output. The machine's own dockerd only supplies the tiny image.

const IMAGE = 'studio-swarm-tiny:latest';
const SERVICE = 'studio-swarm-test-web';
// Published in host mode on every node: this kernel has no IPVS, so Swarm's routing mesh (ingress) and
// service VIPs do not work here; a host-mode port is reached on the node that runs the task.
const PORT = 18080;
// netns-swarm.sh registers runsc on every node when the host has it.
const RUNSC = which('runsc');

function why(): string | undefined {
  if (process.getuid?.() !== 0) return 'the netns swarm needs root (network namespaces, extra dockerds)';
  for (const tool of ['dockerd', 'nsenter', 'unshare', 'ip'])
    if (!which(tool)) return `${tool} not found (apt-get install docker.io util-linux iproute2)`;
  if (run('docker', ['version', '--format', '{{.Server.Version}}']).status !== 0)
    return "the host's dockerd does not answer (bash infra/setup-runtimes.sh starts it)";
  return undefined;
}
const skip = why();
if (skip && IN_CI) throw new Error(`the netns swarm is required in CI: ${skip}`);

/** Runs one of the swarm scripts; `up` waits up to 60 s for Ready on top of starting three daemons. */
function script(name: string, ...args: string[]): { status: number | null; stderr: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync('bash', [join(INFRA, 'swarm', name), ...args], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` },
    timeout: 180_000,
  });
  return {
    status: r.status,
    stderr: `${r.stderr ?? ''}${r.error ?? ''}`,
    ms: Math.round(performance.now() - t0),
  };
}

function mustRun(name: string, ...args: string[]): number {
  const r = script(name, ...args);
  if (r.status !== 0) throw new Error(`${name} ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}`);
  return r.ms;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface SwarmNode {
  docker: Docker;
  id: string;
  ip: string;
}

interface Task {
  NodeID: string;
  Status: { State: string; ContainerStatus?: { ContainerID?: string } };
}

describe.skipIf(skip !== undefined)(
  `three-node swarm in network namespaces${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    const nodes: SwarmNode[] = [];
    const manager = () => nodes[0]?.docker as Docker;

    beforeAll(async () => {
      try {
        const upMs = mustRun('netns-swarm.sh', 'up', '3');
        console.info(`netns-swarm up 3: ${upMs} ms`);
        const env = readEnv();
        for (const k of [1, 2, 3]) {
          const docker = new Docker({ socketPath: env[`STUDIO_SWARM_NODE${k}_SOCKET`] });
          const info = await docker.info();
          nodes.push({ docker, id: info.Swarm.NodeID, ip: env[`STUDIO_SWARM_NODE${k}_IP`] ?? '' });
        }
        mustRun('tiny-image.sh', IMAGE);
        console.info(`netns-swarm load: ${mustRun('netns-swarm.sh', 'load', IMAGE)} ms`);
        await manager().createService({
          Name: SERVICE,
          Mode: { Global: {} },
          TaskTemplate: {
            ContainerSpec: {
              Image: IMAGE,
              // A shell that answers SIGTERM, so removing the service and `down` do not wait out a grace period.
              Command: ['sh', '-c', `trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait`],
              StopGracePeriod: 1_000_000_000,
            },
          },
          EndpointSpec: {
            Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishedPort: PORT, PublishMode: 'host' }],
          },
        });
      } catch (error) {
        // afterAll tears down too; this keeps a half-made cluster from outliving a failed setup either way.
        script('netns-swarm.sh', 'down');
        throw error;
      }
    });

    afterAll(async () => {
      await manager()
        ?.getService(SERVICE)
        .remove()
        .catch(() => undefined);
      const down = script('netns-swarm.sh', 'down');
      console.info(`netns-swarm down: ${down.ms} ms`);
      await new Docker()
        .getImage(IMAGE)
        .remove()
        .catch(() => undefined);
      expect(down.status, down.stderr).toBe(0);
    });

    /** The service's tasks that run, by node. */
    async function running(): Promise<Map<string, Task>> {
      const tasks: Task[] = await manager().listTasks({
        filters: { service: [SERVICE], 'desired-state': ['running'] },
      });
      return new Map(tasks.filter((t) => t.Status.State === 'running').map((t) => [t.NodeID, t]));
    }

    /** The service's containers that a node's own dockerd runs. */
    async function containersOn(node: SwarmNode) {
      return node.docker.listContainers({
        filters: { label: [`com.docker.swarm.service.name=${SERVICE}`], status: ['running'] },
      });
    }

    it('has three Ready nodes, one of them the manager (node 1)', async () => {
      const listed: { ID: string; Spec: { Role: string }; Status: { State: string } }[] =
        await manager().listNodes();
      expect(listed).toHaveLength(3);
      expect(listed.map((n) => n.Status.State)).toEqual(['ready', 'ready', 'ready']);
      expect(listed.filter((n) => n.Spec.Role === 'manager').map((n) => n.ID)).toEqual([nodes[0]?.id]);
      expect(new Set(listed.map((n) => n.ID))).toEqual(new Set(nodes.map((n) => n.id)));
    });

    it('runs one task of a global service on every node', async () => {
      const tasks = await waitFor('a running task on each of the three nodes', async () => {
        const r = await running();
        return r.size === 3 ? r : undefined;
      });
      expect(new Set(tasks.keys())).toEqual(new Set(nodes.map((n) => n.id)));
      for (const node of nodes) expect(await containersOn(node)).toHaveLength(1);
    });

    it("execs into a worker's task through that node's own socket (not through the manager)", async () => {
      const worker = nodes[1] as SwarmNode;
      const [container] = await containersOn(worker);
      expect(container).toBeDefined();
      const id = container?.Id as string;
      const exec = await worker.docker.getContainer(id).exec({
        Cmd: ['cat', '/www/index.html'],
        AttachStdout: true,
        AttachStderr: true,
      });
      const stream = await exec.start({ hijack: true, stdin: false });
      const chunks: Buffer[] = [];
      const out = new PassThrough().on('data', (c: Buffer) => chunks.push(c));
      worker.docker.modem.demuxStream(stream, out, out);
      await new Promise((resolve, reject) =>
        stream.on('end', resolve).on('close', resolve).on('error', reject),
      );
      expect(Buffer.concat(chunks).toString()).toBe('studio-swarm\n');
      expect((await exec.inspect()).ExitCode).toBe(0);
      // The manager's dockerd knows only its own containers: exec must go to the node that runs the task.
      await expect(manager().getContainer(id).inspect()).rejects.toMatchObject({ statusCode: 404 });
    });

    it("reaches every node's published port from the root namespace over TCP", async () => {
      for (const node of nodes) {
        const r = await fetch(`http://${node.ip}:${PORT}/`, { signal: AbortSignal.timeout(5_000) });
        expect(r.status).toBe(200);
        expect(await r.text()).toBe('studio-swarm\n');
      }
    });

    it.skipIf(!RUNSC)('runs a gVisor container on a worker (runtime runsc, no network)', async () => {
      const worker = nodes[1] as SwarmNode;
      for (const node of nodes) expect(Object.keys((await node.docker.info()).Runtimes)).toContain('runsc');
      const out = new PassThrough();
      const chunks: Buffer[] = [];
      out.on('data', (c: Buffer) => chunks.push(c));
      const [result, container] = await worker.docker.run(IMAGE, ['sh', '-c', 'dmesg | head -n 1'], out, {
        HostConfig: { Runtime: 'runsc', NetworkMode: 'none' },
      });
      await container.remove({ force: true });
      expect(result.StatusCode).toBe(0);
      // gVisor's own kernel log, not the host's.
      expect(Buffer.concat(chunks).toString()).toContain('Starting gVisor');
    });

    it('drains a worker (its task goes away) and brings it back (the task returns)', async () => {
      const worker = nodes[2] as SwarmNode;
      const setAvailability = async (availability: 'drain' | 'active') => {
        const node = manager().getNode(worker.id);
        const { Version, Spec } = await node.inspect();
        await node.update({
          _query: { version: Version.Index },
          _body: { ...Spec, Availability: availability },
        });
      };

      await setAvailability('drain');
      await waitFor('the drained worker to lose its task', async () => {
        const r = await running();
        return !r.has(worker.id) && (await containersOn(worker)).length === 0 ? true : undefined;
      });
      expect((await manager().getNode(worker.id).inspect()).Spec.Availability).toBe('drain');
      // The other nodes keep theirs: a global service places nothing on a drained node, and moves nothing.
      expect((await running()).size).toBe(2);

      await setAvailability('active');
      await waitFor('the task to come back on the worker', async () => {
        const r = await running();
        return r.has(worker.id) && (await containersOn(worker)).length === 1 ? true : undefined;
      });
      expect((await manager().getNode(worker.id).inspect()).Spec.Availability).toBe('active');
    });
  },
);
