import { parse } from 'tldts';

/**
 * The site of a host as browsers judge it for cookies and `SameSite`: its registrable domain by the Public Suffix
 * List, private section included (`x.github.io` is its own site), an IP address as itself, and a host with no
 * registrable domain (a bare suffix such as `localhost`) as itself. Lower case, without a trailing dot or port.
 *
 * Security meaning: two hosts of one site share cookies in both directions (a page may set `Domain=<site>`) and
 * count as same-site for `SameSite=Strict`, so anything served on the IDE's site can ride on Studio's login
 * cookie. Ports and, for this purpose, schemes do not separate sites.
 */
export function siteOf(host: string): string {
  const name = normalizeHost(host);
  const parsed = parse(name, { allowPrivateDomains: true });
  if (parsed.isIp) return name;
  return parsed.domain ?? name;
}

function normalizeHost(host: string): string {
  let name = host.trim().toLowerCase();
  if (name.startsWith('[')) return name.replace(/\]:\d+$/, ']');
  name = name.replace(/:\d{1,5}$/, '');
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/**
 * Whether two hosts must be treated as the same site. Conservative: true when their {@link siteOf} agree, and
 * also when one host is the other or lies under it (`localhost` and `x.localhost`), where browsers disagree on
 * sites of names the Public Suffix List does not know. The scheme is ignored on purpose: cookies without
 * `Secure` cross schemes, and a rule that held only over HTTPS would not hold in local mode.
 *
 * Security meaning: `false` is the only answer that lets user content (a preview) live beside the IDE, so every
 * doubt answers `true`.
 */
export function isSameSite(a: string, b: string): boolean {
  const x = normalizeHost(a);
  const y = normalizeHost(b);
  if (x === y || x.endsWith(`.${y}`) || y.endsWith(`.${x}`)) return true;
  return siteOf(x) === siteOf(y);
}

/**
 * Why previews served as `<label>.<previewDomain>` would share a site with one of Studio's own hosts (the IDE's,
 * the API's), or null when they would not. `studioHosts` are host names or `http(s)://host[:port]` origins.
 *
 * Security meaning: a preview page is code a sandbox wrote. Same-site with the IDE, its `<img>`, forms and
 * navigations carry the login cookie (even `SameSite=Strict`), and its responses may set cookies the IDE reads.
 * User content must live on a registrable domain of its own, as `githubusercontent.com` does beside
 * `github.com`; a subdomain of the IDE's domain or another port of its host is not enough.
 */
export function previewSiteProblem(previewDomain: string, studioHosts: readonly string[]): string | null {
  const domain = normalizeHost(previewDomain);
  const probe = `preview-probe.${domain}`;
  for (const entry of studioHosts) {
    const host = hostOf(entry);
    if (host === null) continue;
    if (isSameSite(probe, host) || isSameSite(domain, host)) {
      return (
        `previews on *.${domain} would be same-site with ${host} (both under ${siteOf(host)}), so preview pages ` +
        `could use and overwrite Studio's cookies: serve previews from a registrable domain of their own ` +
        `(e.g. STUDIO_PREVIEW_DOMAIN=${suggestion(host)}), as githubusercontent.com is to github.com`
      );
    }
  }
  return null;
}

function hostOf(entry: string): string | null {
  const text = entry.trim();
  if (text === '') return null;
  if (/^https?:\/\//i.test(text)) {
    try {
      return new URL(text).hostname;
    } catch {
      return null;
    }
  }
  return normalizeHost(text);
}

function suggestion(host: string): string {
  if (host === 'localhost' || host.endsWith('.localhost')) {
    return 'localhost with the IDE and API on 127.0.0.1 instead of a localhost name';
  }
  const site = siteOf(host);
  const parsed = parse(site, { allowPrivateDomains: true });
  if (parsed.isIp || parsed.domainWithoutSuffix === null || parsed.publicSuffix === null) return 'localhost';
  return `${parsed.domainWithoutSuffix}-preview.${parsed.publicSuffix}`;
}
