'use client';
import { useMutation, useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { usePathname } from 'next/navigation';
import type { ReactNode } from 'react';
import { useTRPC } from '../lib/trpc';

const PAGES = [
  { href: '/', label: 'Sessions' },
  { href: '/templates', label: 'Templates' },
  { href: '/snapshots', label: 'Snapshots' },
  { href: '/secrets', label: 'Secrets' },
] as const;

/** The header: product name, the pages (sessions, templates, snapshots, secrets), the signed-in user, sign out. */
export function TopBar({ children }: { children?: ReactNode }) {
  const trpc = useTRPC();
  const path = usePathname();
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
      <nav className="topnav" aria-label="Pages">
        {PAGES.map((p) => (
          <Link key={p.href} href={p.href} aria-current={path === p.href ? 'page' : undefined}>
            {p.label}
          </Link>
        ))}
      </nav>
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
