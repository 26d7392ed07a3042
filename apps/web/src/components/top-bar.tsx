'use client';
import Link from 'next/link';
import type { ReactNode } from 'react';
import { api } from '../lib/trpc';
import { useAsync } from './use-async';

/** The header: product name, the signed-in user, sign out. */
export function TopBar({ children }: { children?: ReactNode }) {
  const me = useAsync(() => api().auth.me.query(), '');
  async function logout() {
    await api()
      .auth.logout.mutate()
      .catch(() => undefined);
    window.location.assign('/login');
  }
  return (
    <header className="topbar">
      <Link href="/" className="brand">
        Claude Studio
      </Link>
      <div className="topbar-middle">{children}</div>
      <span className="muted" title="Signed in as">
        {me.data ? me.data.username : ''}
      </span>
      <button type="button" onClick={() => void logout()}>
        Sign out
      </button>
    </header>
  );
}
