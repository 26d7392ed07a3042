'use client';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { errorMessage, useTRPC } from '../../lib/trpc';

/**
 * Who holds control of the session, and Take / Release control: while a person holds it, agents' and API
 * tokens' changes fail with HUMAN_HAS_CONTROL.
 */
export function ControlBar({
  sessionId,
  heldBy,
  onError,
}: {
  sessionId: string;
  /** Who holds control, or null. */
  heldBy: string | null;
  onError: (message: string) => void;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const key = trpc.sessions.get.queryKey({ sessionId });
  const failed = (e: unknown) => onError(errorMessage(e));
  // The answer is the session as it is now: it replaces the cached one without a refetch.
  const take = useMutation(
    trpc.sessions.takeControl.mutationOptions({
      onSuccess: (session) => queryClient.setQueryData(key, session),
      onError: failed,
    }),
  );
  const release = useMutation(
    trpc.sessions.releaseControl.mutationOptions({
      onSuccess: (session) => queryClient.setQueryData(key, session),
      onError: failed,
    }),
  );
  const busy = take.isPending || release.isPending;
  return (
    <span className="control" aria-live="polite">
      {heldBy ? (
        <>
          Control: <strong>{heldBy}</strong>
        </>
      ) : (
        <span className="muted">Nobody holds control</span>
      )}
      <button
        type="button"
        className={heldBy ? '' : 'primary'}
        onClick={() => (heldBy ? release : take).mutate({ sessionId })}
        disabled={busy}
      >
        {heldBy ? 'Release control' : 'Take control'}
      </button>
    </span>
  );
}
