'use client';
import { QueryCache, QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { type ReactNode, useState } from 'react';
import { api, isSignedOut, isTransient, TRPCProvider } from '../lib/trpc';

/**
 * One query cache per page load. A query that finds the sign-in gone sends the page to /login (a failed
 * mutation shows its message instead: leaving would lose unsaved edits); a query is retried once, and only when
 * the server was not reached (a refusal would only repeat).
 */
export function makeQueryClient(): QueryClient {
  const signedOut = (error: unknown) => {
    if (isSignedOut(error) && window.location.pathname !== '/login') window.location.assign('/login');
  };
  return new QueryClient({
    queryCache: new QueryCache({ onError: signedOut }),
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
