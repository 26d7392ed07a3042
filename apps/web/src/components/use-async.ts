'use client';
import { useCallback, useEffect, useRef, useState } from 'react';
import { studioCode } from '../lib/trpc';

/** Loads data with a loader; `reload()` runs it again. Redirects to /login when the sign-in is gone. */
export function useAsync<T>(load: () => Promise<T>, key: string) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const loadRef = useRef(load);
  loadRef.current = load;
  // biome-ignore lint/correctness/useExhaustiveDependencies: `key` names what to load; the loader is read from a ref
  const reload = useCallback(async () => {
    try {
      const value = await loadRef.current();
      setData(value);
      setError(null);
    } catch (e) {
      if (isSignedOut(e)) {
        window.location.assign('/login');
        return;
      }
      setError(e);
    } finally {
      setLoading(false);
    }
  }, [key]);
  useEffect(() => {
    setLoading(true);
    void reload();
  }, [reload]);
  return { data, error, loading, reload, setData };
}

export function isSignedOut(e: unknown): boolean {
  const code = studioCode(e);
  return (
    code === 'UNAUTHENTICATED' ||
    code === 'TOKEN_EXPIRED' ||
    code === 'TOKEN_REVOKED' ||
    code === 'UNAUTHORIZED'
  );
}
