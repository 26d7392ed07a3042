'use client';
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { type ReactNode, useState } from 'react';
import {
  api,
  CHANGE_PASSWORD_PATH,
  isSignedOut,
  isTransient,
  mustChangePassword,
  TRPCProvider,
} from '../lib/trpc';

/**
 * One query cache per page load. A query that finds the sign-in gone sends the page to /login (a failed
 * mutation shows its message instead: leaving would lose unsaved edits); any call refused because the password
 * must change first sends it to the change-password screen (nothing else works until then). A query is retried
 * once, and only when the server was not reached (a refusal would only repeat).
 */
export function makeQueryClient(): QueryClient {
  const passwordFirst = (error: unknown) => {
    if (mustChangePassword(error) && window.location.pathname !== CHANGE_PASSWORD_PATH) {
      window.location.assign(CHANGE_PASSWORD_PATH);
    }
  };
  const signedOut = (error: unknown) => {
    if (isSignedOut(error) && window.location.pathname !== '/login') window.location.assign('/login');
    passwordFirst(error);
  };
  return new QueryClient({
    queryCache: new QueryCache({ onError: signedOut }),
    mutationCache: new MutationCache({ onError: passwordFirst }),
    defaultOptions: {
      queries: {
        retry: (failures, error) => failures < 1 && isTransient(error),
        // Live data comes from the event stream and explicit refetches; a focus change is not news.
        refetchOnWindowFocus: false,
      },
      mutations: { retry: false },
    },
  });
}

/** TanStack Query and the typed tRPC options factories (`useTRPC()`) for every page. */
export function Providers({ children }: { children: ReactNode }) {
  const [queryClient] = useState(makeQueryClient);
  const [trpcClient] = useState(api);
  return (
    <QueryClientProvider client={queryClient}>
      <TRPCProvider trpcClient={trpcClient} queryClient={queryClient}>
        {children}
      </TRPCProvider>
    </QueryClientProvider>
  );
}
