import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createServer, type TLSSocket } from 'node:tls';
import { createCertificateAuthority, issueServerCertificate } from '../../egress/certificates.ts';

// The tests' stand-in for Traefik in front of Studio's preview listener: TLS with a wildcard certificate for
// `*.<domain>`, then the bytes as they are (Traefik's TCP passthrough after termination; the Host header reaches
// Studio untouched). The certificate is signed by a test CA the SDK's process trusts through NODE_EXTRA_CA_CERTS:
// a deployment has a publicly trusted wildcard certificate instead.

/** A listening TLS front. */
export interface TlsFront {
  /** The port it listens on (127.0.0.1). */
  port: number;
  /** The test CA's certificate (PEM file), for NODE_EXTRA_CA_CERTS. */
  caFile: string;
  /** Where decrypted connections go from now on. */
  forwardTo(port: number): void;
  close(): Promise<void>;
}

/** Starts a TLS front for `*.${domain}` on 127.0.0.1 (a free port); writes its CA into `dir`. */
export async function startTlsFront(options: { domain: string; dir: string }): Promise<TlsFront> {
  const ca = await createCertificateAuthority('Studio e2b-compat test CA', 2);
  const leaf = await issueServerCertificate(ca, [`*.${options.domain}`, options.domain], 2);
  const caFile = join(options.dir, 'e2b-compat-ca.pem');
  writeFileSync(caFile, ca.certPem);
  let target = 0;
  const open = new Set<Socket>();
  const server = createServer({ key: leaf.keyPem, cert: leaf.certPem }, (client: TLSSocket) => {
    open.add(client);
    client.once('close', () => open.delete(client));
    if (target === 0) {
      client.destroy();
      return;
    }
    const upstream = connect({ host: '127.0.0.1', port: target });
    open.add(upstream);
    upstream.once('close', () => open.delete(upstream));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  // A client that gives up mid-handshake is no error of the front's.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the TLS front has no port');
  return {
    port: address.port,
    caFile,
    forwardTo(port) {
      target = port;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
