'use client';
import { useMutation, useQuery } from '@tanstack/react-query';
import { useCallback, useEffect, useRef, useState } from 'react';
import { hasBinaryExtension, LARGE_FILE_BYTES, looksBinary } from '../../lib/file-types';
import { errorMessage, studioCode, useTRPC, useTRPCClient } from '../../lib/trpc';
import { parseSavedTabs, savedTabsKey, serializeTabs } from './saved-tabs';

/** Why a file is not in the editor: binary, over the soft size guard, over the server's read limit. */
export type Blocked = 'binary' | 'large' | 'too-large';

export interface Tab {
  path: string;
  /** What is on disk as far as we know. */
  saved: string;
  current: string;
  /** Bumped when the editor must be reset to `current` (load, reload from disk). */
  version: number;
  /** Someone else changed (or removed) the file while this tab had unsaved edits. */
  conflict: 'changed' | 'removed' | null;
  /** Why the file is not editable, or null. */
  blocked: Blocked | null;
  size: number;
}

/** The open files of one session and what can be done with them. */
export interface EditorTabs {
  tabs: Tab[];
  active: string | null;
  /** A failed open or save (or another action of the page), as a message above the editor. */
  notice: string | null;
  setNotice(message: string | null): void;
  setActive(path: string): void;
  /** Opens a file in a tab (or focuses its tab); `force` opens a large file anyway. */
  open(path: string, size: number, force?: boolean): Promise<void>;
  /** Saves a tab (default the active one). */
  save(path?: string): Promise<void>;
  close(path: string): void;
  edit(path: string, value: string): void;
  /** Drops the tab's edits for what is on disk. */
  reloadFromDisk(path: string): void;
  /** A file changed on disk (by anyone): reloads a clean tab, flags a dirty one. */
  diskChanged(path: string): Promise<void>;
  /** Every open tab may have changed on disk. */
  allChanged(): void;
  renamed(from: string, to: string): void;
  removed(path: string): void;
  hasUnsaved(): boolean;
}

/** The browser's storage, or null where there is none (private modes may refuse it). */
function storage(): Storage | null {
  try {
    return typeof window === 'undefined' ? null : window.localStorage;
  } catch {
    return null;
  }
}

/**
 * Editor tabs: file text is read once per open or disk change through the tRPC client (it becomes the tab's
 * state, not cached query data); saves go through `files.write`'s mutation options. The open tabs and the active
 * one are kept per session in the browser (issue 22) and reopened on the next load once the session runs (a
 * paused one is not resumed just to reopen tabs); a file that is gone by then is left closed, quietly.
 */
export function useEditorTabs(sessionId: string): EditorTabs {
  const trpc = useTRPC();
  const client = useTRPCClient();
  const { mutateAsync: write } = useMutation(trpc.files.write.mutationOptions());
  const [tabs, setTabs] = useState<Tab[]>([]);
  const [active, setActive] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  // Event handlers and shortcuts read the latest tabs without re-subscribing.
  const tabsRef = useRef(tabs);
  tabsRef.current = tabs;
  const activeRef = useRef(active);
  activeRef.current = active;

  // What was kept is reopened once, when the session runs; until then nothing is written over it.
  const session = useQuery(trpc.sessions.get.queryOptions({ sessionId }));
  const running = session.data?.state === 'running';
  const restoring = useRef(false);
  const [restored, setRestored] = useState(false);
  useEffect(() => {
    if (!running || restoring.current) return;
    restoring.current = true;
    const saved = parseSavedTabs(storage()?.getItem(savedTabsKey(sessionId)) ?? null);
    if (!saved || saved.tabs.length === 0) {
      setRestored(true);
      return;
    }
    void (async () => {
      const reopened = await Promise.all(
        saved.tabs.map(async ({ path, size }): Promise<Tab | null> => {
          const base: Tab = { path, saved: '', current: '', version: 0, conflict: null, blocked: null, size };
          if (hasBinaryExtension(path)) return { ...base, blocked: 'binary' };
          if (size > LARGE_FILE_BYTES) return { ...base, blocked: 'large' };
          try {
            const file = await client.files.read.query({ sessionId, path });
            if (looksBinary(file.content)) return { ...base, blocked: 'binary' };
            return { ...base, saved: file.content, current: file.content, size: file.size };
          } catch (e) {
            const code = studioCode(e);
            if (code === 'FILE_NOT_TEXT') return { ...base, blocked: 'binary' };
            if (code === 'FILE_TOO_LARGE') return { ...base, blocked: 'too-large' };
            // Gone (or unreadable) since: the tab stays closed, without an error about a file nobody opened.
            return null;
          }
        }),
      );
      const kept = reopened.filter((t): t is Tab => t !== null);
      // Tabs opened meanwhile stay as they are, after the kept ones.
      setTabs((prev) => [...kept.filter((t) => !prev.some((p) => p.path === t.path)), ...prev]);
      setActive(
        (a) => a ?? (kept.some((t) => t.path === saved.active) ? saved.active : (kept[0]?.path ?? null)),
      );
      setRestored(true);
    })();
  }, [running, client, sessionId]);

  // Written on every change of the tab list or the active tab (not on edits: their text is not kept).
  const persisted = serializeTabs(tabs, active);
  useEffect(() => {
    if (!restored) return;
    try {
      storage()?.setItem(savedTabsKey(sessionId), persisted);
    } catch {
      // Full or refused: the tabs are simply not reopened next time.
    }
  }, [restored, persisted, sessionId]);

  const updateTab = useCallback((path: string, fn: (t: Tab) => Tab) => {
    setTabs((prev) => prev.map((t) => (t.path === path ? fn(t) : t)));
  }, []);

  const diskChanged = useCallback(
    async (path: string) => {
      const tab = tabsRef.current.find((t) => t.path === path);
      if (!tab || tab.blocked) return;
      try {
        const file = await client.files.read.query({ sessionId, path });
        const latest = tabsRef.current.find((t) => t.path === path);
        if (!latest || file.content === latest.saved) return;
        if (latest.current === latest.saved) {
          updateTab(path, (t) => ({
            ...t,
            saved: file.content,
            current: file.content,
            version: t.version + 1,
            conflict: null,
          }));
        } else {
          updateTab(path, (t) => ({ ...t, saved: file.content, conflict: 'changed' }));
        }
      } catch (e) {
        if (studioCode(e) === 'NOT_FOUND') updateTab(path, (t) => ({ ...t, conflict: 'removed' }));
      }
    },
    [client, sessionId, updateTab],
  );

  const open = useCallback(
    async (path: string, size: number, force = false) => {
      setNotice(null);
      if (tabsRef.current.some((t) => t.path === path && !t.blocked)) {
        setActive(path);
        return;
      }
      const base: Tab = { path, saved: '', current: '', version: 0, conflict: null, blocked: null, size };
      const block = (reason: Blocked) => {
        setTabs((prev) => [...prev.filter((t) => t.path !== path), { ...base, blocked: reason }]);
        setActive(path);
      };
      if (hasBinaryExtension(path)) return block('binary');
      if (size > LARGE_FILE_BYTES && !force) return block('large');
      try {
        const file = await client.files.read.query({ sessionId, path });
        if (looksBinary(file.content)) return block('binary');
        setTabs((prev) => [
          ...prev.filter((t) => t.path !== path),
          { ...base, saved: file.content, current: file.content, size: file.size },
        ]);
        setActive(path);
      } catch (e) {
        const code = studioCode(e);
        if (code === 'FILE_NOT_TEXT') return block('binary');
        if (code === 'FILE_TOO_LARGE') return block('too-large');
        setNotice(errorMessage(e));
      }
    },
    [client, sessionId],
  );

  const save = useCallback(
    async (path?: string) => {
      const tab = tabsRef.current.find((t) => t.path === (path ?? activeRef.current));
      if (!tab || tab.blocked) return;
      const content = tab.current;
      try {
        await write({ sessionId, path: tab.path, content });
        updateTab(tab.path, (t) => ({ ...t, saved: content, conflict: null }));
        setNotice(null);
      } catch (e) {
        setNotice(`Could not save ${tab.path}: ${errorMessage(e)}`);
      }
    },
    [sessionId, updateTab, write],
  );

  const close = useCallback((path: string) => {
    setTabs((prev) => {
      const next = prev.filter((t) => t.path !== path);
      setActive((a) => (a === path ? (next[next.length - 1]?.path ?? null) : a));
      return next;
    });
  }, []);

  const edit = useCallback(
    (path: string, value: string) => updateTab(path, (t) => ({ ...t, current: value })),
    [updateTab],
  );

  const reloadFromDisk = useCallback(
    (path: string) =>
      updateTab(path, (t) => ({ ...t, current: t.saved, version: t.version + 1, conflict: null })),
    [updateTab],
  );

  const allChanged = useCallback(() => {
    for (const t of tabsRef.current) void diskChanged(t.path);
  }, [diskChanged]);

  const renamed = useCallback((from: string, to: string) => {
    setTabs((prev) => prev.map((t) => (t.path === from ? { ...t, path: to } : t)));
    setActive((a) => (a === from ? to : a));
  }, []);

  const removed = useCallback((path: string) => {
    setTabs((prev) => prev.filter((t) => t.path !== path && !t.path.startsWith(`${path}/`)));
  }, []);

  const hasUnsaved = useCallback(() => tabsRef.current.some((t) => t.current !== t.saved), []);

  return {
    tabs,
    active,
    notice,
    setNotice,
    setActive,
    open,
    save,
    close,
    edit,
    reloadFromDisk,
    diskChanged,
    allChanged,
    renamed,
    removed,
    hasUnsaved,
  };
}
