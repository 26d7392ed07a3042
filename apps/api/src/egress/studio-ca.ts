import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createCertificateAuthority,
  issueServerCertificate,
  type PemPair,
  splitPem,
} from './certificates.ts';

/** The CA's key and certificate, in one file so that a reader never sees one without the other. */
const CA_FILE = 'egress-ca.pem';
const LEAF_DAYS = 30;
const LEAF_REUSE_MS = 7 * 86_400_000;
const MAX_LEAVES = 1_000;

/**
 * The deployment's Studio CA (issue 18): made on the first start in the data dir (`egress-ca.pem`: its key and
 * certificate, 0600) and kept, so sandboxes trust one CA for the deployment's life. Its certificate goes
 * into every sandbox; its key never leaves the API. The egress proxy signs a leaf with it for a host only when it
 * must read a request to put a secret in (see EgressProxy).
 */
export class StudioCa {
  readonly certPem: string;
  readonly #ca: PemPair;
  readonly #leaves = new Map<string, { pair: Promise<PemPair>; at: number }>();

  private constructor(ca: PemPair) {
    this.#ca = ca;
    this.certPem = ca.certPem;
  }

  /** The CA in `dataDir`, made there when missing. */
  static async load(dataDir: string): Promise<StudioCa> {
    const file = join(dataDir, CA_FILE);
    if (!existsSync(file)) {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const made = await createCertificateAuthority('Claude Studio egress CA');
      // Written whole and renamed into place: two starts racing leave one complete CA, and each reads that one.
      const tmp = `${file}.${process.pid}.${Date.now()}`;
      writeFileSync(tmp, `${made.keyPem}\n${made.certPem}`, { mode: 0o600 });
      renameSync(tmp, file);
    }
    chmodSync(file, 0o600);
    const text = readFileSync(file, 'utf8');
    const keyPem = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(text)?.[0];
    const certPem = splitPem(text)[0];
    if (!keyPem || !certPem)
      throw new Error(`${file} is not a Studio CA (a key and a certificate); delete it to make one`);
    return new StudioCa({ certPem: `${certPem}\n`, keyPem: `${keyPem}\n` });
  }

  /** A CA held only in memory (tests, and an API without a data dir to keep it in). */
  static async ephemeral(): Promise<StudioCa> {
    return new StudioCa(await createCertificateAuthority('Claude Studio egress CA (ephemeral)'));
  }

  /** A server certificate for `host`, signed by this CA; reused for a week (valid for 30 days). */
  leafFor(host: string): Promise<PemPair> {
    const now = Date.now();
    const cached = this.#leaves.get(host);
    if (cached && now - cached.at < LEAF_REUSE_MS) return cached.pair;
    if (this.#leaves.size >= MAX_LEAVES) this.#leaves.clear();
    const pair = issueServerCertificate(this.#ca, [host], LEAF_DAYS);
    pair.catch(() => this.#leaves.delete(host));
    this.#leaves.set(host, { pair, at: now });
    return pair;
  }
}
