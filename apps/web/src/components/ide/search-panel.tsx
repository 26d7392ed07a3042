'use client';
import { useMutation } from '@tanstack/react-query';
import { type FormEvent, type Ref, useState } from 'react';
import { iconKindOf } from '../../lib/file-types';
import { humanError, useTRPC } from '../../lib/trpc';
import { ErrorNote } from './error-note';
import { FileIcon } from './file-icon';

/** A matching line with its matches marked (text only: a file's contents are never markup). */
function Marked({ text, ranges }: { text: string; ranges: [number, number][] }) {
  const parts: { text: string; hit: boolean }[] = [];
  let at = 0;
  for (const [start, end] of ranges) {
    if (start < at || end <= start) continue;
    if (start > at) parts.push({ text: text.slice(at, start), hit: false });
    parts.push({ text: text.slice(start, end), hit: true });
    at = end;
  }
  if (at < text.length) parts.push({ text: text.slice(at), hit: false });
  return (
    <>
      {parts.map((p, i) =>
        p.hit ? (
          // biome-ignore lint/suspicious/noArrayIndexKey: the parts of one line never move
          <mark key={i}>{p.text}</mark>
        ) : (
          // biome-ignore lint/suspicious/noArrayIndexKey: the parts of one line never move
          <span key={i}>{p.text}</span>
        ),
      )}
    </>
  );
}

/**
 * Search across the workspace's files (`files.search`: ripgrep in the sandbox): results grouped by file; a
 * result opens its file at its line.
 */
export function SearchPanel({
  sessionId,
  onOpen,
  inputRef,
}: {
  sessionId: string;
  onOpen: (path: string, line: number) => void;
  inputRef?: Ref<HTMLInputElement>;
}) {
  const trpc = useTRPC();
  const [query, setQuery] = useState('');
  const [caseSensitive, setCaseSensitive] = useState(false);
  const [regex, setRegex] = useState(false);
  // A POST (files.search runs ripgrep in the sandbox, and no GET may start anything): one per Enter.
  const search = useMutation(trpc.files.search.mutationOptions());

  function submit(event: FormEvent) {
    event.preventDefault();
    if (query === '') return;
    search.mutate({ sessionId, query, caseSensitive, regex });
  }

  const result = search.data;
  return (
    <div className="search-panel">
      <search>
        <form className="search-form" onSubmit={submit} aria-label="Search in files">
          <label htmlFor="search-query" className="sr-only">
            Search in files
          </label>
          <input
            id="search-query"
            ref={inputRef}
            value={query}
            onChange={(e) => setQuery(e.target.value)}
            placeholder="Search in files (Enter)"
            spellCheck={false}
            autoComplete="off"
            maxLength={500}
          />
          <div className="search-options">
            <label title="Match upper and lower case exactly">
              <input
                type="checkbox"
                aria-label="Match case"
                checked={caseSensitive}
                onChange={(e) => setCaseSensitive(e.target.checked)}
              />
              Aa
            </label>
            <label title="Read the text as a regular expression">
              <input
                type="checkbox"
                aria-label="Regular expression"
                checked={regex}
                onChange={(e) => setRegex(e.target.checked)}
              />
              .*
            </label>
            <button type="submit" disabled={search.isPending || query === ''}>
              {search.isPending ? 'Searching…' : 'Search'}
            </button>
          </div>
        </form>
      </search>
      {search.error && <ErrorNote error={humanError(search.error)} />}
      {result && (
        <p className="muted small search-summary" role="status">
          {result.matchCount === 0
            ? 'No matches.'
            : `${result.matchCount} ${result.matchCount === 1 ? 'match' : 'matches'} in ${result.files.length} ${
                result.files.length === 1 ? 'file' : 'files'
              }${result.truncated ? ' (more not shown: narrow the search)' : ''}`}
        </p>
      )}
      {result && result.files.length > 0 && (
        <ul className="search-results" aria-label="Search results">
          {result.files.map((file) => (
            <li key={file.path}>
              <div className="search-file" title={file.path}>
                <FileIcon kind={iconKindOf(file.path.split('/').pop() ?? file.path, 'file')} />
                <span className="search-file-path">{file.path}</span>
                <span className="muted small">{file.matches.length}</span>
              </div>
              <ul>
                {file.matches.map((m) => (
                  <li key={m.line}>
                    <button
                      type="button"
                      className="search-match"
                      onClick={() => onOpen(file.path, m.line)}
                      aria-label={`${file.path} line ${m.line}: ${m.text}`}
                    >
                      <span className="search-line muted">{m.line}</span>
                      <span className="search-text">
                        <Marked text={m.text} ranges={m.ranges} />
                      </span>
                    </button>
                  </li>
                ))}
              </ul>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
