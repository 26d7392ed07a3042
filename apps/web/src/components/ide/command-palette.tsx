'use client';
import { useQuery } from '@tanstack/react-query';
import { Command } from 'cmdk';
import { useEffect, useRef } from 'react';
import { iconKindOf } from '../../lib/file-types';
import { humanError, useTRPCClient } from '../../lib/trpc';
import { ErrorNote } from './error-note';
import { FileIcon } from './file-icon';

/** One thing the palette can do besides opening a file. */
export interface PaletteAction {
  id: string;
  label: string;
  /** Shown on the right, e.g. "Ctrl+S". */
  shortcut?: string;
  run: () => void;
}

/**
 * The command palette (cmdk, no dialog library: an overlay of our own, so nothing but cmdk's CSSOM writes
 * touches styles): open a file by fuzzy name (`files.paths`), or run an action (new file, save, search in files,
 * toggle panels). Escape or a click outside closes it.
 */
export function CommandPalette({
  sessionId,
  actions,
  onOpenFile,
  onClose,
}: {
  sessionId: string;
  actions: PaletteAction[];
  onOpenFile: (path: string) => void;
  onClose: () => void;
}) {
  const client = useTRPCClient();
  // files.paths is a POST (it runs ripgrep in the sandbox; no GET may start anything), read once per opening.
  const paths = useQuery({
    queryKey: ['files.paths', sessionId],
    queryFn: () => client.files.paths.mutate({ sessionId }),
    staleTime: 0,
    gcTime: 0,
    retry: false,
  });
  const input = useRef<HTMLInputElement>(null);
  // Focus goes back where it was when the palette closes.
  const before = useRef<Element | null>(null);
  useEffect(() => {
    before.current = document.activeElement;
    input.current?.focus();
    return () => {
      if (before.current instanceof HTMLElement) before.current.focus();
    };
  }, []);

  return (
    // biome-ignore lint/a11y/noStaticElementInteractions: the backdrop only closes on a click outside the palette
    // biome-ignore lint/a11y/useKeyWithClickEvents: Escape closes it from the keyboard (below)
    <div
      className="palette-backdrop"
      onClick={(e) => {
        if (e.target === e.currentTarget) onClose();
      }}
    >
      <Command
        label="Command palette"
        className="palette"
        loop
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.preventDefault();
            e.stopPropagation();
            onClose();
          }
        }}
      >
        <Command.Input ref={input} placeholder="Type a file name or a command…" className="palette-input" />
        <Command.List className="palette-list">
          <Command.Empty className="palette-empty">Nothing matches.</Command.Empty>
          <Command.Group heading="Commands">
            {actions.map((a) => (
              <Command.Item
                key={a.id}
                value={`> ${a.label}`}
                keywords={[a.id]}
                onSelect={() => {
                  onClose();
                  a.run();
                }}
                className="palette-item"
              >
                <span>{a.label}</span>
                {a.shortcut && <kbd className="palette-kbd">{a.shortcut}</kbd>}
              </Command.Item>
            ))}
          </Command.Group>
          <Command.Group heading="Files">
            {paths.isPending && <Command.Loading>Listing files…</Command.Loading>}
            {paths.data?.paths.map((path) => (
              <Command.Item
                key={path}
                value={path}
                onSelect={() => {
                  onClose();
                  onOpenFile(path);
                }}
                className="palette-item"
              >
                <FileIcon kind={iconKindOf(path.split('/').pop() ?? path, 'file')} />
                <span className="palette-path">{path}</span>
              </Command.Item>
            ))}
          </Command.Group>
        </Command.List>
        {paths.error && <ErrorNote error={humanError(paths.error)} />}
      </Command>
    </div>
  );
}
