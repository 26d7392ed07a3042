import { z } from 'zod';
import { PolicyError } from './errors.ts';

// Issue 23: API replicas place each new session on one node service. This is the rule that picks the node;
// the API feeds it the node rows it read from PostgreSQL and a live session count per node.

/**
 * Swarm's availability of a node (`docker node update --availability …`). Security meaning: only `active`
 * nodes take new sessions, so an operator who pauses or drains a node (to patch it, or because it is suspect)
 * is obeyed by every API replica.
 */
export const NODE_AVAILABILITIES = Object.freeze(['active', 'pause', 'drain'] as const);

/** One of {@link NODE_AVAILABILITIES}. */
export type NodeAvailability = (typeof NODE_AVAILABILITIES)[number];

/**
 * Why a node was passed over for a session, one code per excluded node, checked in this order (a node gets the
 * first that applies). `invalid`: its record is malformed or its id appears twice; `availability`: Swarm has it
 * paused or drained; `draining`: its node service is shutting down; `stale`: not heard from within
 * `staleAfterMs`; `backend`: cannot run the asked backend; `template`: lacks the asked template; `cpus`: has
 * fewer CPUs than the session may use; `memory`: too little free memory once the headroom is kept; `sessions`:
 * at its own `maxSessions`. Security meaning: codes only, never a node's address, so a refusal can be shown to
 * the person who asked.
 */
export const PLACEMENT_REFUSAL_REASONS = Object.freeze([
  'invalid',
  'availability',
  'draining',
  'stale',
  'backend',
  'template',
  'cpus',
  'memory',
  'sessions',
] as const);

/** One of {@link PLACEMENT_REFUSAL_REASONS}. */
export type PlacementRefusalReason = (typeof PLACEMENT_REFUSAL_REASONS)[number];

/** Default of {@link PlaceSessionOptions.staleAfterMs}: three missed heartbeats of 5 s. */
export const DEFAULT_NODE_STALE_AFTER_MS = 15_000;

/** Default of {@link PlaceSessionOptions.candidates}: the "power of two random choices". */
export const DEFAULT_PLACEMENT_CANDIDATES = 2;

/**
 * Memory a node keeps free beyond what a new session reserves: the larger of `minBytes` and `fraction` of the
 * node's total. Security meaning: the node's own services (dockerd, the node service, page cache the kernel
 * needs) and sessions placed by other replicas since the last report must not push the host into the OOM
 * killer, which picks victims across sessions and users alike.
 */
export const PLACEMENT_MEMORY_HEADROOM = Object.freeze({ minBytes: 256 * 1024 * 1024, fraction: 0.05 });

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const BACKEND = /^[a-z][a-z0-9-]{0,31}$/;
const TEMPLATE_DIGEST = /^sha256:[a-f0-9]{64}$/;
const MAX_BACKENDS = 16;
const MAX_TEMPLATES = 10_000;
const MAX_BYTES = Number.MAX_SAFE_INTEGER;
const MAX_CPUS = 4096;

/** A backend name as nodes report it (`docker`, `gvisor`): lower-case, 1-32 characters. */
export const nodeBackendSchema = z
  .string()
  .regex(BACKEND, { error: 'a backend is 1-32 of a-z 0-9 - starting with a letter (docker, gvisor)' });

/** A template's image digest as nodes report it: `sha256:` and 64 lower-case hex digits. */
export const templateDigestSchema = z
  .string()
  .regex(TEMPLATE_DIGEST, { error: 'a template digest is sha256: and 64 lower-case hex digits' });

/** A node service's id (its instance id, the label of its sandboxes): as `STUDIO_INSTANCE_ID`. */
export const nodeIdSchema = z
  .string()
  .regex(NODE_ID, { error: 'a node id is 1-63 of A-Z a-z 0-9 _ . - starting with a letter or digit' });

const reportShape = () => ({
  backends: z.array(nodeBackendSchema).max(MAX_BACKENDS),
  templates: z.array(templateDigestSchema).max(MAX_TEMPLATES),
  memoryTotalBytes: z.number().int().min(0).max(MAX_BYTES),
  memoryFreeBytes: z.number().int().min(0).max(MAX_BYTES),
  cpus: z.number().positive().max(MAX_CPUS),
  /** The 1-minute load average. */
  load1: z.number().min(0).max(1e6),
  maxSessions: z.number().int().min(0).max(1e6).nullish(),
});
const freeWithinTotal = (r: { memoryFreeBytes: number; memoryTotalBytes: number }): boolean =>
  r.memoryFreeBytes <= r.memoryTotalBytes;
const FREE_WITHIN_TOTAL = {
  error: 'memoryFreeBytes must not exceed memoryTotalBytes',
  path: ['memoryFreeBytes'],
};

/**
 * What a node service reports of itself with each heartbeat (the `capacity` the API stores). Security meaning:
 * every number is finite, non-negative and bounded, lists are bounded and their entries are names of a fixed
 * shape, and free memory cannot exceed total; so a broken or hostile node can make itself look attractive but
 * can never make placement throw, loop or pick a node that lacks what it claims to lack. Unknown keys are
 * dropped, not refused, so node services can be upgraded one at a time while older API replicas still run.
 * `maxSessions` null or absent: the node sets no limit of its own.
 */
export const nodeReportSchema = z.object(reportShape()).refine(freeWithinTotal, FREE_WITHIN_TOTAL);

/** A node's report as {@link nodeReportSchema} parses it. */
export type NodeReport = z.output<typeof nodeReportSchema>;

/**
 * A node as placement sees it: its report plus what the API knows itself. Security meaning: `lastSeenAt` and
 * `sessions` must come from the API's own clock and database (when the report arrived; live sessions whose
 * instance is this node), never from the node's word, or a node could stay "fresh" or "empty" forever.
 */
export const nodeRecordSchema = z
  .object({
    id: nodeIdSchema,
    availability: z.enum(NODE_AVAILABILITIES),
    /** When the API last heard from the node, in ms since the epoch. */
    lastSeenAt: z.number().int().min(0).max(MAX_BYTES),
    /** The node service is shutting down. */
    draining: z.boolean().optional(),
    /** Live sessions on the node. */
    sessions: z.number().int().min(0).max(1e6),
    ...reportShape(),
  })
  .refine(freeWithinTotal, FREE_WITHIN_TOTAL);

/** A node as {@link placeSession} takes it ({@link nodeRecordSchema}). */
export interface NodeRecord {
  readonly id: string;
  readonly availability: NodeAvailability;
  readonly lastSeenAt: number;
  readonly draining?: boolean | undefined;
  readonly backends: readonly string[];
  readonly templates: readonly string[];
  readonly memoryTotalBytes: number;
  readonly memoryFreeBytes: number;
  readonly cpus: number;
  readonly load1: number;
  readonly sessions: number;
  readonly maxSessions?: number | null | undefined;
}

/**
 * What a new session needs from its node. Security meaning: `memoryBytes` is what the session reserves (its
 * memory limit), so a node is never asked for more than it has free; `cpus` (its CPU quota) must not exceed the
 * node's CPUs.
 */
export const placementRequestSchema = z.strictObject({
  backend: nodeBackendSchema,
  template: templateDigestSchema.nullish(),
  memoryBytes: z.number().int().min(1).max(MAX_BYTES),
  cpus: z.number().positive().max(MAX_CPUS).optional(),
});

/** A request as {@link placementRequestSchema} parses it. */
export interface PlacementRequest {
  readonly backend: string;
  /** The template's digest; null or absent: the base image, which every node has. */
  readonly template?: string | null | undefined;
  readonly memoryBytes: number;
  readonly cpus?: number | undefined;
}

/** Options for {@link placeSession}. */
export interface PlaceSessionOptions {
  /** The API's clock, ms since the epoch. */
  readonly now: number;
  /** A uniform number in [0, 1), as `Math.random`; tests pass a seeded one. */
  readonly random: () => number;
  /** A node not heard from for longer is passed over; default {@link DEFAULT_NODE_STALE_AFTER_MS}. */
  readonly staleAfterMs?: number;
  /** How many eligible nodes to draw before taking the best; default {@link DEFAULT_PLACEMENT_CANDIDATES}. */
  readonly candidates?: number;
}

/** One node passed over and why. */
export interface PlacementExclusion {
  readonly nodeId: string;
  readonly reason: PlacementRefusalReason;
}

/** What {@link placeSession} decided: a node, or every node's reason for not being one. */
export type PlacementResult =
  | { readonly ok: true; readonly nodeId: string }
  | { readonly ok: false; readonly reasons: readonly PlacementExclusion[] };

function invalidInput(message: string): PolicyError {
  return new PolicyError('INPUT_INVALID', message);
}

const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
const isAmount = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0;
const isNameList = (list: unknown): list is readonly string[] =>
  Array.isArray(list) && list.every((s) => typeof s === 'string');

// A light shape check (not the full schema: that runs once when a report arrives, and a template list can be
// long). It guards the arithmetic below, so NaN, negative or missing numbers can never make a node look best.
function isWellFormed(node: NodeRecord): boolean {
  if (typeof node !== 'object' || node === null) return false;
  return (
    typeof node.id === 'string' &&
    NODE_ID.test(node.id) &&
    isCount(node.lastSeenAt) &&
    isNameList(node.backends) &&
    isNameList(node.templates) &&
    isCount(node.memoryTotalBytes) &&
    isCount(node.memoryFreeBytes) &&
    node.memoryFreeBytes <= node.memoryTotalBytes &&
    isAmount(node.cpus) &&
    node.cpus > 0 &&
    isAmount(node.load1) &&
    isCount(node.sessions) &&
    (node.maxSessions === undefined || node.maxSessions === null || isCount(node.maxSessions)) &&
    (node.draining === undefined || typeof node.draining === 'boolean')
  );
}

/** The memory a node must keep free beyond the session's reservation ({@link PLACEMENT_MEMORY_HEADROOM}). */
export function memoryHeadroomBytes(memoryTotalBytes: number): number {
  return Math.max(
    PLACEMENT_MEMORY_HEADROOM.minBytes,
    Math.ceil(memoryTotalBytes * PLACEMENT_MEMORY_HEADROOM.fraction),
  );
}

function exclusionReason(
  node: NodeRecord,
  request: PlacementRequest,
  now: number,
  staleAfterMs: number,
): PlacementRefusalReason | null {
  if (node.availability !== 'active') return 'availability';
  if (node.draining === true) return 'draining';
  // A report from the future is as untrustworthy as an old one: one of the clocks is wrong.
  if (Math.abs(now - node.lastSeenAt) > staleAfterMs) return 'stale';
  if (!node.backends.includes(request.backend)) return 'backend';
  if (request.template != null && !node.templates.includes(request.template)) return 'template';
  if (request.cpus !== undefined && request.cpus > node.cpus) return 'cpus';
  if (node.memoryFreeBytes - request.memoryBytes < memoryHeadroomBytes(node.memoryTotalBytes))
    return 'memory';
  if (node.maxSessions != null && node.sessions >= node.maxSessions) return 'sessions';
  return null;
}

/** Load average per CPU at which a node counts as saturated in the score. */
const SATURATED_LOAD_PER_CPU = 2;
/** Sessions per CPU that count as full when the node sets no `maxSessions` (IDE sessions mostly wait on people). */
const FULL_SESSIONS_PER_CPU = 4;

/**
 * How loaded a node would be with the session on it; lower is better. The sum of three pressures, each 0..1:
 * memory in use after reserving the session (what actually runs out and triggers the OOM killer); the 1-minute
 * load per CPU, saturating at {@link SATURATED_LOAD_PER_CPU} (how slow terminals and builds would feel); and
 * sessions after placing, per {@link FULL_SESSIONS_PER_CPU} per CPU or per `maxSessions`. The session count is
 * the one input that moves the moment a session is placed: load and free memory lag behind heartbeats, so
 * without it a burst of creations would all land on the node that looked emptiest a few seconds ago.
 */
export function placementScore(node: NodeRecord, request: PlacementRequest): number {
  const total = node.memoryTotalBytes > 0 ? node.memoryTotalBytes : 1;
  const memory = Math.min(1, Math.max(0, 1 - (node.memoryFreeBytes - request.memoryBytes) / total));
  const load = Math.min(1, node.load1 / node.cpus / SATURATED_LOAD_PER_CPU);
  const capacity = node.maxSessions != null ? node.maxSessions : node.cpus * FULL_SESSIONS_PER_CPU;
  const sessions = capacity > 0 ? Math.min(1, (node.sessions + 1) / capacity) : 1;
  return memory + load + sessions;
}

function checkRequest(request: PlacementRequest): void {
  if (typeof request !== 'object' || request === null)
    throw invalidInput('placement request must be an object');
  if (typeof request.backend !== 'string' || !BACKEND.test(request.backend)) {
    throw invalidInput('placement request backend must be a backend name (docker, gvisor)');
  }
  if (
    request.template != null &&
    (typeof request.template !== 'string' || !TEMPLATE_DIGEST.test(request.template))
  ) {
    throw invalidInput('placement request template must be a sha256: digest, or null for the base image');
  }
  if (!isCount(request.memoryBytes) || request.memoryBytes < 1) {
    throw invalidInput('placement request memoryBytes must be a positive whole number of bytes');
  }
  if (request.cpus !== undefined && !(isAmount(request.cpus) && request.cpus > 0)) {
    throw invalidInput('placement request cpus must be a positive number');
  }
}

function draw(random: () => number, n: number): number {
  const r = random();
  if (typeof r !== 'number' || !(r >= 0 && r < 1)) {
    throw invalidInput('random must return a number in [0, 1), like Math.random');
  }
  return Math.floor(r * n);
}

/**
 * Picks the node for a new session, or says why none can take it.
 *
 * A node is eligible when it is `active` in Swarm, its node service is not draining, it was heard from within
 * `staleAfterMs` (either way: a `lastSeenAt` that far in the future is refused too), it runs the backend, it
 * has the template when one is asked for, it has at least the session's CPUs, its free memory covers the
 * session plus {@link memoryHeadroomBytes}, and it is under its `maxSessions`. Among the eligible it draws
 * `candidates` distinct nodes at random and returns the one with the lowest {@link placementScore} (the first
 * drawn on a tie; a single eligible node is returned without a draw): the "power of two random choices", which spreads load nearly as well as always taking the
 * best node but does not send every replica's burst to the same one while reports lag.
 *
 * Security meaning: the chosen node is always eligible: a paused, drained, stale, malformed or duplicated
 * (same id twice) node never gets a session, whatever it reports. Eligible nodes are ordered by id before the
 * draw, so the result depends only on the nodes and the random numbers, not on row order. Refusals carry a code
 * per node ({@link PLACEMENT_REFUSAL_REASONS}); {@link placementRefusalMessage} turns them into a fix. A
 * malformed request or option (or a `random` outside [0, 1)) is the caller's bug: PolicyError INPUT_INVALID.
 */
export function placeSession(
  request: PlacementRequest,
  nodes: readonly NodeRecord[],
  options: PlaceSessionOptions,
): PlacementResult {
  checkRequest(request);
  if (!Array.isArray(nodes)) throw invalidInput('nodes must be an array of node records');
  if (typeof options !== 'object' || options === null) throw invalidInput('placement options are required');
  const { now, random } = options;
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_NODE_STALE_AFTER_MS;
  const candidates = options.candidates ?? DEFAULT_PLACEMENT_CANDIDATES;
  if (!isCount(now)) throw invalidInput('now must be a time in ms since the epoch');
  if (typeof random !== 'function') throw invalidInput('random must be a function like Math.random');
  if (!isCount(staleAfterMs)) throw invalidInput('staleAfterMs must be a whole number of ms, 0 or more');
  if (!Number.isSafeInteger(candidates) || candidates < 1) {
    throw invalidInput('candidates must be a whole number, 1 or more');
  }

  const idCounts = new Map<string, number>();
  for (const node of nodes) {
    const id = typeof node === 'object' && node !== null && typeof node.id === 'string' ? node.id : '';
    idCounts.set(id, (idCounts.get(id) ?? 0) + 1);
  }
  const reasons: PlacementExclusion[] = [];
  const eligible: NodeRecord[] = [];
  for (const node of nodes) {
    const wellFormed = isWellFormed(node) && idCounts.get(node.id) === 1;
    const reason = wellFormed ? exclusionReason(node, request, now, staleAfterMs) : 'invalid';
    if (reason === null) eligible.push(node);
    else {
      const nodeId = typeof node === 'object' && node !== null && typeof node.id === 'string' ? node.id : '';
      reasons.push({ nodeId, reason });
    }
  }
  if (eligible.length === 0) return { ok: false, reasons };
  if (eligible.length === 1) return { ok: true, nodeId: (eligible[0] as NodeRecord).id };

  eligible.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  // A partial Fisher-Yates shuffle: the first `k` places hold `k` distinct nodes drawn uniformly.
  const k = Math.min(candidates, eligible.length);
  let best: NodeRecord | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (let i = 0; i < k; i++) {
    const j = i + draw(random, eligible.length - i);
    const picked = eligible[j] as NodeRecord;
    eligible[j] = eligible[i] as NodeRecord;
    eligible[i] = picked;
    const score = placementScore(picked, request);
    if (best === undefined || score < bestScore) {
      best = picked;
      bestScore = score;
    }
  }
  return { ok: true, nodeId: (best as NodeRecord).id };
}

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;

function formatBytes(bytes: number): string {
  const GiB = 1024 ** 3;
  const MiB = 1024 ** 2;
  if (bytes >= GiB) return `${Math.round((bytes / GiB) * 10) / 10} GiB`;
  return `${Math.ceil(bytes / MiB)} MiB`;
}

function reasonFix(
  reason: PlacementRefusalReason,
  count: number,
  all: boolean,
  request: PlacementRequest,
): string {
  const nodes = all ? (count === 1 ? 'the only node' : `all ${count} nodes`) : plural(count, 'node', 'nodes');
  switch (reason) {
    case 'availability':
      return `${nodes} ${count === 1 ? 'is' : 'are'} paused or drained in Swarm: set one active with docker node update --availability active <node>`;
    case 'draining':
      return `${nodes} ${count === 1 ? 'is' : 'are'} shutting down (node service draining): wait for it to restart, or start the node service on another node`;
    case 'stale':
      return `${nodes} ${count === 1 ? 'has' : 'have'} not reported in time: check the node service is running there (docker service ps) and can reach the database, and that the clocks agree`;
    case 'backend':
      return `${nodes} cannot run the ${request.backend} backend: install it on a node (gvisor needs runsc) and restart its node service, or choose another backend`;
    case 'template':
      return all
        ? `no node has template ${request.template ?? ''} built: build it again with templates.build (the build runs on a node that can take it), or choose another template`
        : `${nodes} lack the build of template ${request.template ?? ''}: the ones that have it cannot take the session now; build it again with templates.build (on a node that can), or choose another template`;
    case 'cpus':
      return `${nodes} ${count === 1 ? 'has' : 'have'} fewer than ${request.cpus ?? 0} CPUs: ask for fewer CPUs, or add a larger node`;
    case 'memory':
      return `${nodes} ${count === 1 ? 'lacks' : 'lack'} ${formatBytes(request.memoryBytes)} of free memory (plus headroom): stop or pause idle sessions, ask for less memory, or add a node`;
    case 'sessions':
      return `${nodes} ${count === 1 ? 'is at its' : 'are at their'} session limit: stop or pause sessions, raise the node's maxSessions, or add a node`;
    case 'invalid':
      return `${nodes} sent a malformed report or share an id: run the same Studio version on every node and give each node service its own STUDIO_INSTANCE_ID`;
  }
}

/**
 * Turns a refusal of {@link placeSession} into one message for a person that names the fix: one clause per
 * reason, most common first (e.g. "no node has template sha256:… built: build it again …", "all 3 nodes are
 * paused or drained in Swarm: set one active with docker node update --availability active <node>").
 * Security meaning: it names counts, the asked backend, template and memory, never a node's id or address.
 */
export function placementRefusalMessage(
  reasons: readonly PlacementExclusion[],
  request: PlacementRequest,
): string {
  if (reasons.length === 0) {
    return 'no node service has registered: deploy the node service on each node and check it can reach the database';
  }
  const counts = new Map<PlacementRefusalReason, number>();
  for (const { reason } of reasons) counts.set(reason, (counts.get(reason) ?? 0) + 1);
  const all = counts.size === 1;
  const clauses = [...counts.entries()]
    .sort(
      (a, b) =>
        b[1] - a[1] || PLACEMENT_REFUSAL_REASONS.indexOf(a[0]) - PLACEMENT_REFUSAL_REASONS.indexOf(b[0]),
    )
    .map(([reason, count]) => reasonFix(reason, count, all, request));
  return all ? (clauses[0] as string) : `no node can take this session: ${clauses.join('; ')}`;
}
