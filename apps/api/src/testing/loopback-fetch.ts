import { request } from 'node:http';
import type { LookupFunction } from 'node:net';
import { Readable } from 'node:stream';

// Browsers resolve `*.localhost` to loopback; Node's resolver does not, and fetch cannot set `Host`. Tests of
// preview host names go through node:http with a lookup that sends every name to 127.0.0.1.
export const loopbackLookup: LookupFunction = (_host, options, callback) => {
  if (options.all)
    (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [
      { address: '127.0.0.1', family: 4 },
    ]);
  else callback(null, '127.0.0.1', 4);
};

/**
 * `fetch` for tests, on any host name resolved to 127.0.0.1 (as browsers do for `*.localhost`); `Host` may be
 * overridden in `headers`. Never follows redirects.
 */
export function loopbackFetch(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; redirect?: 'manual' } = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: init.method ?? 'GET', headers: init.headers, lookup: loopbackLookup });
    req.on('response', (res) => {
      const headers = new Headers();
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        headers.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
      }
      const status = res.statusCode ?? 0;
      const body =
        status === 204 || status === 304 ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
      resolve(new Response(body, { status, headers }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}
