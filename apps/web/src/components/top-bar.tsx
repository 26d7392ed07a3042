'use client';
import { useMutation, useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import type { ReactNode } from 'react';
import { useTRPC } from '../lib/trpc';

/** The header: product name, the signed-in user, sign out. */
export function TopBar({ children }: { children?: ReactNode }) {
  const trpc = useTRPC();
  const me = useQuery(trpc.auth.me.queryOptions());
  // Signed out or not (the cookie may already be gone), the next page is the login page.
  const logout = useMutation(
    trpc.auth.logout.mutationOptions({ onSettled: () => window.location.assign('/login') }),
  );
  return (
    <header className="topbar">
      <Link href="/" className="brand">
        Claude Studio
      </Link>
      <div className="topbar-middle">{children}</div>
      <span className="muted" title="Signed in as">
        {me.data ? me.data.username : ''}
      </span>
      <button type="button" onClick={() => logout.mutate()}>
        Sign out
      </button>
    </header>
  );
}
