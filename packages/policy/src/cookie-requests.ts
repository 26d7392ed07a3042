/**
 * The request header by which the IDE proves a cookie-authenticated request is its own. Any value other than
 * {@link IDE_PROOF_VALUE} is no proof.
 *
 * Security meaning: a page of another origin cannot send a header outside the CORS safelist without a preflight
 * that the API never approves, and `<img>`, `<form>`, `<link>`, navigations, `EventSource` and `WebSocket` cannot
 * set headers at all. So the header's presence proves the request was made by script on the IDE's own origin
 * (which proxies the API). A constant suffices: what protects it is who can send it, not what it says.
 */
export const IDE_PROOF_HEADER = 'x-studio-ide';

/** The value of {@link IDE_PROOF_HEADER}. */
export const IDE_PROOF_VALUE = '1';

/** What {@link cookieRequestRefusal} looks at: header values as received (undefined when absent). */
export interface CookieRequestFacts {
  /** The value of {@link IDE_PROOF_HEADER}. */
  proof: string | string[] | undefined;
  /** `Origin`. */
  origin: string | string[] | undefined;
  /** `Sec-Fetch-Site`, sent by current browsers on every request. */
  secFetchSite: string | string[] | undefined;
  /** Origins that are Studio's own (the IDE's, the API's), e.g. `https://studio.example.com`. */
  ownOrigins: readonly string[];
}

/**
 * Why a request that carries Studio's login cookie must be refused, or null when it may proceed. A request
 * passes only with the IDE's proof header, no foreign `Origin`, and no `Sec-Fetch-Site` other than
 * `same-origin`.
 *
 * Security meaning: browsers attach cookies to requests that other pages cause (images, forms, navigations,
 * EventSource, credentialed fetch), so a cookie alone proves nothing about who asked. This is the check that
 * makes the cookie usable only by the IDE, whatever the method, before any procedure runs. `Origin` and
 * `Sec-Fetch-Site` are defence in depth: the proof header alone already excludes every cross-origin page.
 * Bearer-token callers are not subject to it (a page cannot hold their token).
 */
export function cookieRequestRefusal(facts: CookieRequestFacts): string | null {
  if (facts.proof !== IDE_PROOF_VALUE) {
    return `requests with the login cookie must come from the Studio IDE (header ${IDE_PROOF_HEADER}: ${IDE_PROOF_VALUE}); API clients send a bearer token instead`;
  }
  if (
    facts.origin !== undefined &&
    (typeof facts.origin !== 'string' || !facts.ownOrigins.includes(facts.origin))
  ) {
    return 'requests with the login cookie must come from the Studio origin (set STUDIO_ORIGINS to the IDE origin)';
  }
  if (facts.secFetchSite !== undefined && facts.secFetchSite !== 'same-origin') {
    return 'requests with the login cookie must come from the Studio origin, not from another site or origin';
  }
  return null;
}
