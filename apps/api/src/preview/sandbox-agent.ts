import { Agent } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * The socket calls a proxy makes on the connection it forwards over (timeouts, Nagle, TCP keep-alive): they
 * mean nothing on a stream through the in-sandbox agent, whose agent connection is a socket of its own.
 */
const SOCKET_TUNING = ['setTimeout', 'setNoDelay', 'setKeepAlive'] as const;

/**
 * An `http.Agent` whose one connection is `stream`, a byte stream to a port inside the sandbox from
 * `sandbox.connect(port)`: whatever the request's host and port say, nothing is dialled. Not kept alive: one
 * stream per request, closed with its response.
 */
export function sandboxAgent(stream: Duplex): Agent {
  const socket = stream as Duplex & Partial<Record<(typeof SOCKET_TUNING)[number], unknown>>;
  for (const name of SOCKET_TUNING) {
    if (typeof socket[name] !== 'function') {
      Object.defineProperty(socket, name, { value: () => socket, configurable: true });
    }
  }
  let handed = false;
  const agent = new Agent({ keepAlive: false, maxSockets: 1 });
  agent.createConnection = (_options, callback) => {
    // One stream, one request: a second connection would have to be a second sandbox.connect().
    if (handed) {
      callback?.(new Error('a sandbox stream carries one request'), socket);
      return undefined;
    }
    handed = true;
    return socket;
  };
  return agent;
}
