import type { IconKind } from '../../lib/file-types';

// Each file kind: a label drawn on the page shape and its colour class (ide-edges.css). Inline SVG with
// presentation attributes and classes only: no icon font, no CDN, nothing the CSP refuses.
const FILE_LABELS: Record<Exclude<IconKind, 'folder' | 'folder-open' | 'link'>, string> = {
  js: 'JS',
  ts: 'TS',
  json: '{}',
  markdown: 'M',
  html: '<>',
  css: '#',
  python: 'Py',
  image: '▲',
  config: '⚙',
  shell: '$',
  archive: 'Z',
  lock: '≡',
  text: '',
};

/** A 16×16 picture of a tree entry's kind (decorative: the name beside it says what it is). */
export function FileIcon({ kind }: { kind: IconKind }) {
  if (kind === 'folder' || kind === 'folder-open') {
    return (
      <svg
        className={`file-icon icon-${kind}`}
        data-icon={kind}
        viewBox="0 0 16 16"
        width="16"
        height="16"
        aria-hidden="true"
        focusable="false"
      >
        {kind === 'folder' ? (
          <path d="M1.5 3.5h4.5l1.5 1.5h7v8.5h-13z" />
        ) : (
          <path d="M1.5 3.5h4.5l1.5 1.5h6v2h-10l-2 6.5zM3.5 7.5h11.5l-2 6h-11.5z" />
        )}
      </svg>
    );
  }
  if (kind === 'link') {
    return (
      <svg
        className="file-icon icon-link"
        data-icon="link"
        viewBox="0 0 16 16"
        width="16"
        height="16"
        aria-hidden="true"
        focusable="false"
      >
        <path d="M6 10l4-4M5 7.5l-1.5 1.5a2.5 2.5 0 003.5 3.5L8.5 11M11 8.5l1.5-1.5a2.5 2.5 0 00-3.5-3.5L7.5 5" />
      </svg>
    );
  }
  const label = FILE_LABELS[kind];
  return (
    <svg
      className={`file-icon icon-${kind}`}
      data-icon={kind}
      viewBox="0 0 16 16"
      width="16"
      height="16"
      aria-hidden="true"
      focusable="false"
    >
      <path className="file-icon-page" d="M3 1.5h6.5l3.5 3.5v9.5h-10z" />
      {label && (
        <text x="8" y="12.5" textAnchor="middle" className="file-icon-label">
          {label}
        </text>
      )}
    </svg>
  );
}
