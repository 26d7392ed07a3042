'use client';
import { formatBytes } from '../../lib/file-types';
import { CodeEditor } from './code-editor';
import type { EditorTabs as Tabs } from './use-editor-tabs';

/** The open-file tabs, a failed open or save, a disk-change conflict, and the editor of the active tab. */
export function EditorTabs({ editor }: { editor: Tabs }) {
  const { tabs, active, notice } = editor;
  const tab = tabs.find((t) => t.path === active) ?? null;
  return (
    <>
      <div className="tabs" role="tablist" aria-label="Open files">
        {tabs.length === 0 && <span className="muted small tab-empty">No file open</span>}
        {tabs.map((t) => {
          const dirty = t.current !== t.saved;
          return (
            <div key={t.path} className={`tab ${t.path === active ? 'active' : ''}`}>
              <button
                type="button"
                role="tab"
                aria-selected={t.path === active}
                onClick={() => editor.setActive(t.path)}
                title={t.path}
              >
                {t.path.split('/').pop()}
                {dirty && (
                  <span className="dirty" aria-label="unsaved changes" role="img">
                    {' '}
                    ●
                  </span>
                )}
              </button>
              <button
                type="button"
                className="tab-close"
                aria-label={`Close ${t.path}`}
                onClick={() => editor.close(t.path)}
              >
                ×
              </button>
            </div>
          );
        })}
      </div>
      {notice && (
        <p className="error small banner" role="alert">
          {notice}
        </p>
      )}
      {tab?.conflict && (
        <div className="conflict" role="alert">
          {tab.conflict === 'changed'
            ? `${tab.path} changed on disk while you were editing it.`
            : `${tab.path} was removed on disk.`}{' '}
          <button
            type="button"
            onClick={() => editor.reloadFromDisk(tab.path)}
            disabled={tab.conflict === 'removed'}
          >
            Reload from disk (discard mine)
          </button>{' '}
          <button type="button" onClick={() => void editor.save(tab.path)}>
            Keep mine (save over it)
          </button>
        </div>
      )}
      <div className="editor-area">
        {!tab ? (
          <p className="empty center">Open a file from the tree (Alt+1), or create one. Ctrl/Cmd+S saves.</p>
        ) : tab.blocked ? (
          <div className="card center">
            <p>
              {tab.blocked === 'binary'
                ? `${tab.path} looks binary and is not opened in the editor.`
                : tab.blocked === 'too-large'
                  ? `${tab.path} is larger than the server lets the editor read.`
                  : `${tab.path} is large (${formatBytes(tab.size)}); the editor may be slow.`}
            </p>
            {tab.blocked === 'large' && (
              <button
                type="button"
                onClick={() => {
                  editor.close(tab.path);
                  void editor.open(tab.path, tab.size, true);
                }}
              >
                Open anyway
              </button>
            )}
            <p className="muted small">Use Download in the file tree to get it.</p>
          </div>
        ) : (
          <CodeEditor
            key={tab.path}
            path={tab.path}
            value={tab.current}
            version={tab.version}
            onChange={(v) => editor.edit(tab.path, v)}
            onSave={() => void editor.save(tab.path)}
          />
        )}
      </div>
    </>
  );
}
