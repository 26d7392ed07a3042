import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IsolationBackend } from '@studio/isolation';
// Not exported by @studio/api/testing: the test network is a test helper of the egress code, used here as is.
import { type EgressTestNet, egressNetSkip, startEgressTestNet } from '../apps/api/src/testing/egress-net.ts';
import { type Harness, startHarness } from './harness.ts';
import { onCleanup, type Row, ratioOf, skippedRow, type TargetId } from './report.ts';
import { interleaved, summarize } from './stats.ts';

/**
 * The bench's own addresses (TEST-NET-3's upper half): the egress tests use 198.51.100.0/24 and may run at the
 * same time on this host, and TEST-NET-1 can be a real network (it is this VM's eth0).
 */
const BENCH_NET = Object.freeze({
  cidr: '203.0.113.128/25',
  host: '203.0.113.129',
  server: '203.0.113.130',
});
const DOWNLOAD_BYTES = 10_485_760;
const INSTANCE_ID = 'bench-egress';
/** As the sandbox image has it (Debian 12's python3.11): the host side runs the same interpreter build. */
const HOST_PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/**
 * One client for both sides: through the proxy that the environment names (what urllib does with http_proxy /
 * https_proxy: absolute-form GET for http, a CONNECT tunnel for https), or, given ADDRESS, straight to that
 * address as a hosts-file entry would (TLS still checks the certificate for the name). A new connection per
 * request, which the client closes once the whole body is in: it sends no `Connection: close` (nor do curl, pip
 * or npm), so the server never closes first. Each request is timed inside the process, so interpreter start is
 * not counted. Every body is checked against its Content-Length: a short one fails the run.
 * Usage: python3 egress-client.py URL COUNT [ADDRESS]; prints {"seconds": [...]} with one time per request.
 */
const CLIENT = `
import http.client, json, os, socket, ssl, sys, time, urllib.parse
url, count = sys.argv[1], int(sys.argv[2])
address = sys.argv[3] if len(sys.argv) > 3 else None
target = urllib.parse.urlsplit(url)
https = target.scheme == 'https'
port = target.port or (443 if https else 80)
context = ssl.create_default_context(cafile=os.environ['SSL_CERT_FILE']) if https else None

def connection():
    if address:
        if https:
            c = http.client.HTTPSConnection(target.hostname, port, context=context, timeout=60)
        else:
            c = http.client.HTTPConnection(target.hostname, port, timeout=60)
        c._create_connection = lambda a, *rest: socket.create_connection((address, a[1]), *rest)
        return c, target.path
    proxy = urllib.parse.urlsplit(os.environ['https_proxy' if https else 'http_proxy'])
    if https:
        c = http.client.HTTPSConnection(proxy.hostname, proxy.port, context=context, timeout=60)
        c.set_tunnel(target.hostname, port)
        return c, target.path
    return http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=60), url

buf = memoryview(bytearray(1 << 20))
seconds = []
for _ in range(count):
    start = time.perf_counter()
    c, path = connection()
    c.request('GET', path)
    r = c.getresponse()
    got = 0
    while True:
        n = r.readinto(buf)
        if not n:
            break
        got += n
    c.close()
    seconds.append(time.perf_counter() - start)
    if r.status != 200 or got != int(r.getheader('content-length', '-1')):
        sys.exit('bad response: %s, %d bytes' % (r.status, got))
print(json.dumps({'seconds': seconds}))
`;

type Runtime = 'docker' | 'gvisor';
type RowName = [string, TargetId | undefined];

/** The rows this bench makes for `runtime` and their targets (for rows skipped as a whole). */
export function egressRows(runtime: Runtime): [RowName, RowName, RowName, RowName] {
  return [
    [`${runtime}: egress 10 MiB download through the proxy, HTTP`, 'egressThroughput'],
    [`${runtime}: egress 10 MiB download through the proxy, HTTPS (CONNECT)`, 'egressThroughput'],
    [`${runtime}: egress latency of one small request through the proxy, HTTP`, 'egressLatency'],
    [`${runtime}: egress latency of one small request through the proxy, HTTPS (CONNECT)`, undefined],
  ];
}

/** Runs the client on the host in its own process, straight to the test server; per-request seconds. */
function hostClient(file: string, caFile: string, url: string, count: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(HOST_PYTHON, [file, url, String(count), BENCH_NET.server], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SSL_CERT_FILE: caFile },
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      err += s;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`host client exited ${code}: ${err.slice(0, 300)}`));
      try {
        resolve((JSON.parse(out) as { seconds: number[] }).seconds);
      } catch (error) {
        reject(error);
      }
    });
  });
}

/**
 * Issue 18's egress proxy on one runtime: a 10 MiB download and single small requests from inside a sandbox
 * through the proxy (in-sandbox endpoint → agent → the API's EgressProxy → the server), beside the same client
 * on the host straight to the same server. Each round is one client process of each side, interleaved; the
 * first request of every process is a warm-up and dropped.
 */
async function benchRuntime(options: {
  runtime: Runtime;
  instanceId: string;
  backend: IsolationBackend;
  net: EgressTestNet;
  hostDir: string;
  image: string;
  quick: boolean;
}): Promise<Row[]> {
  const { runtime, net, hostDir } = options;
  const rounds = options.quick ? 2 : 6;
  const downloads = options.quick ? 4 : 5;
  const requests = options.quick ? 100 : 200;
  const h: Harness = await startHarness({
    backend: options.backend,
    labels: { 'studio.test': options.instanceId },
    sessions: 1,
    env: {
      // Its own instance: the API reconciles only its instance's sandboxes, so it never touches the tests'.
      STUDIO_INSTANCE_ID: options.instanceId,
      // The latency rounds open a connection per request, well past the default 600 a minute.
      STUDIO_POLICY: JSON.stringify({
        egress: { reachableNets: [BENCH_NET.cidr], connectionsPerMinute: 10_000 },
      }),
    },
    egress: { resolve: (host) => net.resolve(host) },
  });
  try {
    const client = h.clients[0] as Harness['clients'][number];
    const { id: sessionId } = await client.sessions.create.mutate({
      image: options.image,
      backend: runtime,
      network: { mode: 'allowlist', allow: ['allowed.test'] },
    });
    await client.files.write.mutate({ sessionId, path: 'egress-client.py', content: CLIENT });
    await client.files.write.mutate({ sessionId, path: 'egress-ca.pem', content: net.ca.certPem });
    const sandboxClient = async (url: string, count: number): Promise<number[]> => {
      const r = await client.exec.run.mutate({
        sessionId,
        command: ['python3', 'egress-client.py', url, String(count)],
        env: { SSL_CERT_FILE: '/workspace/egress-ca.pem' },
        timeoutMs: 300_000,
      });
      if (r.exitCode !== 0) throw new Error(`sandbox client exited ${r.exitCode}: ${r.stderr.slice(0, 300)}`);
      return (JSON.parse(r.stdout) as { seconds: number[] }).seconds;
    };
    /** Interleaved rounds of `count` requests each side; every sample after each process's first. */
    const measure = async (label: string, url: string, count: number) => {
      const samples = { ours: [] as number[], raw: [] as number[] };
      let round = 0;
      const side = (into: number[], run: () => Promise<number[]>) => async () => {
        const seconds = (await run()).slice(1);
        // interleaved() drops its warm-up round (the first two calls): so do we.
        if (round++ >= 2) into.push(...seconds);
        net.clear(); // the server's log of every request is not needed here
        return 0;
      };
      await interleaved(
        `${runtime} ${label}`,
        rounds,
        side(samples.ours, () => sandboxClient(url, count)),
        side(samples.raw, () =>
          hostClient(join(hostDir, 'egress-client.py'), join(hostDir, 'ca.pem'), url, count),
        ),
      );
      return samples;
    };
    const rows: Row[] = [];
    const [httpDownload, httpsDownload, httpLatency, httpsLatency] = egressRows(runtime);
    const baselineName = 'the same client on the host, straight to the server';
    for (const [[name, target], scheme] of [
      [httpDownload, 'http'],
      [httpsDownload, 'https'],
    ] as const) {
      const s = await measure(
        `${scheme} 10 MiB download`,
        `${scheme}://allowed.test/bytes/${DOWNLOAD_BYTES}`,
        downloads,
      );
      const mbps = (xs: number[]) => xs.map((x) => DOWNLOAD_BYTES / 1e6 / x);
      const o = summarize(mbps(s.ours));
      const b = summarize(mbps(s.raw));
      rows.push({
        name,
        unit: 'MB/s',
        ours: o,
        baseline: b,
        baselineName,
        ratio: o.median / b.median,
        ratioNote: 'ours / baseline: the share of the direct throughput kept',
        ...(target ? { target } : {}),
        note: 'connect and request to the last byte, in the client process; MB = 10⁶ bytes',
      });
    }
    for (const [[name, target], scheme] of [
      [httpLatency, 'http'],
      [httpsLatency, 'https'],
    ] as const) {
      const s = await measure(`${scheme} small request`, `${scheme}://allowed.test/bytes/1`, requests);
      const ms = (xs: number[]) => xs.map((x) => x * 1000);
      const o = summarize(ms(s.ours));
      const b = summarize(ms(s.raw));
      rows.push({
        name,
        unit: 'ms',
        ours: o,
        baseline: b,
        baselineName,
        ratio: ratioOf(o, b),
        ...(target ? { target } : {}),
        note: `a new connection per request, ${requests - 1} per client process${scheme === 'https' ? '; TLS handshake on both sides' : ''}`,
      });
    }
    return rows;
  } finally {
    await h.close();
  }
}

/**
 * The egress bench: on each runtime given (a backend factory, or why it is missing), against servers in a
 * network namespace of its own. Without root or `ip` every row is skipped with the reason.
 */
export async function benchEgress(options: {
  /** A backend made for the given instance id (the API's too), or why the runtime is missing. */
  runtimes: { runtime: Runtime; backend: ((instanceId: string) => IsolationBackend) | string }[];
  image: string;
  quick: boolean;
}): Promise<Row[]> {
  const rows: Row[] = [];
  const skip = egressNetSkip();
  if (skip) {
    process.stderr.write(`[bench] egress skipped: ${skip}\n`);
    for (const { runtime } of options.runtimes)
      for (const [n, t] of egressRows(runtime)) rows.push(skippedRow(n, t, skip));
    return rows;
  }
  const net = await startEgressTestNet(BENCH_NET);
  const closeNet = onCleanup(() => net.close());
  const hostDir = mkdtempSync(join(tmpdir(), 'studio-bench-egress-'));
  const removeHostDir = onCleanup(async () => rmSync(hostDir, { recursive: true, force: true }));
  try {
    writeFileSync(join(hostDir, 'egress-client.py'), CLIENT);
    writeFileSync(join(hostDir, 'ca.pem'), net.ca.certPem);
    for (const { runtime, backend } of options.runtimes) {
      if (typeof backend === 'string') {
        // The first line: a failed build's reason runs on, and a table row cannot.
        const reason = backend.split('\n')[0] as string;
        for (const [n, t] of egressRows(runtime)) rows.push(skippedRow(n, t, reason));
        continue;
      }
      // One runtime failing leaves the other's rows standing.
      const instanceId = `${INSTANCE_ID}-${runtime}`;
      const b = backend(instanceId);
      const closeBackend = onCleanup(() => b.close());
      try {
        rows.push(
          ...(await benchRuntime({
            runtime,
            instanceId,
            backend: b,
            net,
            hostDir,
            image: options.image,
            quick: options.quick,
          })),
        );
      } catch (error) {
        const reason = `failed: ${(error as Error).message.split('\n')[0]?.slice(0, 160)}`;
        process.stderr.write(`[bench] egress ${runtime} ${reason}\n`);
        for (const [n, t] of egressRows(runtime)) rows.push(skippedRow(n, t, reason));
      } finally {
        await closeBackend();
      }
    }
    return rows;
  } finally {
    await removeHostDir();
    await closeNet();
  }
}
