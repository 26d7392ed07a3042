import type { AppRouter } from '@studio/client';
import type { inferRouterOutputs } from '@trpc/server';

/** A stored secret as the API shows it (`secrets.list`): name, hosts, header template and dates, never the value. */
export type Secret = inferRouterOutputs<AppRouter>['secrets']['list'][number];

/**
 * The header template the add form starts with: the API's default (`DEFAULT_SECRET_HEADER` of
 * `@studio/policy/secrets`, held equal by the unit test). A copy, because that module would bring the public
 * suffix list into the page for one string.
 */
export const DEFAULT_SECRET_HEADER = 'Authorization: Bearer {{value}}';

/** Secret names for a sentence: `A`, `A and B`, `A, B and C`. */
export function secretNames(names: readonly string[]): string {
  if (names.length <= 1) return names[0] ?? '';
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** The session header's label: `secrets: OPENAI_API_KEY, GITHUB_TOKEN` (names only; the values are never shown). */
export function secretsLabel(names: readonly string[]): string {
  return `secrets: ${names.join(', ')}`;
}
