import { describe, expect, it } from 'vitest';
import { cookieRequestRefusal, IDE_PROOF_VALUE } from './cookie-requests.ts';

const own = ['http://127.0.0.1:3000'];
const ok = { proof: IDE_PROOF_VALUE, origin: undefined, secFetchSite: undefined, ownOrigins: own };

describe('cookieRequestRefusal', () => {
  it("lets the IDE's own requests through", () => {
    expect(cookieRequestRefusal(ok)).toBeNull();
    expect(cookieRequestRefusal({ ...ok, origin: own[0], secFetchSite: 'same-origin' })).toBeNull();
  });

  it('refuses a request without the proof header, or with another value, whatever else it carries', () => {
    expect(cookieRequestRefusal({ ...ok, proof: undefined })).toMatch(/x-studio-ide/);
    expect(cookieRequestRefusal({ ...ok, proof: '0' })).not.toBeNull();
    expect(cookieRequestRefusal({ ...ok, proof: ['1', '1'] })).not.toBeNull();
    expect(
      cookieRequestRefusal({ ...ok, proof: undefined, origin: own[0], secFetchSite: 'same-origin' }),
    ).not.toBeNull();
  });

  it('refuses a foreign Origin and any Sec-Fetch-Site other than same-origin, even with the header', () => {
    expect(cookieRequestRefusal({ ...ok, origin: 'http://8000-abc.localhost:4001' })).toMatch(/origin/);
    expect(cookieRequestRefusal({ ...ok, origin: 'null' })).not.toBeNull();
    for (const site of ['cross-site', 'same-site', 'none']) {
      expect(cookieRequestRefusal({ ...ok, secFetchSite: site }), site).not.toBeNull();
    }
  });
});
