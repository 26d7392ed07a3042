import { once } from 'node:events';
import { createServer as createHttpServer, request } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, connect as netConnect, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { defaultPolicy, type NetworkSettings, parseSecretHeader } from '@studio/policy';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.ts';
import { createCertificateAuthority, issueServerCertificate, type PemPair } from './certificates.ts';
import { type EgressEvent, EgressProxy, type SecretBinding } from './egress-proxy.ts';
import { StudioCa } from './studio-ca.ts';

// The proxy's checks are real; only where a checked address leads is mapped: the test's "internet" is three
// servers on loopback, reached when the proxy dials the documentation addresses the test resolver gives.
const ALLOWED_IP = '198.51.100.7';
const OTHER_IP = '198.51.100.8';
const RESOLVER: Record<string, string[]> = {
  'allowed.test': [ALLOWED_IP],
  'other.test': [OTHER_IP],
  'rebind.test': ['127.0.0.1'],
  'mixed.test': [ALLOWED_IP, '10.0.0.1'],
  'metadata.test': ['169.254.169.254'],
  'self.test': ['198.51.100.1'],
};

let ca: PemPair;
const upstreamHits: string[] = [];
const dials: string[] = [];
const events: EgressEvent[] = [];
let settings: NetworkSettings = {
  mode: 'allowlist',
  allow: ['allowed.test', 'other.test', 'rebind.test', 'mixed.test', 'metadata.test', 'self.test'],
};
let limits = { ...defaultPolicy.egress, reachableNets: ['198.51.100.0/24'] };
let proxy: EgressProxy;
const servers: Server[] = [];
const ports = { http: 0, https: 0, proxy: 0 };

async function listen(server: Server): Promise<number> {
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

function makeProxy(): EgressProxy {
  return new EgressProxy({
    limits,
    logger: createLogger({ level: 'silent' }),
    resolve: async (host) => {
      const found = RESOLVER[host];
      if (!found) throw new Error('NXDOMAIN');
      return found;
    },
    dial: (address, port): Duplex => {
      dials.push(`${address}:${port}`);
      const local = port === 443 ? ports.https : ports.http;
      return netConnect({
        host: '127.0.0.1',
        port: address === ALLOWED_IP || address === OTHER_IP ? local : 9,
      });
    },
    ownAddresses: () => ['198.51.100.1'],
    onEvent: (e) => events.push(e),
  });
}

beforeAll(async () => {
  ca = await createCertificateAuthority('Studio test CA');
  const leaf = await issueServerCertificate(ca, ['allowed.test', 'other.test']);
  ports.http = await listen(
    createHttpServer((req, res) => {
      upstreamHits.push(`http ${req.headers.host} ${req.url}`);
      if (req.url === '/redirect') res.writeHead(302, { location: 'http://127.0.0.1/admin' }).end();
      else res.end(`hello from ${req.headers.host}`);
    }),
  );
  ports.https = await listen(
    createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
      upstreamHits.push(`https ${req.headers.host} ${req.url}`);
      if (req.url === '/echo') res.end(JSON.stringify(req.headers));
      else res.end(`secure hello from ${req.headers.host}`);
    }),
  );
  proxy = makeProxy();
  ports.proxy = await listen(
    createNetServer((socket: Socket) =>
      proxy.handle(socket, { sessionId: 'ses_test', ownerId: 'usr_test', settings: () => settings }),
    ),
  );
});

afterAll(() => {
  proxy.close();
  for (const s of servers) s.close();
});

beforeEach(() => {
  upstreamHits.length = 0;
  dials.length = 0;
  events.length = 0;
});

/** A plain-HTTP proxy request (absolute form), as curl and npm send for http:// URLs. */
async function viaProxy(url: string, headers: Record<string, string> = {}) {
  const req = request({ host: '127.0.0.1', port: ports.proxy, path: url, headers, agent: false });
  req.end();
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
  let body = '';
  for await (const chunk of res) body += chunk;
  return { status: res.statusCode, headers: res.headers, body };
}

/** A CONNECT tunnel; resolves with the status and, when 200, the socket. */
async function tunnel(target: string): Promise<{ status: number; socket: Socket; body: string }> {
  const req = request({
    host: '127.0.0.1',
    port: ports.proxy,
    method: 'CONNECT',
    path: target,
    agent: false,
  });
  req.end();
  return new Promise((resolve, reject) => {
    // Node reports every answer to a CONNECT as 'connect'; a refusal's body is what follows on the socket.
    req.once('connect', async (res, socket: Socket, head: Buffer) => {
      if (res.statusCode === 200) return resolve({ status: 200, socket, body: '' });
      let body = head.toString();
      for await (const chunk of socket) body += chunk;
      resolve({ status: res.statusCode ?? 0, socket, body });
    });
    req.once('error', reject);
  });
}

/** HTTPS through a tunnel with normal certificate verification against the test CA. */
async function httpsThrough(target: string, servername: string | undefined): Promise<string> {
  const t = await tunnel(target);
  if (t.status !== 200) throw new Error(`CONNECT answered ${t.status}: ${t.body}`);
  const tls = tlsConnect({ socket: t.socket, ca: ca.certPem, ...(servername ? { servername } : {}) });
  await new Promise<void>((resolve, reject) => {
    tls.once('secureConnect', resolve);
    tls.once('error', reject);
    tls.once('close', () => reject(new Error('the tunnel was closed')));
  });
  tls.write(`GET /x HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`);
  let text = '';
  for await (const chunk of tls) text += chunk;
  return text;
}

const settle = () => new Promise((r) => setTimeout(r, 50));

describe('EgressProxy: allowed traffic', () => {
  it('carries a plain-HTTP request to an allowed host, to the address it resolved, and reports it', async () => {
    const r = await viaProxy('http://allowed.test/hello', { host: 'allowed.test' });
    expect(r).toMatchObject({ status: 200, body: 'hello from allowed.test' });
    expect(dials).toEqual([`${ALLOWED_IP}:80`]);
    await settle();
    expect(events).toEqual([
      expect.objectContaining({ via: 'http', host: 'allowed.test', port: 80, allowed: true, bytesIn: 23 }),
    ]);
  });

  it('tunnels TLS to an allowed host, verified end to end against its own certificate', async () => {
    const text = await httpsThrough('allowed.test:443', 'allowed.test');
    expect(text).toContain('secure hello from allowed.test');
    expect(dials).toEqual([`${ALLOWED_IP}:443`]);
    await settle();
    expect(events[0]).toMatchObject({ via: 'connect', host: 'allowed.test', allowed: true });
    expect(events[0]?.bytesOut).toBeGreaterThan(200);
    expect(events[0]?.bytesIn).toBeGreaterThan(200);
  });

  it('passes a redirect to a private address on unfollowed, and refuses the request that follows it', async () => {
    const r = await viaProxy('http://allowed.test/redirect', { host: 'allowed.test' });
    expect(r.status).toBe(302);
    const next = await viaProxy(r.headers.location as string, { host: '127.0.0.1' });
    expect(next.status).toBe(403);
    expect(next.headers['x-studio-egress-denied']).toBe('ip_literal');
    expect(dials).toEqual([`${ALLOWED_IP}:80`]);
  });
});

describe('EgressProxy: refused traffic never reaches a destination', () => {
  it.each([
    ['a host not on the list', 'http://denied.test/', 'denied.test', 'not_allowed'],
    ['a name resolving to loopback (DNS rebinding)', 'http://rebind.test/', 'rebind.test', 'private_address'],
    [
      'a name with one private address among public ones',
      'http://mixed.test/',
      'mixed.test',
      'private_address',
    ],
    ['a loopback IP literal', 'http://127.0.0.1/', '127.0.0.1', 'ip_literal'],
    ['a decimal IP literal', 'http://2130706433/', '2130706433', 'ip_literal'],
    ['an IPv6 literal', 'http://[::1]/', '[::1]', 'ip_literal'],
    ['a Host header that is not the target', 'http://allowed.test/', 'other.test', 'host_mismatch'],
    ['an origin-form request (not a proxy request)', '/', 'allowed.test', 'bad_request'],
  ])('plain HTTP: %s', async (_why, url, host, reason) => {
    const r = await viaProxy(url, { host });
    expect(r.status).toBe(403);
    expect(r.headers['x-studio-egress-denied']).toBe(reason);
    expect(r.body).toMatch(/^EGRESS_DENIED/);
    expect(dials).toEqual([]);
    expect(upstreamHits).toEqual([]);
    await settle();
    expect(events).toEqual([expect.objectContaining({ allowed: false, reason })]);
  });

  it.each([
    ['a host not on the list', 'denied.test:443', 'not_allowed'],
    ['a port not on the list', 'allowed.test:22', 'port_not_allowed'],
    ['a name resolving to cloud metadata', 'metadata.test:443', 'private_address'],
    ['a name resolving to loopback', 'rebind.test:443', 'private_address'],
    ['a name resolving to an address of the host itself', 'self.test:443', 'own_address'],
    ['an IPv4 literal', '127.0.0.1:443', 'ip_literal'],
    ['a hex IPv4 literal', '0x7f000001:443', 'ip_literal'],
    ['an IPv6 literal', '[::ffff:127.0.0.1]:443', 'ip_literal'],
    ['a target without a port', 'allowed.test', 'bad_request'],
  ])('CONNECT: %s', async (_why, target, reason) => {
    const t = await tunnel(target);
    expect(t.status).toBe(403);
    expect(t.body).toContain(`EGRESS_DENIED (${reason})`);
    expect(dials).toEqual([]);
    await settle();
    expect(events).toEqual([expect.objectContaining({ via: 'connect', allowed: false, reason })]);
  });

  it('CONNECT to an allowed name whose ClientHello names another host is cut before anything is dialled', async () => {
    await expect(httpsThrough('allowed.test:443', 'other.test')).rejects.toThrow();
    await expect(httpsThrough('allowed.test:443', undefined)).rejects.toThrow();
    expect(dials).toEqual([]);
    expect(upstreamHits).toEqual([]);
    await settle();
    expect(events.map((e) => e.reason)).toEqual(['sni_mismatch', 'sni_mismatch']);
  });

  it('CONNECT carrying anything but TLS is cut before anything is dialled', async () => {
    const t = await tunnel('allowed.test:443');
    expect(t.status).toBe(200);
    t.socket.write('GET / HTTP/1.1\r\nhost: other.test\r\n\r\n');
    await once(t.socket, 'close');
    expect(dials).toEqual([]);
    await settle();
    expect(events).toEqual([expect.objectContaining({ allowed: false, reason: 'not_tls' })]);
  });

  it('mode none refuses everything, naming the fix', async () => {
    const before = settings;
    settings = { mode: 'none', allow: ['allowed.test'] };
    try {
      const r = await viaProxy('http://allowed.test/', { host: 'allowed.test' });
      expect(r.status).toBe(403);
      expect(r.body).toContain('sessions.setNetwork');
      expect(dials).toEqual([]);
    } finally {
      settings = before;
    }
  });
});

describe('EgressProxy: limits', () => {
  it('refuses new connections past the rate, and closeSession ends open tunnels', async () => {
    const before = limits;
    limits = { ...limits, connectionsPerMinute: 2 };
    const limited = makeProxy();
    const server = createNetServer((socket: Socket) =>
      limited.handle(socket, { sessionId: 'ses_rate', ownerId: 'usr_test', settings: () => settings }),
    );
    const port = await listen(server);
    const saved = ports.proxy;
    ports.proxy = port;
    try {
      const open = await tunnel('allowed.test:443');
      expect(open.status).toBe(200);
      expect((await viaProxy('http://allowed.test/', { host: 'allowed.test' })).status).toBe(200);
      const third = await viaProxy('http://allowed.test/', { host: 'allowed.test' });
      expect(third.headers['x-studio-egress-denied']).toBe('rate_limit');
      const closed = once(open.socket, 'close');
      limited.closeSession('ses_rate');
      await closed;
    } finally {
      ports.proxy = saved;
      limits = before;
      limited.close();
    }
  });
});

describe('EgressProxy: secrets', () => {
  const VALUE = 'sk-live-THE-REAL-VALUE';
  const PLACEHOLDER = 'studio-placeholder-AAAA';
  const binding: SecretBinding = {
    name: 'API_KEY',
    placeholder: PLACEHOLDER,
    value: VALUE,
    header: parseSecretHeader('Authorization: Bearer {{value}}'),
  };
  let studio: StudioCa;
  let secretPort = 0;
  let trustUpstream = true;
  const make = () =>
    new EgressProxy({
      limits,
      logger: createLogger({ level: 'silent' }),
      resolve: async (host) => RESOLVER[host] ?? [],
      dial: (address, port): Duplex => {
        dials.push(`${address}:${port}`);
        return netConnect({ host: '127.0.0.1', port: port === 443 ? ports.https : ports.http });
      },
      ownAddresses: () => ['198.51.100.1'],
      onEvent: (e) => events.push(e),
      intercept: {
        leafFor: (host) => studio.leafFor(host),
        get upstreamCa() {
          return trustUpstream ? [ca.certPem] : [];
        },
      },
    });
  let secretProxy: EgressProxy;

  beforeAll(async () => {
    studio = await StudioCa.ephemeral();
    secretProxy = make();
    secretPort = await listen(
      createNetServer((socket: Socket) =>
        secretProxy.handle(socket, {
          sessionId: 'ses_secret',
          ownerId: 'usr_test',
          settings: () => settings,
          secretsFor: async (host) => (host === 'allowed.test' ? [binding] : []),
        }),
      ),
    );
  });
  afterAll(() => secretProxy.close());
  beforeEach(() => {
    trustUpstream = true;
  });
  // A tunnel's event comes when it closes: let the last one arrive before the next test clears the list.
  afterEach(() => settle());

  /** One HTTPS request through the secret proxy, trusting `trust`; the status line and body. */
  async function secretRequest(target: string, trust: string, head: string): Promise<string> {
    const req = request({
      host: '127.0.0.1',
      port: secretPort,
      method: 'CONNECT',
      path: target,
      agent: false,
    });
    req.end();
    const [res, socket] = (await once(req, 'connect')) as [{ statusCode: number }, Socket];
    expect(res.statusCode).toBe(200);
    const tls = tlsConnect({ socket, ca: trust, servername: target.split(':')[0] as string });
    await once(tls, 'secureConnect');
    tls.write(`${head}connection: close\r\n\r\n`);
    let text = '';
    for await (const chunk of tls) text += chunk;
    return text;
  }

  it('terminates TLS for a secret host with the Studio CA and swaps the placeholder for the value', async () => {
    const text = await secretRequest(
      'allowed.test:443',
      studio.certPem,
      `GET /echo HTTP/1.1\r\nhost: allowed.test\r\nauthorization: Bearer ${PLACEHOLDER}\r\nx-other: ${PLACEHOLDER}\r\n`,
    );
    expect(text).toMatch(/^HTTP\/1.1 200/);
    const echoed = JSON.parse(text.slice(text.indexOf('{'))) as Record<string, string>;
    expect(echoed.authorization).toBe(`Bearer ${VALUE}`);
    expect(echoed['x-other']).toBe(VALUE);
    expect(dials).toEqual([`${ALLOWED_IP}:443`]);
    await settle();
    expect(events).toEqual([
      expect.objectContaining({ via: 'connect', host: 'allowed.test', allowed: true, secrets: ['API_KEY'] }),
    ]);
    expect(JSON.stringify(events)).not.toContain(VALUE);
  });

  it("adds the secret's header when the program did not send it", async () => {
    const text = await secretRequest(
      'allowed.test:443',
      studio.certPem,
      'GET /echo HTTP/1.1\r\nhost: allowed.test\r\n',
    );
    expect(JSON.parse(text.slice(text.indexOf('{'))).authorization).toBe(`Bearer ${VALUE}`);
  });

  it('leaves a host that no secret names alone: a plain tunnel, the placeholder unchanged', async () => {
    // other.test is verified against its own certificate (the test CA): the proxy did not terminate TLS.
    const text = await secretRequest(
      'other.test:443',
      ca.certPem,
      `GET /echo HTTP/1.1\r\nhost: other.test\r\nauthorization: Bearer ${PLACEHOLDER}\r\n`,
    );
    const echoed = JSON.parse(text.slice(text.indexOf('{'))) as Record<string, string>;
    expect(echoed.authorization).toBe(`Bearer ${PLACEHOLDER}`);
    expect(text).not.toContain(VALUE);
  });

  it('refuses a request whose Host is not the tunnel host, without sending anything upstream', async () => {
    const text = await secretRequest(
      'allowed.test:443',
      studio.certPem,
      `GET /echo HTTP/1.1\r\nhost: other.test\r\nauthorization: Bearer ${PLACEHOLDER}\r\n`,
    );
    expect(text).toMatch(/^HTTP\/1.1 403/);
    expect(text).toContain('host_mismatch');
    expect(dials).toEqual([]);
    expect(upstreamHits).toEqual([]);
    await settle();
    expect(events).toEqual([expect.objectContaining({ allowed: false, reason: 'host_mismatch' })]);
  });

  it('sends nothing to an upstream whose certificate does not verify', async () => {
    trustUpstream = false;
    const text = await secretRequest(
      'allowed.test:443',
      studio.certPem,
      `GET /echo HTTP/1.1\r\nhost: allowed.test\r\nauthorization: Bearer ${PLACEHOLDER}\r\n`,
    );
    expect(text).toMatch(/^HTTP\/1.1 502/);
    expect(text).toContain('does not verify');
    expect(upstreamHits).toEqual([]);
    await settle();
    expect(events).toEqual([expect.objectContaining({ allowed: false, reason: 'upstream_failed' })]);
  });
});
