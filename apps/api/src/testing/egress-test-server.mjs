// The egress tests' "internet": an HTTP server on :80 and an HTTPS server on :443 (the test CA's certificate),
// run by egress-net.ts inside a network namespace of its own. Every TCP connection and every request is written
// to stdout as one JSON line, so a test can prove that a refused connection reached nothing.
// Usage: node egress-test-server.mjs CERT_FILE KEY_FILE
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';

const [certFile, keyFile] = process.argv.slice(2);
const log = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

function handler(scheme) {
  return (req, res) => {
    log({ kind: 'request', scheme, host: req.headers.host ?? null, url: req.url, headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/redirect') {
      res.writeHead(302, { location: url.searchParams.get('to') ?? 'http://127.0.0.1/admin' });
      res.end();
      return;
    }
    const bytes = /^\/bytes\/([0-9]{1,9})$/.exec(req.url ?? '');
    if (bytes) {
      const total = Number(bytes[1]);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let sent = 0;
      const more = () => {
        while (sent < total) {
          const part = chunk.subarray(0, Math.min(chunk.length, total - sent));
          sent += part.length;
          if (!res.write(part)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
      return;
    }
    res.end(`hello ${scheme} ${req.headers.host}`);
  };
}

const servers = [
  [createServer(handler('http')), 80],
  [createHttpsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, handler('https')), 443],
];
let listening = 0;
for (const [server, port] of servers) {
  server.on('connection', () => log({ kind: 'connection', port }));
  server.listen(port, '0.0.0.0', () => {
    listening += 1;
    if (listening === servers.length) log({ kind: 'ready' });
  });
}
process.on('SIGTERM', () => process.exit(0));
