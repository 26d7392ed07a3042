import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import type { StudioClient } from '@studio/client';
import { expect, it } from 'vitest';
import type { SessionEvent } from '../realtime/event-bus.ts';
import type { TestApi } from './api-fixture.ts';
import { EGRESS_NET, type EgressTestNet } from './egress-net.ts';

/** What the shared egress cases need from a test file: its API, a signed-in client and the test network. */
export interface EgressCaseContext {
  api: TestApi;
  client: StudioClient;
  net: EgressTestNet;
  /** The backend sessions are made on (`docker`, `gvisor`). */
  backend: 'docker' | 'gvisor';
}

// A probe run inside the sandbox with python3 (in the image; it honours http_proxy/https_proxy and SSL_CERT_FILE).
const PROBE = String.raw`
import json, os, socket, ssl, sys, urllib.error, urllib.request
def out(value):
    print(json.dumps(value))
mode = sys.argv[1]
if mode == 'get':
    try:
        r = urllib.request.urlopen(sys.argv[2], timeout=20)
        out({'status': r.status, 'body': r.read().decode(errors='replace')[:500]})
    except urllib.error.HTTPError as e:
        out({'status': e.code, 'denied': e.headers.get('x-studio-egress-denied'), 'body': e.read().decode(errors='replace')[:500]})
    except Exception as e:
        out({'error': type(e).__name__ + ': ' + str(e)[:300]})
elif mode == 'sni':
    target, name = sys.argv[2], sys.argv[3]
    port = int(os.environ['https_proxy'].rsplit(':', 1)[1])
    s = socket.create_connection(('127.0.0.1', port), 10)
    s.sendall(('CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n' % (target, target)).encode())
    head = s.recv(4096).decode(errors='replace').split('\r\n')[0]
    try:
        t = ssl.create_default_context(cafile=os.environ['SSL_CERT_FILE']).wrap_socket(s, server_hostname=name)
        t.sendall(b'GET / HTTP/1.1\r\nHost: ' + name.encode() + b'\r\nConnection: close\r\n\r\n')
        out({'connect': head, 'tls': 'ok', 'data': t.recv(2000).decode(errors='replace')})
    except Exception as e:
        out({'connect': head, 'error': type(e).__name__})
elif mode == 'raw':
    try:
        socket.create_connection((sys.argv[2], int(sys.argv[3])), 5).close()
        out({'connected': True})
    except Exception as e:
        out({'error': type(e).__name__ + ': ' + str(e)[:200]})
`;

interface ProbeResult {
  status?: number;
  denied?: string | null;
  body?: string;
  error?: string;
  connect?: string;
  tls?: string;
  data?: string;
  connected?: boolean;
}

/** A listener on every host address at a free port: what a connection that escaped would reach. */
async function hostTrap(): Promise<{ port: number; accepted: () => number; close: () => void }> {
  let accepted = 0;
  const server: Server = createServer((socket) => {
    accepted += 1;
    socket.destroy();
  });
  server.listen(0, '0.0.0.0');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    accepted: () => accepted,
    close: () => server.close(),
  };
}

/**
 * The egress attacks of issue 18, run against a real backend through the real API: a session's programs reach the
 * hosts its allowlist names through the proxy, and every way around it (names that resolve to local addresses, IP
 * literals in any spelling, redirects, another SNI, raw TCP past the proxy) reaches nothing.
 */
export function egressCases(get: () => EgressCaseContext): void {
  let sessionId = '';
  let trap: Awaited<ReturnType<typeof hostTrap>>;
  const events: SessionEvent[] = [];
  const stop = new AbortController();

  const probe = async (...args: string[]): Promise<ProbeResult> => {
    const { client } = get();
    const r = await client.exec.run.mutate({
      sessionId,
      command: ['python3', 'probe.py', ...args],
      env: { SSL_CERT_FILE: '/workspace/test-ca.pem' },
      timeoutMs: 60_000,
    });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as ProbeResult;
    } catch {
      throw new Error(`the probe printed no result (exit ${r.exitCode}): ${r.stdout}${r.stderr}`);
    }
  };
  const serverHits = () => get().net.hits();
  const audit = async () =>
    (await get().api.app.deps.store.listAudit({ action: 'egress.connection', limit: 1000 })).filter(
      (a) => a.target === sessionId,
    );

  it('setup: a session allowing allowed.test and the trap port of rebind.test and self.test', async () => {
    const { client, net, api, backend } = get();
    trap = await hostTrap();
    const created = await client.sessions.create.mutate({
      image: 'studio-sandbox:latest',
      backend,
      network: {
        mode: 'allowlist',
        allow: ['allowed.test', `rebind.test:${trap.port}`, `self.test:${trap.port}`, 'mixed.test'],
      },
    });
    sessionId = created.id;
    expect(created.network).toEqual({
      mode: 'allowlist',
      allow: ['allowed.test', `rebind.test:${trap.port}`, `self.test:${trap.port}`, 'mixed.test'],
    });
    void (async () => {
      for await (const e of api.app.deps.events.subscribe(sessionId, undefined, stop.signal)) {
        if (e.type !== 'gap') events.push(e);
      }
    })();
    await client.files.write.mutate({ sessionId, path: 'probe.py', content: PROBE });
    await client.files.write.mutate({ sessionId, path: 'test-ca.pem', content: net.ca.certPem });
  });

  it('reaches an allowed host over HTTP and HTTPS (verified against its certificate), through the proxy', async () => {
    get().net.clear();
    expect(await probe('get', 'http://allowed.test/hello')).toEqual({
      status: 200,
      body: 'hello http allowed.test',
    });
    expect(await probe('get', 'https://allowed.test/hello')).toEqual({
      status: 200,
      body: 'hello https allowed.test',
    });
    expect(serverHits().filter((h) => h.kind === 'request')).toMatchObject([
      { scheme: 'http', host: 'allowed.test', url: '/hello' },
      { scheme: 'https', host: 'allowed.test', url: '/hello' },
    ]);
    const allowed = events.filter((e) => e.type === 'egress' && e.allowed);
    expect(allowed.length).toBeGreaterThanOrEqual(2);
    expect(allowed[0]).toMatchObject({ actor: { kind: 'sandbox' }, host: 'allowed.test' });
  });

  it.each([
    ['a host not on the list', 'http://other.test/', 'not_allowed'],
    ['a name that resolves to loopback (DNS rebinding)', 'REBIND', 'private_address'],
    ['a name that resolves to the host itself', 'SELF', 'own_address'],
    ['a name with a private address among its addresses', 'http://mixed.test/', 'private_address'],
    ['an IPv4 literal', `http://${EGRESS_NET.server}/`, 'ip_literal'],
    ['a decimal IPv4 literal', 'http://3325256706/', 'ip_literal'],
    ['an IPv6 literal', 'http://[::ffff:c633:6402]/', 'ip_literal'],
    ['a redirect to the host', 'REDIRECT', 'ip_literal'],
  ])('refuses %s, and nothing reaches the target', async (_why, url, reason) => {
    get().net.clear();
    const target =
      url === 'REBIND'
        ? `http://rebind.test:${trap.port}/`
        : url === 'SELF'
          ? `http://self.test:${trap.port}/`
          : url === 'REDIRECT'
            ? `http://allowed.test/redirect?to=${encodeURIComponent(`http://${EGRESS_NET.host}:${trap.port}/`)}`
            : url;
    const before = trap.accepted();
    const r = await probe('get', target);
    expect(r).toMatchObject({ status: 403, denied: reason });
    expect(r.body).toMatch(/^EGRESS_DENIED/);
    expect(trap.accepted()).toBe(before);
    const reached = serverHits().filter(
      (h) => h.kind === 'request' && h.url !== '/redirect' && !h.url?.startsWith('/redirect?'),
    );
    expect(reached).toEqual([]);
    await expect.poll(async () => (await audit()).some((a) => a.details.reason === reason)).toBe(true);
  });

  it('cuts a tunnel to an allowed name whose TLS names another host, before anything is dialled', async () => {
    get().net.clear();
    const r = await probe('sni', 'allowed.test:443', 'other.test');
    expect(r.connect).toBe('HTTP/1.1 200 Connection Established');
    expect(r.tls).toBeUndefined();
    expect(serverHits()).toEqual([]);
    await expect
      .poll(() => events.some((e) => e.type === 'egress' && e.reason === 'sni_mismatch'))
      .toBe(true);
  });

  it('reaches nothing by raw TCP past the proxy: the sandbox has no route out', async () => {
    get().net.clear();
    const before = trap.accepted();
    for (const [host, port] of [
      [EGRESS_NET.server, '80'],
      [EGRESS_NET.host, String(trap.port)],
      ['1.1.1.1', '443'],
    ] as const) {
      const r = await probe('raw', host, port);
      expect(r.connected, `${host}:${port}`).toBeUndefined();
    }
    expect(serverHits()).toEqual([]);
    expect(trap.accepted()).toBe(before);
  });

  it('applies setNetwork at once: mode none refuses what was allowed, with EGRESS_DENIED and the fix', async () => {
    const { client } = get();
    const changed = await client.sessions.setNetwork.mutate({ sessionId, network: { mode: 'none' } });
    expect(changed.network).toEqual({ mode: 'none', allow: [] });
    get().net.clear();
    const r = await probe('get', 'http://allowed.test/hello');
    expect(r).toMatchObject({ status: 403, denied: 'mode_none' });
    expect(r.body).toContain('sessions.setNetwork');
    expect(serverHits()).toEqual([]);
    await expect(
      client.sessions.checkEgress.query({ sessionId, host: 'allowed.test' }),
    ).rejects.toMatchObject({
      code: 'EGRESS_DENIED',
    });
    const changes = (await get().api.app.deps.store.listAudit({ action: 'session.network' })).filter(
      (a) => a.target === sessionId,
    );
    expect(changes[0]?.details).toMatchObject({ to: { mode: 'none', allow: [] } });
  });

  it('cleanup', async () => {
    stop.abort();
    trap?.close();
    if (sessionId) await get().client.sessions.destroy.mutate({ sessionId });
  });
}
