'use client';
import { useMutation, useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { usePathname } from 'next/navigation';
import { type ReactNode, useEffect } from 'react';
import { CHANGE_PASSWORD_PATH, useTRPC } from '../lib/trpc';

const PAGES = [
  { href: '/', label: 'Sessions' },
  { href: '/templates', label: 'Templates' },
  { href: '/snapshots', label: 'Snapshots' },
  { href: '/secrets', label: 'Secrets' },
  { href: '/account', label: 'Account' },
] as const;

/** Pages for administrators only: the API refuses their calls to others, so others are not shown the link. */
const ADMIN_PAGES = [{ href: '/admin/users', label: 'Users' }] as const;

/**
 * The header: product name, the pages (sessions, templates, snapshots, secrets, account; users for
 * administrators), the signed-in user, sign out. A sign-in that must change its password is sent to do that.
 */
export function TopBar({ children }: { children?: ReactNode }) {
  const trpc = useTRPC();
  const path = usePathname();
  const me = useQuery(trpc.auth.me.queryOptions());
  const mustChange = me.data?.via === 'login' && me.data.mustChangePassword;
  useEffect(() => {
    if (mustChange) window.location.assign(CHANGE_PASSWORD_PATH);
  }, [mustChange]);
  const pages = me.data?.role === 'admin' ? [...PAGES, ...ADMIN_PAGES] : PAGES;
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
        {pages.map((p) => (
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
