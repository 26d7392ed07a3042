// Issue 23: node services act for whoever the signed principal names. Anyone who can reach a node service on the
// cluster network (another container, a compromised sandbox's neighbour) must not be able to forge a forwarded
// request with a secret of their own, nor turn a header they captured into a different request.
import { describe, expect, it } from 'vitest';
import {
  EMPTY_BODY_SHA256,
  type NodeRequestClaims,
  signNodeRequest,
  verifyNodeRequest,
} from '../node-auth.ts';

const CLUSTER_SECRET = new Uint8Array(Array.from({ length: 48 }, (_, i) => (i * 41 + 5) & 255));
const ATTACKER_SECRET = new Uint8Array(Array.from({ length: 48 }, (_, i) => (i * 7 + 200) & 255));
const NOW = 1_800_000_000_000;

const readFile: NodeRequestClaims = {
  method: 'GET',
  path: '/sessions/ses_victimvictimvict/files?path=README.md',
  bodySha256: EMPTY_BODY_SHA256,
  principal: '{"userId":"user_victim","role":"member"}',
  at: NOW,
  nonce: 'captured-nonce-0001',
};

describe('regression: forged node requests', () => {
  it('a header made with another secret is refused', () => {
    const forged = signNodeRequest(ATTACKER_SECRET, {
      ...readFile,
      principal: '{"userId":"admin","role":"admin"}',
    });
    const result = verifyNodeRequest(
      CLUSTER_SECRET,
      forged,
      { ...readFile, principal: '{"userId":"admin","role":"admin"}' },
      { now: NOW },
    );
    expect(result).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('a captured header replayed for another path, method or body is refused', () => {
    const captured = signNodeRequest(CLUSTER_SECRET, readFile);
    const { at: _at, nonce: _nonce, ...seen } = readFile;
    expect(verifyNodeRequest(CLUSTER_SECRET, captured, seen, { now: NOW }).ok).toBe(true);
    for (const replay of [
      { ...seen, path: '/sessions/ses_victimvictimvict/exec' },
      { ...seen, path: '/sessions/ses_othersessionxx/files?path=README.md' },
      { ...seen, path: '/sessions/ses_victimvictimvict/files?path=.env' },
      { ...seen, method: 'DELETE' },
      { ...seen, method: 'POST', bodySha256: 'a'.repeat(64) },
    ]) {
      expect(verifyNodeRequest(CLUSTER_SECRET, captured, replay, { now: NOW + 1000 })).toEqual({
        ok: false,
        reason: 'mismatch',
      });
    }
  });

  it('a captured header replayed after the window is refused even for the same request', () => {
    const captured = signNodeRequest(CLUSTER_SECRET, readFile);
    const { at: _at, nonce: _nonce, ...seen } = readFile;
    expect(verifyNodeRequest(CLUSTER_SECRET, captured, seen, { now: NOW + 30_001 })).toEqual({
      ok: false,
      reason: 'expired',
    });
  });
});
