'use client';
import { useMutation } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import {
  DEFAULT_TEMPLATE_NAME,
  EMPTY_FORM,
  type FileRow,
  type TemplateForm as Form,
  specFromForm,
  type Template,
} from '../../lib/templates';
import { errorParts, useTRPC } from '../../lib/trpc';
import { ErrorBox, type Failure } from './template-parts';

/**
 * The create form: name and description, then either the recipe editor (base, Debian/npm/pip packages, files,
 * build commands) or a Dockerfile, and what both may set (environment, working directory, start command and
 * ready check). The API checks every field; a refusal shows what to do, then its code and words.
 */
export function TemplateForm({
  templates,
  onCreated,
  onCancel,
}: {
  templates: Template[];
  onCreated: (template: Template) => void;
  onCancel: () => void;
}) {
  const trpc = useTRPC();
  const create = useMutation(trpc.templates.create.mutationOptions());
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [form, setForm] = useState<Form>(EMPTY_FORM);
  const [error, setError] = useState<Failure | null>(null);
  const set = <K extends keyof Form>(key: K, value: Form[K]) => setForm((f) => ({ ...f, [key]: value }));
  const setFile = (i: number, patch: Partial<FileRow>) =>
    set(
      'files',
      form.files.map((f, j) => (j === i ? { ...f, ...patch } : f)),
    );
  const bases = templates.filter((t) => t.usable && t.id !== DEFAULT_TEMPLATE_NAME);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    const { spec, error: formError } = specFromForm(form);
    if (formError) {
      setError({ message: formError, detail: null });
      return;
    }
    try {
      const created = await create.mutateAsync({
        name: name.trim(),
        ...(description.trim() !== '' ? { description: description.trim() } : {}),
        spec,
      });
      onCreated(created);
    } catch (e) {
      setError(errorParts(e));
    }
  }

  return (
    <form className="template-form" onSubmit={(e) => void submit(e)} aria-label="New template">
      <label htmlFor="template-name">Name</label>
      <input
        id="template-name"
        className="mono"
        value={name}
        onChange={(e) => setName(e.target.value)}
        placeholder="node-api"
        autoComplete="off"
        spellCheck={false}
        required
        maxLength={63}
        aria-describedby="template-name-hint"
      />
      <p id="template-name-hint" className="muted small template-hint">
        a-z, 0-9 and -, starting with a letter: sessions name it.
      </p>
      <label htmlFor="template-description">Description</label>
      <input
        id="template-description"
        value={description}
        onChange={(e) => setDescription(e.target.value)}
        maxLength={500}
      />

      <fieldset className="template-mode">
        <legend>Build from</legend>
        <label>
          <input
            type="radio"
            name="template-mode"
            checked={form.mode === 'recipe'}
            onChange={() => set('mode', 'recipe')}
          />
          Recipe
        </label>
        <label>
          <input
            type="radio"
            name="template-mode"
            checked={form.mode === 'dockerfile'}
            onChange={() => set('mode', 'dockerfile')}
          />
          Dockerfile
        </label>
      </fieldset>

      {form.mode === 'recipe' ? (
        <>
          <label htmlFor="template-base">Base</label>
          <select id="template-base" value={form.base} onChange={(e) => set('base', e.target.value)}>
            <option value={DEFAULT_TEMPLATE_NAME}>default (the server&apos;s image)</option>
            {bases.map((t) => (
              <option key={t.id} value={t.id}>
                {t.name}
                {t.owner === 'shared' ? ' (shared)' : ''}
              </option>
            ))}
          </select>
          <PackageInput
            id="template-debian"
            label="Debian packages"
            value={form.debian}
            placeholder="postgresql-client jq"
            onChange={(v) => set('debian', v)}
          />
          <PackageInput
            id="template-npm"
            label="npm packages"
            value={form.npm}
            placeholder="typescript, @angular/cli@17"
            onChange={(v) => set('npm', v)}
          />
          <PackageInput
            id="template-pip"
            label="pip packages"
            value={form.pip}
            placeholder="requests django>=5,<6"
            onChange={(v) => set('pip', v)}
          />

          <fieldset className="template-files">
            <legend>Files</legend>
            {form.files.length === 0 && (
              <p className="muted small">
                No files. Absolute paths outside /workspace, /tmp and /opt/studio.
              </p>
            )}
            {form.files.map((f, i) => (
              // biome-ignore lint/suspicious/noArrayIndexKey: rows have no identity but their place
              <div key={i} className="template-file">
                <label htmlFor={`template-file-${i}-path`}>File {i + 1} path</label>
                <input
                  id={`template-file-${i}-path`}
                  className="mono"
                  value={f.path}
                  onChange={(e) => setFile(i, { path: e.target.value })}
                  placeholder="/etc/app.conf"
                  spellCheck={false}
                  required
                />
                <label htmlFor={`template-file-${i}-content`}>File {i + 1} content</label>
                <textarea
                  id={`template-file-${i}-content`}
                  className="mono"
                  rows={3}
                  value={f.content}
                  onChange={(e) => setFile(i, { content: e.target.value })}
                  spellCheck={false}
                />
                <button
                  type="button"
                  className="danger"
                  onClick={() =>
                    set(
                      'files',
                      form.files.filter((_, j) => j !== i),
                    )
                  }
                  aria-label={`Remove file ${i + 1}`}
                >
                  Remove
                </button>
              </div>
            ))}
            <button type="button" onClick={() => set('files', [...form.files, { path: '', content: '' }])}>
              Add file
            </button>
          </fieldset>

          <label htmlFor="template-run">Build commands</label>
          <textarea
            id="template-run"
            className="mono"
            rows={3}
            value={form.run}
            onChange={(e) => set('run', e.target.value)}
            placeholder={'git clone https://github.com/example/app /opt/app\nmake -C /opt/app'}
            spellCheck={false}
            aria-describedby="template-run-hint"
          />
          <p id="template-run-hint" className="muted small template-hint">
            One shell line each, run as root after the packages and files; a failing line fails the build.
          </p>
        </>
      ) : (
        <>
          <label htmlFor="template-dockerfile">Dockerfile</label>
          <textarea
            id="template-dockerfile"
            className="mono"
            rows={8}
            value={form.dockerfile}
            onChange={(e) => set('dockerfile', e.target.value)}
            spellCheck={false}
            required
            aria-describedby="template-dockerfile-hint"
          />
          <p id="template-dockerfile-hint" className="muted small template-hint">
            FROM a template (<code>FROM default</code>), then RUN, ENV, ARG, WORKDIR, USER (root or studio),
            CMD (the start command) and HEALTHCHECK CMD (the ready check). No COPY or ADD: use a recipe&apos;s
            files.
          </p>
        </>
      )}

      <label htmlFor="template-env">Environment</label>
      <textarea
        id="template-env"
        className="mono"
        rows={2}
        value={form.env}
        onChange={(e) => set('env', e.target.value)}
        placeholder="NODE_ENV=development"
        spellCheck={false}
        aria-describedby="template-env-hint"
      />
      <p id="template-env-hint" className="muted small template-hint">
        NAME=value, one a line: every command and terminal of its sessions gets them.
      </p>
      <label htmlFor="template-workdir">Working directory</label>
      <input
        id="template-workdir"
        className="mono"
        value={form.workdir}
        onChange={(e) => set('workdir', e.target.value)}
        placeholder="app (in /workspace)"
        spellCheck={false}
      />
      <label htmlFor="template-start">Start command</label>
      <input
        id="template-start"
        className="mono"
        value={form.start}
        onChange={(e) => set('start', e.target.value)}
        placeholder="npm run dev"
        spellCheck={false}
        aria-describedby="template-start-hint"
      />
      <label htmlFor="template-ready">Ready check</label>
      <input
        id="template-ready"
        className="mono"
        value={form.ready}
        onChange={(e) => set('ready', e.target.value)}
        placeholder="curl -sf http://127.0.0.1:3000/"
        spellCheck={false}
        aria-describedby="template-start-hint"
      />
      <p id="template-start-hint" className="muted small template-hint">
        The start command runs when a session starts and is left running; creating a session waits until the
        ready check exits 0.
      </p>

      {error && <ErrorBox error={error} />}
      <div className="template-actions">
        <button type="submit" className="primary" disabled={create.isPending}>
          {create.isPending ? 'Creating…' : 'Create template'}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function PackageInput(props: {
  id: string;
  label: string;
  value: string;
  placeholder: string;
  onChange: (value: string) => void;
}) {
  return (
    <>
      <label htmlFor={props.id}>{props.label}</label>
      <input
        id={props.id}
        className="mono"
        value={props.value}
        onChange={(e) => props.onChange(e.target.value)}
        placeholder={props.placeholder}
        title="Separated by spaces or commas"
        spellCheck={false}
      />
    </>
  );
}
