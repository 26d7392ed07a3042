import type { StudioClient } from '@studio/client';
import { McpToolError } from './errors.ts';

/** The most log characters a template tool returns: the tail, cut at a line start where one is near. */
export const MAX_LOG_TAIL = 8 * 1024;
/** How long create_template and build_template wait for the build by default. */
export const DEFAULT_BUILD_WAIT_MS = 10 * 60_000;
/** The longest wait an agent may ask for: the policy's longest build. */
export const MAX_BUILD_WAIT_MS = 2 * 60 * 60_000;
const POLL_MS = 1000;

type TemplateWithLog = Awaited<ReturnType<StudioClient['templates']['get']['query']>>;
type TemplateView = Omit<TemplateWithLog, 'log'>;

/** The last {@link MAX_LOG_TAIL} characters of a build log, and whether anything was cut. */
export function logTail(log: string): { log: string; logTruncated: boolean } {
  if (log.length <= MAX_LOG_TAIL) return { log, logTruncated: false };
  const tail = log.slice(-MAX_LOG_TAIL);
  // Start at a whole line when one starts in the first part of the tail (a cut line misleads more than it tells).
  const newline = tail.indexOf('\n');
  return { log: newline >= 0 && newline < 1024 ? tail.slice(newline + 1) : tail, logTruncated: true };
}

const FILE_CONTENT_SHOWN = 512;

/**
 * A template's spec as the tools show it: a Dockerfile as its text, and each file's content cut to its first
 * {@link FILE_CONTENT_SHOWN} characters (a template may carry a megabyte of files; the agent wrote them).
 */
export function specForAgent(spec: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...spec };
  const dockerfile = spec.dockerfile;
  if (typeof dockerfile === 'object' && dockerfile !== null && 'text' in dockerfile) {
    out.dockerfile = (dockerfile as { text: unknown }).text;
  }
  if (Array.isArray(spec.files)) {
    out.files = spec.files.map((file: Record<string, unknown>) => {
      const content = typeof file.content === 'string' ? file.content : '';
      return content.length <= FILE_CONTENT_SHOWN
        ? file
        : { ...file, content: content.slice(0, FILE_CONTENT_SHOWN), contentTruncated: true };
    });
  }
  return out;
}

/** A template for an answer: its view with the spec shortened (see {@link specForAgent}). */
export function templateForAgent(view: TemplateView): Record<string, unknown> {
  return { ...view, spec: specForAgent(view.spec) };
}

/** What to do next with a template in this state, for the agent. */
export function nextStep(t: Pick<TemplateView, 'name' | 'id' | 'state' | 'usable'>): string {
  if (t.state === 'ready') return `create a session from it: create_session with { "template": "${t.name}" }`;
  if (t.state === 'failed') {
    return `the build failed: read the log (the failing step is near its end), fix the template (delete_template, then create_template with the fix) or run build_template if the failure was passing${t.usable ? '; its previous good build is still usable by create_session' : ''}`;
  }
  return `still building: call get_template { "template": "${t.id}" } until its state is ready or failed (or build_template/create_template with wait)`;
}

/** How a wait for a build ended: the build ended (`ended`) or `waitMs` ran out first (`timeout`). */
export type BuildWait = 'ended' | 'timeout';

/**
 * Waits until the build of template `id` ends or `waitMs` passes. Follows `templates.logs` (each chunk's last
 * line is sent as progress, so clients that time calls out see it is alive); if the stream fails or ends
 * without an end item, polls `templates.get` every second instead. Cancelling the call stops the wait, not the
 * build (CANCELLED, whose fix says how to follow it).
 */
export function waitForBuild(
  client: StudioClient,
  id: string,
  waitMs: number,
  options: { signal: AbortSignal; progress: (message: string) => Promise<void> },
): Promise<BuildWait> {
  return new Promise<BuildWait>((resolve, reject) => {
    let settled = false;
    let poller: ReturnType<typeof setTimeout> | undefined;
    const deadline = setTimeout(() => finish(() => resolve('timeout')), waitMs);
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(poller);
      options.signal.removeEventListener('abort', onAbort);
      // Deferred: onData may run inside subscribe() before `sub` is assigned.
      queueMicrotask(() => sub.unsubscribe());
      fn();
    };
    const poll = () => {
      if (settled) return;
      client.templates.get
        .query({ template: id })
        .then((t) => {
          if (t.state !== 'building') finish(() => resolve('ended'));
          else {
            void options.progress('building');
            poller = setTimeout(poll, POLL_MS);
          }
        })
        .catch((error: unknown) => finish(() => reject(error)));
    };
    const fallBack = () => {
      if (!settled && poller === undefined) poller = setTimeout(poll, 0);
    };
    const sub = client.templates.logs.subscribe(
      { template: id },
      {
        onData: (item) => {
          if (settled) return;
          if (item.type === 'end') finish(() => resolve('ended'));
          else {
            const line = item.text.trimEnd().split('\n').pop()?.slice(0, 200) ?? '';
            if (line !== '') void options.progress(line);
          }
        },
        onError: fallBack,
        onComplete: fallBack,
      },
    );
    const onAbort = () =>
      finish(() =>
        reject(
          new McpToolError(
            'CANCELLED',
            'the call was cancelled; the build goes on',
            `follow it with get_template { "template": "${id}" }`,
          ),
        ),
      );
    options.signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The answer of create_template and build_template: waits for the build when asked (see {@link waitForBuild}),
 * then reads the template again and returns its outcome, the log's tail and what to do next.
 */
export async function buildOutcome(
  client: StudioClient,
  started: TemplateView,
  wait: { wait: boolean; waitMs: number },
  options: { signal: AbortSignal; progress: (message: string) => Promise<void> },
): Promise<Record<string, unknown>> {
  let waited: BuildWait | 'no' = 'no';
  if (wait.wait && started.state === 'building') {
    waited = await waitForBuild(client, started.id, wait.waitMs, options);
  }
  const { log, ...view } = await client.templates.get.query({ template: started.id });
  return {
    outcome: view.state,
    ...(waited === 'timeout'
      ? { waitedMs: wait.waitMs, note: `the build was still running after waitMs (${wait.waitMs} ms)` }
      : {}),
    template: templateForAgent(view),
    ...logTail(log),
    next: nextStep(view),
  };
}
