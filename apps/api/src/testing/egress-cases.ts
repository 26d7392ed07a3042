import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import type { StudioClient } from '@studio/client';
import { describe, expect, it } from 'vitest';
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
elif mode == 'auth':
    req = urllib.request.Request(sys.argv[2], headers={'Authorization': 'Bearer ' + os.environ.get('API_KEY', '')})
    try:
        r = urllib.request.urlopen(req, timeout=20)
        out({'status': r.status, 'body': r.read().decode(errors='replace')[:500]})
    except Exception as e:
        out({'error': type(e).__name__ + ': ' + str(e)[:300]})
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

  const probe = async (...args: string[]): Promise<ProbeResult> => probeIn(sessionId, ...args);
  const probeIn = async (id: string, ...args: string[]): Promise<ProbeResult> => {
    const { client } = get();
    // No certificate settings of its own: the sandbox trusts what the gateway installed (the Studio CA and the
    // operator's extra CA, here the test network's).
    const r = await client.exec.run.mutate({
      sessionId: id,
      command: ['python3', 'probe.py', ...args],
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
    expect(net.ca.certPem).toContain('BEGIN CERTIFICATE');
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

  describe('secrets', () => {
    const VALUE = `sk-test-${'V'.repeat(8)}-${Date.now()}`;
    const ROTATED = `${VALUE}-rotated`;
    let secretSession = '';
    const authOf = (host: string) =>
      serverHits()
        .filter((h) => h.kind === 'request' && h.host === host)
        .map((h) => h.headers?.authorization);

    it('setup: a stored secret for allowed.test and a session given it', async () => {
      const { client, backend } = get();
      const stored = await client.secrets.create.mutate({
        name: 'API_KEY',
        value: VALUE,
        hosts: ['allowed.test'],
      });
      expect(stored).toEqual(expect.objectContaining({ name: 'API_KEY', hosts: ['allowed.test'] }));
      expect(JSON.stringify(stored)).not.toContain(VALUE);
      expect(JSON.stringify(await client.secrets.list.query())).not.toContain(VALUE);
      const created = await client.sessions.create.mutate({
        image: 'studio-sandbox:latest',
        backend,
        network: { mode: 'allowlist', allow: ['allowed.test', 'other.test'] },
        secrets: ['API_KEY'],
      });
      secretSession = created.id;
      await client.files.write.mutate({ sessionId: secretSession, path: 'probe.py', content: PROBE });
    });

    it('the session sees a placeholder; the value reaches allowed.test only, over HTTPS', async () => {
      const { client } = get();
      const env = await client.exec.run.mutate({
        sessionId: secretSession,
        command: ['printenv', 'API_KEY'],
      });
      const placeholder = env.stdout.trim();
      expect(placeholder).toMatch(/^studio-placeholder-/);
      get().net.clear();
      expect(await probeIn(secretSession, 'auth', 'https://allowed.test/echo')).toMatchObject({
        status: 200,
      });
      expect(authOf('allowed.test')).toEqual([`Bearer ${VALUE}`]);
      // Another host, even one the session may reach, gets the placeholder unchanged; so does plain HTTP.
      expect(await probeIn(secretSession, 'auth', 'https://other.test/echo')).toMatchObject({ status: 200 });
      expect(authOf('other.test')).toEqual([`Bearer ${placeholder}`]);
      get().net.clear();
      expect(await probeIn(secretSession, 'auth', 'http://allowed.test/echo')).toMatchObject({ status: 200 });
      expect(authOf('allowed.test')).toEqual([`Bearer ${placeholder}`]);
    });

    it('a rotated value is used from the next connection', async () => {
      await get().client.secrets.rotate.mutate({ name: 'API_KEY', value: ROTATED });
      get().net.clear();
      expect(await probeIn(secretSession, 'auth', 'https://allowed.test/echo')).toMatchObject({
        status: 200,
      });
      expect(authOf('allowed.test')).toEqual([`Bearer ${ROTATED}`]);
    });

    it('is never readable inside the sandbox: environment, files, /proc, nor the CA key', async () => {
      const { client } = get();
      // Every process's environment and command line, the writable places and the trust files, searched for the
      // values and for any private key (the Studio CA's key never leaves the API).
      // The values come in on stdin and the key's marker is put together at run time, so the search itself puts
      // none of them into a command line or an environment.
      const script = [
        'read -r v1; read -r v2; k="PRIVATE"; k="$k KEY"; p="studio-"; p="$p"placeholder-',
        'for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat "$f" 2>/dev/null; done > /tmp/proc-dump',
        'for v in "$v1" "$v2" "$k" "$p"; do if grep -rqsF -- "$v" /tmp /workspace /home /etc /root 2>/dev/null; then echo "FOUND $v"; fi; done',
        'ls /tmp/studio-egress',
        'rm -f /tmp/proc-dump',
      ].join('\n');
      const r = await client.exec.run.mutate({
        sessionId: secretSession,
        command: ['sh', '-c', script],
        stdin: `${VALUE}\n${ROTATED}\n`,
        timeoutMs: 60_000,
      });
      expect(r.stdout).not.toContain(`FOUND ${VALUE}`);
      expect(r.stdout).not.toContain(`FOUND ${ROTATED}`);
      expect(r.stdout).not.toContain('FOUND PRIVATE KEY');
      expect(r.stdout).toContain('ca-bundle.pem');
      // The search can fail: the placeholder, which the environments do hold, is found in them.
      expect(r.stdout).toContain('FOUND studio-placeholder-');
    });

    it('no value in events, audit records or API responses', async () => {
      const { api, client } = get();
      await expect
        .poll(async () =>
          (await api.app.deps.store.listAudit({ action: 'egress.connection', limit: 1000 })).some(
            (a) => a.target === secretSession && JSON.stringify(a.details).includes('API_KEY'),
          ),
        )
        .toBe(true);
      const everything = JSON.stringify([
        await api.app.deps.store.listAudit({ limit: 10_000 }),
        await client.sessions.get.query({ sessionId: secretSession }),
        await client.secrets.list.query(),
      ]);
      expect(everything).not.toContain(VALUE);
      expect(everything).not.toContain(ROTATED);
    });

    it('cleanup', async () => {
      if (secretSession) await get().client.sessions.destroy.mutate({ sessionId: secretSession });
      await get().client.secrets.delete.mutate({ name: 'API_KEY' });
    });
  });

  it('cleanup', async () => {
    stop.abort();
    trap?.close();
    if (sessionId) await get().client.sessions.destroy.mutate({ sessionId });
  });
}
