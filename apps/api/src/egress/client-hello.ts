/**
 * What the first bytes of a tunnel say about its protocol: a TLS ClientHello (with its SNI name, or null when it
 * sends none), a plain HTTP request, something else, or not enough bytes yet.
 */
export type FirstBytes =
  | { kind: 'incomplete' }
  | { kind: 'tls'; serverName: string | null }
  | { kind: 'http' }
  | { kind: 'other' };

/** Bytes a ClientHello may take before the tunnel is refused (one TLS record plus its header). */
export const MAX_CLIENT_HELLO_BYTES = 16_384 + 5;

const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const SERVER_NAME = 0x0000;
const HTTP_METHOD = /^[A-Z]{3,10} /;

/**
 * Reads the first bytes a sandbox program sent into a CONNECT tunnel. Only the first TLS record is read: every
 * ClientHello of a current client fits one (16 KiB). A malformed hello is `other`, never a guess at a name.
 */
export function readFirstBytes(buf: Buffer): FirstBytes {
  if (buf.length === 0) return { kind: 'incomplete' };
  if (buf[0] !== HANDSHAKE) {
    const head = buf.subarray(0, 11).toString('latin1');
    if (HTTP_METHOD.test(head)) return { kind: 'http' };
    return buf.length < 11 && /^[A-Z]*$/.test(head) ? { kind: 'incomplete' } : { kind: 'other' };
  }
  if (buf.length < 5) return { kind: 'incomplete' };
  const recordLength = buf.readUInt16BE(3);
  if (buf[1] !== 0x03 || recordLength < 4) return { kind: 'other' };
  if (buf.length < 5 + recordLength) return { kind: 'incomplete' };
  const body = buf.subarray(5, 5 + recordLength);
  if (body[0] !== CLIENT_HELLO) return { kind: 'other' };
  const helloLength = body.readUIntBE(1, 3);
  if (helloLength + 4 > body.length) return { kind: 'other' };
  const hello = body.subarray(4, 4 + helloLength);
  const name = serverNameOf(hello);
  return name === undefined ? { kind: 'other' } : { kind: 'tls', serverName: name };
}

/** The SNI host name of a ClientHello body; null without one, undefined when the hello is malformed. */
function serverNameOf(hello: Buffer): string | null | undefined {
  let at = 2 + 32; // client_version, random
  const skip = (lengthBytes: number): boolean => {
    if (at + lengthBytes > hello.length) return false;
    const n = hello.readUIntBE(at, lengthBytes);
    at += lengthBytes + n;
    return at <= hello.length;
  };
  if (!skip(1) || !skip(2) || !skip(1)) return undefined; // session id, cipher suites, compression methods
  if (at === hello.length) return null; // no extensions
  if (at + 2 > hello.length) return undefined;
  const end = at + 2 + hello.readUInt16BE(at);
  if (end > hello.length) return undefined;
  at += 2;
  while (at + 4 <= end) {
    const type = hello.readUInt16BE(at);
    const length = hello.readUInt16BE(at + 2);
    const data = hello.subarray(at + 4, at + 4 + length);
    at += 4 + length;
    if (at > end) return undefined;
    if (type !== SERVER_NAME) continue;
    // server_name_list: u16 length, then entries of (u8 type, u16 length, name); type 0 is a host name.
    if (data.length < 5 || data[2] !== 0) return undefined;
    const nameLength = data.readUInt16BE(3);
    if (5 + nameLength > data.length || nameLength === 0) return undefined;
    const name = data.subarray(5, 5 + nameLength).toString('latin1');
    return /^[A-Za-z0-9.-]+$/.test(name) ? name.toLowerCase() : undefined;
  }
  return at === end ? null : undefined;
}
