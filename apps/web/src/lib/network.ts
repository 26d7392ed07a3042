import type { AppRouter } from '@studio/client';
import type { inferRouterOutputs } from '@trpc/server';

/** A session's network settings as the API shows them (`sessions.get` → `network`). */
export type NetworkSettings = inferRouterOutputs<AppRouter>['sessions']['get']['network'];

/** One of the modes, checked against the API's type. */
export type NetworkMode = NetworkSettings['mode'];

/** The modes in the order the pickers offer them; `open` is refused (EGRESS_DENIED) unless the operator permits it. */
export const NETWORK_MODES = ['none', 'allowlist', 'open'] as const satisfies readonly NetworkMode[];

/** What each mode means, for the pickers. */
export const NETWORK_MODE_LABELS: Record<NetworkMode, string> = {
  none: 'none (no network)',
  allowlist: 'allowlist (only the hosts listed)',
  open: 'open (any public host, if the server permits it)',
};

/**
 * The entries of an allowlist typed in a text box: one per line, or separated by commas or spaces; blanks and
 * repeats dropped. Not validated here: the API parses each entry with the policy's rules (HOST_INVALID names a bad
 * one) and stores it canonical.
 */
export function parseAllowList(text: string): string[] {
  return [
    ...new Set(
      text
        .split(/[\s,]+/)
        .map((entry) => entry.trim())
        .filter((entry) => entry !== ''),
    ),
  ];
}

/** An allowlist for the text box: one entry per line. */
export function formatAllowList(allow: readonly string[]): string {
  return allow.join('\n');
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

/** The badge's text: `network: none`, `network: allowlist · 2 hosts`, `network: open`. */
export function networkLabel(network: Pick<NetworkSettings, 'mode' | 'allow'>): string {
  return network.mode === 'allowlist'
    ? `network: allowlist · ${plural(network.allow.length, 'host')}`
    : `network: ${network.mode}`;
}

/** A list for one line of text: the first `max` entries, then how many more. */
export function listBrief(allow: readonly string[], max = 4): string {
  if (allow.length === 0) return 'nothing';
  const shown = allow.slice(0, max).join(', ');
  return allow.length > max ? `${shown} … (+${allow.length - max} more)` : shown;
}
