import { z } from 'zod';
import type { Policy } from './limits.ts';
import { envVarsSchema } from './schemas.ts';

/**
 * An E2B sandbox id as Studio gives them: 32 lower-case hex digits (the session id's 128 random bits). Security
 * meaning: it is a DNS label (`49983-<id>.<domain>`, `<port>-<id>.<domain>`), so it can never carry a dot, a
 * port or upper case that a host-name router would read differently from the API; it names a session, and every
 * use still checks that the caller owns it.
 */
export const E2B_SANDBOX_ID_PATTERN = /^[0-9a-f]{32}$/;

/** A sandbox id in a path or header ({@link E2B_SANDBOX_ID_PATTERN}). */
export const e2bSandboxIdSchema = z
  .string()
  .regex(E2B_SANDBOX_ID_PATTERN, { error: 'a sandbox id is 32 lower-case hex digits (from Sandbox.create)' });

/** How many metadata entries a sandbox carries, and how long keys and values are. */
export const E2B_METADATA_LIMITS = Object.freeze({ entries: 64, keyChars: 128, valueChars: 1024 });

const printable = (text: string): boolean =>
  ![...text].some((c) => (c.codePointAt(0) ?? 0) < 0x20 || c === '\u007f');

/**
 * A sandbox's metadata (E2B's `metadata`): string pairs for the caller's own bookkeeping, filtered on by list.
 * Security meaning: bounded (64 pairs, 128-character keys, 1 KiB values), no control characters (they reach logs
 * and the IDE); never interpreted by Studio.
 */
export const e2bMetadataSchema = z
  .record(
    z.string().min(1).max(E2B_METADATA_LIMITS.keyChars).refine(printable, { error: 'no control characters' }),
    z.string().max(E2B_METADATA_LIMITS.valueChars).refine(printable, { error: 'no control characters' }),
  )
  .refine((m) => Object.keys(m).length <= E2B_METADATA_LIMITS.entries, {
    error: `at most ${E2B_METADATA_LIMITS.entries} metadata entries`,
  });

/** The states E2B lists sandboxes in. */
export const E2B_STATES = ['running', 'paused'] as const;
export type E2bState = (typeof E2B_STATES)[number];

/** Features of E2B's create that Studio does not offer, with what to do instead (a refusal names them). */
const UNSUPPORTED_CREATE_FIELDS: Readonly<Record<string, string>> = Object.freeze({
  mcp: 'MCP gateways inside sandboxes are not supported by Studio; leave out mcp',
  volumeMounts:
    'volumes are not supported by Studio; leave out volumeMounts (the workspace persists across pause)',
  iam: 'IAM roles are not supported by Studio; give credentials as Studio secrets',
});

const hostEntry = z.string().min(1).max(300);

/**
 * Builds the E2B control plane's input schemas under `policy`. Security meaning: every number is bounded (a
 * timeout can never outlive the session TTL), strings and maps are bounded, env names cannot hijack the loader or
 * shell. Objects are loose on purpose: E2B's SDKs add fields release by release and its API ignores the ones it
 * does not know; nothing unknown can reach a sandbox, because Studio builds its own strict session input from
 * the fields read here (and refuses the known fields it cannot honour, naming them).
 */
export function e2bSchemas(policy: Policy) {
  const maxTimeoutSeconds = Math.floor(policy.session.ttlMs / 1000);
  const timeout = z
    .int({ error: 'timeout is a whole number of seconds' })
    .min(0)
    .max(maxTimeoutSeconds, {
      error: `timeout is at most ${maxTimeoutSeconds} s here (the session lifetime, policy session.ttlMs)`,
    });

  /** `POST /sandboxes`, `POST /v2/sandboxes`. */
  const newSandbox = z
    .looseObject({
      templateID: z.string().min(1).max(128).optional(),
      timeout: timeout.optional(),
      autoPause: z.boolean().optional(),
      autoPauseMemory: z.boolean().optional(),
      autoResume: z.looseObject({ enabled: z.boolean() }).nullish(),
      secure: z.boolean().optional(),
      allow_internet_access: z.boolean().nullish(),
      network: z
        .looseObject({
          allowPublicTraffic: z.boolean().optional(),
          allowOut: z.array(hostEntry).max(100).optional(),
          denyOut: z.array(hostEntry).max(100).optional(),
        })
        .nullish(),
      metadata: e2bMetadataSchema.nullish(),
      envVars: envVarsSchema.nullish(),
    })
    .superRefine((body, ctx) => {
      for (const [field, why] of Object.entries(UNSUPPORTED_CREATE_FIELDS)) {
        const value = (body as Record<string, unknown>)[field];
        if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) continue;
        ctx.addIssue({ code: 'custom', path: [field], message: why });
      }
      if ((body.network?.denyOut?.length ?? 0) > 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['network', 'denyOut'],
          message: 'Studio denies all egress except what is allowed: list hosts in network.allowOut instead',
        });
      }
    });

  /** `POST /sandboxes/{id}/timeout`. */
  const setTimeout = z.looseObject({ timeout });
  /** `POST /sandboxes/{id}/connect`, `/v2/…/connect`; `memory: false` (a cold reboot) is not offered. */
  const connect = z.looseObject({ timeout: timeout.optional(), memory: z.boolean().nullish() });
  /** `POST /sandboxes/{id}/resume` (deprecated in E2B, still served). */
  const resume = z.looseObject({ timeout: timeout.optional(), autoPause: z.boolean().optional() });
  /** `POST /sandboxes/{id}/pause`. */
  const pause = z.looseObject({ memory: z.boolean().nullish() });

  /** `GET /v2/sandboxes` query. `metadata` is itself a URL-encoded query (`user=abc&app=prod`). */
  const list = z.object({
    metadata: z
      .string()
      .max(8192)
      .transform((raw, ctx) => {
        const pairs: Record<string, string> = {};
        for (const [k, v] of new URLSearchParams(raw)) pairs[k] = v;
        const parsed = e2bMetadataSchema.safeParse(pairs);
        if (!parsed.success) {
          ctx.addIssue({ code: 'custom', message: `metadata filter: ${parsed.error.issues[0]?.message}` });
          return z.NEVER;
        }
        return parsed.data;
      })
      .optional(),
    state: z
      .string()
      .max(64)
      .transform((raw, ctx) => {
        const states = raw.split(',').filter((s) => s !== '');
        for (const s of states) {
          if (!(E2B_STATES as readonly string[]).includes(s)) {
            ctx.addIssue({ code: 'custom', message: `state is one of ${E2B_STATES.join(', ')} (got ${s})` });
            return z.NEVER;
          }
        }
        return states as E2bState[];
      })
      .optional(),
    limit: z.coerce.number().int().min(1).max(100).default(100),
    nextToken: z.string().max(200).optional(),
    template: z.string().max(128).optional(),
    order: z.enum(['asc', 'desc']).default('desc'),
    startedAfter: z.iso.datetime({ offset: true }).optional(),
  });

  return { newSandbox, setTimeout, connect, resume, pause, list, maxTimeoutSeconds };
}

/** The E2B control plane's parsed inputs. */
export type E2bSchemas = ReturnType<typeof e2bSchemas>;
export type E2bNewSandbox = z.infer<E2bSchemas['newSandbox']>;
export type E2bListQuery = z.infer<E2bSchemas['list']>;
