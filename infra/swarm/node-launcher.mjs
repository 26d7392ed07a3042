// The `node` service of infra/swarm/stack.yml (issue 23): one task per Swarm node (global mode) that runs the real
// node service (STUDIO_ROLE=node) as a container of that node's own Docker, because a Swarm task can be neither
// privileged nor given devices, and the node service loop-mounts workspace images (/dev/loop*) and drives Docker.
//
// The child runs privileged on the host's network (replicas reach it at the node's advertised address, port 4100,
// previews 4101), with the Docker socket, the data directory at the same path inside and out (Docker resolves the
// workspaces' bind mounts by host path; shared propagation so sandboxes see the loop mounts) and the runtime
// directory. Secrets are never put in its environment: the launcher copies its own Swarm secrets into 0600 files
// under <runtime dir>/secrets on the host and the child reads them as *_FILE. SIGTERM is passed on (the child gets
// STUDIO_DRAIN_SECONDS plus a margin to drain), then the child is removed and the launcher exits with its code; a
// child that ends on its own is started again at once (a third end within a minute ends the task, and Swarm's
// restart policy takes over). A child left by an earlier launcher (same name) is replaced. The default sandbox image's root filesystem is exported once per image id into the data
// directory for template builds, which run in gVisor (runsc is in the image) and start from a directory.
//
// Configuration (the launcher's environment; every other STUDIO_* variable is passed to the child as is):
//   STUDIO_LAUNCHER_IMAGE        the image the child runs (the stack gives the launcher's own)
//   STUDIO_LAUNCHER_DOCKER_SOCKET  the Docker socket's path on the host (default /var/run/docker.sock), mounted
//                                at /var/run/docker.sock in the launcher
//   STUDIO_DATA_DIR              host path of the data directory (default /var/lib/studio), mounted at that path
//   STUDIO_RUNTIME_DIR           host path of the runtime directory (default /run/studio), mounted at that path
//   STUDIO_SNAPSHOTS_DIR         optional: host path of the snapshots folder, on a filesystem every node mounts
//                                (NFS, say), mounted at that path: any node restores any node's snapshots
//   STUDIO_SWARM_NODE_ID         {{.Node.ID}}: names the child (studio-node-<id>)
//   STUDIO_LAUNCHER_DATABASE_HOST  optional: the address the child reaches the database host of DATABASE_URL at;
//                                unset, the first Swarm manager that accepts TCP on the URL's port (PostgreSQL
//                                publishes its port in host mode on a manager: the child, on the host's network,
//                                cannot resolve or reach the overlay network's names)
import { spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import Docker from 'dockerode';

const SOCKET = '/var/run/docker.sock';
const AGENT_SOURCE = '/app/packages/sandbox-agent/agent';
// Which Swarm secret becomes which *_FILE variable. Not the admin password: only replicas make the first admin.
const SECRETS = {
  studio_database_url: 'DATABASE_URL_FILE',
  studio_jwt_secret: 'STUDIO_JWT_SECRET_FILE',
  studio_secrets_key: 'STUDIO_SECRETS_KEY_FILE',
  studio_cluster_secret: 'STUDIO_CLUSTER_SECRET_FILE',
};

const env = process.env;
const log = (message, fields = {}) =>
  process.stderr.write(
    `${JSON.stringify({ time: new Date().toISOString(), launcher: message, ...fields })}\n`,
  );
const fail = (message) => {
  log(message);
  process.exit(1);
};

const image =
  env.STUDIO_LAUNCHER_IMAGE ||
  fail('STUDIO_LAUNCHER_IMAGE is not set: the stack file sets it to the service image');
const hostSocket = env.STUDIO_LAUNCHER_DOCKER_SOCKET || SOCKET;
const dataDir = env.STUDIO_DATA_DIR || '/var/lib/studio';
const runtimeDir = env.STUDIO_RUNTIME_DIR || '/run/studio';
const swarmNodeId =
  env.STUDIO_SWARM_NODE_ID || fail('STUDIO_SWARM_NODE_ID is not set: the stack file sets it to {{.Node.ID}}');
const drainSeconds = Number(env.STUDIO_DRAIN_SECONDS || 60);
const name = `studio-node-${swarmNodeId}`;
const docker = new Docker({ socketPath: SOCKET });

let child;
let stopping = false;

/** Copies the mounted Swarm secrets into 0600 files on the host: the child's *_FILE variables. */
function handOverSecrets() {
  const dir = join(runtimeDir, 'secrets');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const vars = [];
  for (const [secret, variable] of Object.entries(SECRETS)) {
    const from = join('/run/secrets', secret);
    if (!existsSync(from))
      fail(`the Swarm secret ${secret} is not mounted: add it to the node service's secrets`);
    const to = join(dir, secret);
    writeFileSync(to, readFileSync(from), { mode: 0o600 });
    chmodSync(to, 0o600);
    vars.push(`${variable}=${to}`);
  }
  return vars;
}

/**
 * The default sandbox image's root filesystem on the host (STUDIO_SANDBOX_ROOTFS for the child): template builds
 * run in gVisor, which starts from a directory, not from a Docker image. Exported from the node's Docker once per
 * image id (as the API does for a build FROM a host image), under <data dir>/sandbox-rootfs/.
 */
async function sandboxRootfs() {
  if (env.STUDIO_SANDBOX_ROOTFS) return env.STUDIO_SANDBOX_ROOTFS;
  const sandboxImage = (env.STUDIO_IMAGES || 'studio-sandbox:latest').split(',')[0].trim();
  const info = await docker
    .getImage(sandboxImage)
    .inspect()
    .catch(() => null);
  if (info === null) {
    log('the sandbox image is not on this node: template builds will say so', { image: sandboxImage });
    return undefined;
  }
  const parent = join(dataDir, 'sandbox-rootfs');
  const dir = join(parent, info.Id.replace(/^sha256:/, '').slice(0, 20));
  if (!existsSync(join(dir, '.complete'))) {
    log('exporting the sandbox image for template builds', { image: sandboxImage });
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'rootfs'), { recursive: true });
    const container = await docker.createContainer({
      Image: sandboxImage,
      Entrypoint: ['/bin/true'],
      Cmd: [],
      NetworkDisabled: true,
      Labels: { 'studio.role': 'rootfs-export' },
    });
    try {
      const stream = await container.export();
      await new Promise((resolve, reject) => {
        const tar = spawn('tar', ['--numeric-owner', '-xpf', '-', '-C', join(tmp, 'rootfs')], {
          stdio: ['pipe', 'ignore', 'inherit'],
        });
        stream.on('error', reject);
        tar.on('error', reject);
        tar.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tar exited with ${code}`))));
        stream.pipe(tar.stdin);
      });
    } finally {
      await container.remove({ force: true }).catch(() => undefined);
    }
    // What Docker adds to every container: not part of the image.
    rmSync(join(tmp, 'rootfs', '.dockerenv'), { force: true });
    writeFileSync(join(tmp, '.complete'), `${info.Id}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  // Exports of images this node no longer runs.
  for (const entry of readdirSync(parent))
    if (join(parent, entry) !== dir) rmSync(join(parent, entry), { recursive: true, force: true });
  return join(dir, 'rootfs');
}

/** The sandbox agent, where the child's Docker can bind it from (the image's copy is not on the host). */
function copyAgent() {
  const to = join(dataDir, 'agent');
  mkdirSync(to, { recursive: true });
  for (const file of readdirSync(AGENT_SOURCE))
    cpSync(join(AGENT_SOURCE, file), join(to, file), { force: true });
  return to;
}

function probe(host, port) {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1000 });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.on('connect', () => done(true));
    socket.on('timeout', () => done(false));
    socket.on('error', () => done(false));
  });
}

/** `host:address` for the child's /etc/hosts, so DATABASE_URL's host name works on the host's network. */
async function databaseHost() {
  const url = new URL(readFileSync('/run/secrets/studio_database_url', 'utf8').trim());
  const host = url.hostname;
  if (/^[\d.]+$/.test(host) || host.includes(':')) return [];
  if (env.STUDIO_LAUNCHER_DATABASE_HOST) return [`${host}:${env.STUDIO_LAUNCHER_DATABASE_HOST}`];
  const port = Number(url.port || 5432);
  const deadline = Date.now() + 120_000;
  for (;;) {
    const info = await docker.info();
    const managers = (info.Swarm?.RemoteManagers ?? []).map((m) => String(m.Addr).replace(/:\d+$/, ''));
    for (const address of managers) if (await probe(address, port)) return [`${host}:${address}`];
    if (Date.now() > deadline)
      fail(
        `no Swarm manager (${managers.join(', ') || 'none'}) accepts TCP on port ${port}: is the postgres service running, its port published in host mode? Or set STUDIO_LAUNCHER_DATABASE_HOST`,
      );
    if (stopping) process.exit(0);
    log('waiting for the database port on a manager', { managers, port });
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function removeLeftover() {
  const old = docker.getContainer(name);
  const info = await old.inspect().catch(() => null);
  if (info === null) return;
  log('replacing a node service left by an earlier launcher', {
    container: info.Id.slice(0, 12),
    state: info.State.Status,
  });
  await old.stop({ t: drainSeconds + 5 }).catch(() => undefined);
  await old.remove({ force: true }).catch(() => undefined);
}

async function stopChild(signal) {
  if (stopping) return;
  stopping = true;
  log('stopping the node service', { signal, drainSeconds });
  // The node service drains for STUDIO_DRAIN_SECONDS on SIGTERM; a few seconds more before Docker kills it.
  await child?.stop({ t: drainSeconds + 5 }).catch(() => undefined);
}

async function main() {
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(runtimeDir, { recursive: true });
  const secretVars = handOverSecrets();
  const agentDir = copyAgent();
  const extraHosts = await databaseHost();
  const rootfs = await sandboxRootfs();
  const passed = Object.entries(env)
    .filter(([k]) => k.startsWith('STUDIO_') && !k.startsWith('STUDIO_LAUNCHER_') && !k.endsWith('_FILE'))
    .map(([k, v]) => `${k}=${v}`);
  const childEnv = [
    ...passed,
    ...secretVars,
    'STUDIO_ROLE=node',
    'STUDIO_BACKENDS=docker',
    `STUDIO_WARM_POOL=${env.STUDIO_WARM_POOL || '0'}`,
    'STUDIO_HOST=0.0.0.0',
    `STUDIO_PORT=${env.STUDIO_PORT || '4100'}`,
    `STUDIO_PREVIEW_PORT=${env.STUDIO_PREVIEW_PORT || '4101'}`,
    `STUDIO_DATA_DIR=${dataDir}`,
    `STUDIO_RUNTIME_DIR=${runtimeDir}`,
    `STUDIO_AGENT_DIR=${agentDir}`,
    `STUDIO_SWARM_NODE_ID=${swarmNodeId}`,
    ...(rootfs === undefined ? [] : [`STUDIO_SANDBOX_ROOTFS=${rootfs}`]),
  ];
  // Later entries win: the launcher's own settings over whatever STUDIO_* came through.
  const merged = [...new Map(childEnv.map((e) => [e.slice(0, e.indexOf('=')), e])).values()];
  const options = {
    name,
    Image: image,
    Env: merged,
    Labels: { 'studio.role': 'node', 'studio.swarm.node': swarmNodeId },
    HostConfig: {
      NetworkMode: 'host',
      // The host's process ids: the node service's locks (its data dir, its instance) name their holder by pid and
      // host, and a child started after one was killed must see that pid gone. In a PID namespace of its own the
      // old holder's pid (7, say) is alive again in the new container, and the node service refused to start,
      // again and again (found by killing one in the Swarm stack test).
      PidMode: 'host',
      Privileged: true,
      ExtraHosts: extraHosts,
      Binds: [
        `${hostSocket}:/var/run/docker.sock`,
        `${dataDir}:${dataDir}:rshared`,
        `${runtimeDir}:${runtimeDir}`,
        ...(env.STUDIO_SNAPSHOTS_DIR ? [`${env.STUDIO_SNAPSHOTS_DIR}:${env.STUDIO_SNAPSHOTS_DIR}`] : []),
      ],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '20m', 'max-file': '5' } },
    },
  };
  // Ended on its own (killed, crashed), the node service is started again here at once: its sessions are adopted
  // only if it reports within the 20 s a node may be silent, and Swarm's restart (its delay, a new launcher that
  // hands over secrets and finds the database again) took most of that under load (19.7 s in a CI run). Three
  // ends within a minute: the launcher exits with the code and leaves it to Swarm's restart policy.
  const ends = [];
  for (;;) {
    const code = await runChild(options);
    if (stopping) process.exit(code === 143 ? 0 : code);
    const now = Date.now();
    ends.push(now);
    while (ends.length > 0 && ends[0] < now - 60_000) ends.shift();
    if (ends.length >= 3) {
      log('the node service keeps ending; leaving it to Swarm', { code, ends: ends.length });
      process.exit(code || 1);
    }
    log('the node service ended on its own; starting it again', { code });
  }
}

/** Whether this host refused a privileged container once (then every start takes the explicit set). */
let explicitCapabilities = false;

/** Creates and starts the node service, passes its output on, waits for it to end; its exit code. */
async function runChild(options) {
  await removeLeftover();
  child = await docker.createContainer(explicitCapabilities ? withExplicitCapabilities(options) : options);
  if (stopping) {
    await child.remove({ force: true }).catch(() => undefined);
    process.exit(0);
  }
  try {
    await child.start();
  } catch (error) {
    // A host whose own capability bounding set lacks one (a VM run as a container: CAP_SYS_RESOURCE is missing on
    // the CI machine) cannot start privileged root containers: runc fails with "unable to apply caps".
    if (explicitCapabilities || !/unable to apply caps/.test(String(error?.message))) throw error;
    log('privileged start refused (the host lacks a capability); starting with an explicit capability set');
    explicitCapabilities = true;
    await child.remove({ force: true }).catch(() => undefined);
    child = await docker.createContainer(withExplicitCapabilities(options));
    await child.start();
  }
  log('node service started', {
    container: child.id.slice(0, 12),
    image,
    dataDir,
    extraHosts: options.HostConfig.ExtraHosts,
  });
  // Its output is the task's output (docker service logs).
  const stream = await child.attach({ stream: true, stdout: true, stderr: true, logs: true });
  child.modem.demuxStream(stream, process.stdout, process.stderr);
  const { StatusCode } = await child.wait();
  log('node service exited', { code: StatusCode, asked: stopping });
  await child.remove({ force: true }).catch(() => undefined);
  return StatusCode;
}

/**
 * The privileged container's powers, less the capabilities the host lacks, as an explicit set: every capability
 * but SYS_RESOURCE, no seccomp or AppArmor profile, the host's /dev with access to the loop devices (block major
 * 7, loop-control).
 */
function withExplicitCapabilities(options) {
  return {
    ...options,
    HostConfig: {
      ...options.HostConfig,
      Privileged: false,
      CapAdd: ['ALL'],
      CapDrop: ['SYS_RESOURCE'],
      SecurityOpt: ['seccomp=unconfined', 'apparmor=unconfined'],
      DeviceCgroupRules: ['b 7:* rwm', 'c 10:237 rwm'],
      // Template builds run runsc, which makes a cgroup per build: the host's cgroups, writable (a privileged
      // container gets them so; this one would see them read-only).
      Binds: [...options.HostConfig.Binds, '/dev:/dev', '/sys/fs/cgroup:/sys/fs/cgroup'],
    },
  };
}

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => void stopChild(signal));
main().catch((error) => fail(`the launcher failed: ${error?.message ?? error}`));
