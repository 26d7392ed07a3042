'use client';
import { useMutation, useQueries, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, type KeyboardEvent, useEffect, useRef, useState } from 'react';
import { formatBytes, iconKindOf, newEntryPath } from '../../lib/file-types';
import { type HumanError, humanError, useTRPC, useTRPCClient } from '../../lib/trpc';
import { ErrorNote } from './error-note';
import { FileIcon } from './file-icon';

interface Entry {
  name: string;
  path: string;
  type: string;
  size: number;
}

type Mode =
  | { kind: 'file' | 'folder'; dir: string }
  | { kind: 'rename'; path: string }
  | { kind: 'delete'; path: string }
  | null;

const parentOf = (path: string) => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');
const join = (dir: string, name: string) => (dir === '' ? name : `${dir}/${name}`);

/** Folders first, then by name. */
function sortEntries(entries: Entry[]): Entry[] {
  return [...entries].sort((a, b) =>
    (a.type === 'directory') === (b.type === 'directory')
      ? a.name.localeCompare(b.name)
      : a.type === 'directory'
        ? -1
        : 1,
  );
}

function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000)
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/**
 * The workspace tree: lazy folders (one `files.list` query per open folder), create/rename/delete/upload/
 * download. The page invalidates the listings when files change (a file.changed event from anyone). File names
 * are rendered as text.
 */
export function FileTree(props: {
  sessionId: string;
  onOpen: (path: string, size: number) => void;
  onRenamed: (from: string, to: string) => void;
  onRemoved: (path: string) => void;
  /** Bumped to open the new-file form (the command palette's "New file"). */
  newFileRequest?: number;
}) {
  const { sessionId } = props;
  const trpc = useTRPC();
  const client = useTRPCClient();
  const queryClient = useQueryClient();
  const [expanded, setExpanded] = useState<Set<string>>(new Set(['']));
  const [selected, setSelected] = useState<string | null>(null);
  const [error, setError] = useState<HumanError | null>(null);
  const [mode, setMode] = useState<Mode>(null);
  const [name, setName] = useState('');
  const upload = useRef<HTMLInputElement>(null);
  const nameInput = useRef<HTMLInputElement>(null);
  const modeKind = mode?.kind;
  const newFileRequest = props.newFileRequest ?? 0;
  // biome-ignore lint/correctness/useExhaustiveDependencies: only a new request opens the form
  useEffect(() => {
    if (newFileRequest === 0) return;
    setMode({ kind: 'file', dir: targetDir() });
    setName('');
  }, [newFileRequest]);
  useEffect(() => {
    if (modeKind && modeKind !== 'delete') nameInput.current?.focus();
  }, [modeKind]);

  const listOptions = (dir: string) =>
    trpc.files.list.queryOptions(dir === '' ? { sessionId } : { sessionId, path: dir }, {
      select: sortEntries,
    });
  const open = [...expanded];
  const listings = useQueries({ queries: open.map(listOptions) });
  const dirs: Record<string, Entry[] | undefined> = {};
  open.forEach((dir, i) => {
    dirs[dir] = listings[i]?.data;
  });
  const root = listings[0];
  // A folder removed by someone else fails to list: it shows empty; only the root failing is an error.
  const rootError = root?.error ? humanError(root.error) : null;
  const reload = () => queryClient.invalidateQueries(trpc.files.list.queryFilter({ sessionId }));
  const write = useMutation(trpc.files.write.mutationOptions()).mutateAsync;
  const mkdir = useMutation(trpc.files.mkdir.mutationOptions()).mutateAsync;
  const rename = useMutation(trpc.files.rename.mutationOptions()).mutateAsync;
  const removeFile = useMutation(trpc.files.remove.mutationOptions()).mutateAsync;

  async function toggle(dir: string) {
    const next = new Set(expanded);
    if (next.has(dir)) next.delete(dir);
    else {
      // Listed before it opens, so the folder does not flash empty.
      await queryClient.fetchQuery(listOptions(dir)).catch((e) => setError(humanError(e)));
      next.add(dir);
    }
    setExpanded(next);
  }

  // Reloads the listings and opens every folder above `path`, so a new entry deep in the tree is visible.
  async function showPath(path: string) {
    await reload();
    const parents: string[] = [];
    for (let i = path.indexOf('/'); i > 0; i = path.indexOf('/', i + 1)) parents.push(path.slice(0, i));
    await Promise.all(parents.map((dir) => queryClient.fetchQuery(listOptions(dir)).catch(() => undefined)));
    setExpanded((prev) => new Set([...prev, ...parents]));
  }

  const targetDir = () => {
    if (selected === null) return '';
    const entry = Object.values(dirs)
      .flatMap((d) => d ?? [])
      .find((e) => e.path === selected);
    return entry?.type === 'directory' ? selected : parentOf(selected);
  };

  async function act(fn: () => Promise<unknown>) {
    setError(null);
    try {
      await fn();
      setMode(null);
      setName('');
    } catch (e) {
      setError(humanError(e));
    }
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!mode) return;
    const trimmed = name.trim();
    if (mode.kind === 'file') {
      // A name with a slash is from the workspace root; a plain name goes into the selected folder.
      const path = newEntryPath(mode.dir, trimmed);
      await act(async () => {
        await write({ sessionId, path, content: '', createParents: true });
        await showPath(path);
        props.onOpen(path, 0);
        setSelected(path);
      });
    } else if (mode.kind === 'folder') {
      const path = newEntryPath(mode.dir, trimmed);
      await act(async () => {
        await mkdir({ sessionId, path, createParents: true });
        await showPath(path);
      });
    } else if (mode.kind === 'rename') {
      const to = join(parentOf(mode.path), trimmed);
      await act(async () => {
        await rename({ sessionId, from: mode.path, to });
        props.onRenamed(mode.path, to);
        setSelected(to);
        await reload();
      });
    }
  }

  async function remove(path: string) {
    await act(async () => {
      await removeFile({ sessionId, path, recursive: true });
      props.onRemoved(path);
      setSelected(null);
      await reload();
    });
  }

  async function download(path: string) {
    await act(async () => {
      const file = await client.files.read.query({ sessionId, path, encoding: 'base64' });
      const bytes = Uint8Array.from(atob(file.content), (c) => c.charCodeAt(0));
      const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = path.split('/').pop() ?? 'download';
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    });
  }

  async function onUpload(files: FileList | null) {
    if (!files || files.length === 0) return;
    const dir = targetDir();
    await act(async () => {
      for (const file of Array.from(files)) {
        const content = toBase64(new Uint8Array(await file.arrayBuffer()));
        await write({
          sessionId,
          path: join(dir, file.name),
          content,
          encoding: 'base64',
          createParents: true,
        });
      }
      await reload();
    });
    if (upload.current) upload.current.value = '';
  }

  function onKey(event: KeyboardEvent, entry: Entry) {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      setSelected(entry.path);
      if (entry.type === 'directory') void toggle(entry.path);
      else props.onOpen(entry.path, entry.size);
    } else if (event.key === 'F2') {
      setMode({ kind: 'rename', path: entry.path });
      setName(entry.name);
    } else if (event.key === 'Delete') {
      setMode({ kind: 'delete', path: entry.path });
    }
  }

  const renderDir = (dir: string, depth: number) =>
    (dirs[dir] ?? []).map((entry) => (
      <li key={entry.path}>
        <button
          type="button"
          aria-current={selected === entry.path ? 'true' : undefined}
          aria-expanded={entry.type === 'directory' ? expanded.has(entry.path) : undefined}
          className={`tree-item depth-${Math.min(depth, 8)} ${selected === entry.path ? 'selected' : ''}`}
          data-path={entry.path}
          title={entry.type === 'file' ? `${entry.path} (${formatBytes(entry.size)})` : entry.path}
          onClick={() => {
            setSelected(entry.path);
            if (entry.type === 'directory') void toggle(entry.path);
            else props.onOpen(entry.path, entry.size);
          }}
          onKeyDown={(e) => onKey(e, entry)}
        >
          <span aria-hidden="true" className="tree-icon">
            <FileIcon kind={iconKindOf(entry.name, entry.type, expanded.has(entry.path))} />
          </span>
          <span className="tree-name">{entry.name}</span>
        </button>
        {entry.type === 'directory' && expanded.has(entry.path) && (
          <ul>{renderDir(entry.path, depth + 1)}</ul>
        )}
      </li>
    ));

  const selectedName = selected?.split('/').pop() ?? '';
  return (
    <nav className="file-tree" aria-label="Files">
      <div className="tree-toolbar" role="toolbar" aria-label="File actions">
        <button
          type="button"
          onClick={() => {
            setMode({ kind: 'file', dir: targetDir() });
            setName('');
          }}
          aria-label="New file"
        >
          +File
        </button>
        <button
          type="button"
          onClick={() => {
            setMode({ kind: 'folder', dir: targetDir() });
            setName('');
          }}
          aria-label="New folder"
        >
          +Folder
        </button>
        <button type="button" onClick={() => upload.current?.click()} aria-label="Upload files">
          Upload
        </button>
        <input
          ref={upload}
          type="file"
          multiple
          className="sr-only"
          aria-label="Files to upload"
          tabIndex={-1}
          onChange={(e) => void onUpload(e.target.files)}
        />
      </div>
      {selected && (
        <div className="tree-toolbar" role="toolbar" aria-label="Selected file actions">
          <span className="tree-selected" title={selected}>
            {selectedName}
          </span>
          <button
            type="button"
            onClick={() => {
              setMode({ kind: 'rename', path: selected });
              setName(selectedName);
            }}
            aria-label={`Rename ${selectedName}`}
          >
            Rename
          </button>
          <button
            type="button"
            onClick={() => void download(selected)}
            aria-label={`Download ${selectedName}`}
          >
            Download
          </button>
          <button
            type="button"
            className="danger"
            onClick={() => setMode({ kind: 'delete', path: selected })}
            aria-label={`Delete ${selectedName}`}
          >
            Delete
          </button>
        </div>
      )}
      {mode && mode.kind !== 'delete' && (
        <form className="tree-form" onSubmit={submit}>
          <label htmlFor="tree-name">
            {mode.kind === 'file'
              ? 'New file name'
              : mode.kind === 'folder'
                ? 'New folder name'
                : 'Rename to'}
          </label>
          <input
            id="tree-name"
            value={name}
            onChange={(e) => setName(e.target.value)}
            ref={nameInput}
            placeholder={mode.kind === 'rename' ? undefined : 'name, or a/b from the root'}
            title={
              mode.kind === 'rename'
                ? undefined
                : 'A plain name goes into the selected folder; a path with a slash starts at the workspace root'
            }
            required
            spellCheck={false}
          />
          <button type="submit" className="primary">
            OK
          </button>
          <button type="button" onClick={() => setMode(null)}>
            Cancel
          </button>
        </form>
      )}
      {mode?.kind === 'delete' && (
        <fieldset className="tree-form">
          <legend className="sr-only">Confirm delete</legend>
          <span>Delete {mode.path.split('/').pop()} for good?</span>
          <button type="button" className="danger" onClick={() => void remove(mode.path)}>
            Yes, delete
          </button>
          <button type="button" onClick={() => setMode(null)}>
            Cancel
          </button>
        </fieldset>
      )}
      {(error ?? rootError) && <ErrorNote error={(error ?? rootError) as HumanError} />}
      {root?.isPending ? (
        <p className="muted" aria-live="polite">
          Loading files…
        </p>
      ) : dirs[''] === undefined ? null : dirs[''].length === 0 ? (
        <p className="empty">The workspace is empty. Create a file or upload one.</p>
      ) : (
        <ul className="tree" aria-label="Workspace">
          {renderDir('', 0)}
        </ul>
      )}
    </nav>
  );
}
