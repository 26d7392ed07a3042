'use client';
import { useQueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { useState } from 'react';
import { type BuildLogItem, MAX_LOG_CHARS } from '../../lib/templates';
import { errorParts, useTRPC } from '../../lib/trpc';

type BuildEnd = Extract<BuildLogItem, { type: 'end' }>;

export interface BuildLog {
  /** The log so far (its last {@link MAX_LOG_CHARS} characters). */
  text: string;
  /** How the build ended, once it has. */
  end: BuildEnd | null;
  /** The stream is down: why (message, and the code with the API's words). */
  error: { message: string; detail: string | null } | null;
  /** Follows the log from the start again (after a rebuild starts). */
  restart(): void;
}

/**
 * A template's build log, live (`templates.logs` over SSE): what was logged so far, each chunk as it comes, then
 * the end, when the template list is refetched so its state badge moves. Each (re)connection replays the log
 * from the start, so the text is cleared whenever the stream starts.
 */
export function useBuildLog(templateId: string): BuildLog {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [text, setText] = useState('');
  const [end, setEnd] = useState<BuildEnd | null>(null);
  const sub = useSubscription(
    trpc.templates.logs.subscriptionOptions(
      { template: templateId },
      {
        onStarted: () => {
          setText('');
          setEnd(null);
        },
        onData: (item: BuildLogItem) => {
          if (item.type === 'log') setText((prev) => (prev + item.text).slice(-MAX_LOG_CHARS));
          else {
            setEnd(item);
            void queryClient.invalidateQueries(trpc.templates.list.queryFilter());
          }
        },
      },
    ),
  );
  return {
    text,
    end,
    error:
      sub.status === 'error' || (sub.status === 'connecting' && sub.error) ? errorParts(sub.error) : null,
    restart: () => sub.reset(),
  };
}
