import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFirstBytes } from './client-hello.ts';

// Real ClientHellos, as Node's TLS stack writes them, caught by a plain TCP server.
let port = 0;
const firsts: Promise<Buffer>[] = [];
const server = createServer((socket: Socket) => {
  firsts.push(
    new Promise((resolve) => {
      let got = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
          resolve(got);
          socket.destroy();
        }
      });
    }),
  );
});

beforeAll(async () => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
});
afterAll(() => server.close());

async function helloOf(servername: string | undefined): Promise<Buffer> {
  const before = firsts.length;
  const socket = connect({ host: '127.0.0.1', port, ...(servername ? { servername } : {}) });
  socket.on('error', () => undefined);
  while (firsts.length === before) await new Promise((r) => setTimeout(r, 5));
  const hello = await (firsts[before] as Promise<Buffer>);
  socket.destroy();
  return hello;
}

describe('readFirstBytes', () => {
  it('reads the SNI name of a real ClientHello, and null when there is none', async () => {
    expect(readFirstBytes(await helloOf('Registry.Example.COM'))).toEqual({
      kind: 'tls',
      serverName: 'registry.example.com',
    });
    expect(readFirstBytes(await helloOf(undefined))).toEqual({ kind: 'tls', serverName: null });
  });

  it('waits for the whole record, and never guesses from a cut or altered hello', async () => {
    const hello = await helloOf('a.example.com');
    expect(readFirstBytes(hello.subarray(0, 3))).toEqual({ kind: 'incomplete' });
    expect(readFirstBytes(hello.subarray(0, hello.length - 1))).toEqual({ kind: 'incomplete' });
    const shorter = Buffer.from(hello);
    shorter.writeUInt16BE(40, 3); // the record claims less than the hello inside it
    expect(readFirstBytes(shorter).kind).toBe('other');
    const nameIndex = hello.indexOf('a.example.com');
    const odd = Buffer.from(hello);
    odd[nameIndex] = 0x2f; // '/': not a host name
    expect(readFirstBytes(odd).kind).toBe('other');
  });

  it('tells plain HTTP and other protocols apart', () => {
    expect(readFirstBytes(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n'))).toEqual({ kind: 'http' });
    expect(readFirstBytes(Buffer.from('GE'))).toEqual({ kind: 'incomplete' });
    expect(readFirstBytes(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'))).toEqual({ kind: 'other' });
    expect(readFirstBytes(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x02, 0x02, 0x00]))).toEqual({
      kind: 'other',
    });
  });
});
