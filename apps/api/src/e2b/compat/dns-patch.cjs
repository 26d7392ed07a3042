// The compatibility tests' stand-in for a wildcard DNS record: preloaded into the SDK's process
// (`node -r <this file>`), it answers 127.0.0.1 for `*.e2b.test` (where the tests' TLS front listens) and passes
// every other name to the real resolver. Node's fetch and undici's Agents connect through `net`/`tls`, which call
// `require('node:dns').lookup` at connect time, so replacing it here is enough. A deployment has a real record
// (`*.<STUDIO_E2B_DOMAIN>` → the host of Traefik) instead.
'use strict';

const dns = require('node:dns');

const SUFFIX = `.${process.env.E2B_COMPAT_DNS_DOMAIN || 'e2b.test'}`;
const realLookup = dns.lookup;

/** Whether `hostname` is the test domain or a name under it. */
function ours(hostname) {
  if (typeof hostname !== 'string') return false;
  const name = hostname.toLowerCase().replace(/\.$/, '');
  return name === SUFFIX.slice(1) || name.endsWith(SUFFIX);
}

dns.lookup = function lookup(hostname, options, callback) {
  let opts = options;
  let cb = callback;
  if (typeof opts === 'function') {
    cb = opts;
    opts = {};
  } else if (typeof opts === 'number') {
    opts = { family: opts };
  }
  if (!ours(hostname)) return realLookup.call(this, hostname, options, callback);
  if (opts?.all) {
    process.nextTick(cb, null, [{ address: '127.0.0.1', family: 4 }]);
  } else {
    process.nextTick(cb, null, '127.0.0.1', 4);
  }
  return undefined;
};
