'use client';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import Link from 'next/link';
import { type FormEvent, useState } from 'react';
import { formatAge } from '../lib/file-types';
import { parseAllowList } from '../lib/network';
import { DEFAULT_SECRET_HEADER, type Secret } from '../lib/secrets';
import { errorParts, studioCode, useTRPC, useTRPCClient } from '../lib/trpc';
import { ConfirmAction, ListBody, ListHead, useRowActions } from './list-parts';
import { ErrorBox, type Failure } from './templates/template-parts';
import { TopBar } from './top-bar';

const HOST_MESSAGE =
  'A host is not valid: use a name (api.example.com) or a wildcard below a domain (*.example.com), with :port when it is not 443. Addresses are refused.';

/** A refusal for this page: the policy's HOST_INVALID message speaks of allowlists, a secret's hosts are names. */
function failure(error: unknown): Failure {
  const parts = errorParts(error);
  return studioCode(error) === 'HOST_INVALID' ? { ...parts, message: HOST_MESSAGE } : parts;
}

/**
 * The caller's secrets (issue 18): list (name, hosts, header, updated; never a value), add, rotate, delete.
 * Values go to the API through the client directly, not a mutation hook, so no query cache keeps them after the
 * call; the fields holding them are cleared once the API has them, and nothing on the page shows them again.
 */
export function SecretsPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const secrets = useQuery(trpc.secrets.list.queryOptions());
  const [notice, setNotice] = useState<string | null>(null);
  const refresh = () => queryClient.invalidateQueries(trpc.secrets.list.queryFilter());

  return (
    <div className="page">
      <TopBar />
      <main className="dashboard" aria-labelledby="secrets-title">
        <section className="card" aria-labelledby="add-secret-title">
          <h2 id="add-secret-title">Add a secret</h2>
          <p className="muted small secrets-intro">
            A secret is a value your sessions use without holding it. A session given one sees a placeholder
            in the environment variable of the same name (<code>$OPENAI_API_KEY</code>); when a program sends
            it in an HTTPS request to one of the secret&apos;s hosts, Studio&apos;s egress proxy puts the
            value in its place, and adds the header below when the program sent none. Other hosts get the
            placeholder. The session&apos;s network must allow those hosts. A value is never shown again, to
            you, the session or an agent: rotate it to change it.
          </p>
          <AddSecretForm
            onSaved={(name) => {
              setNotice(`Saved ${name}. Its value is not shown again.`);
              void refresh();
            }}
          />
        </section>

        {notice && (
          <p className="muted" role="status">
            {notice}
          </p>
        )}

        <section aria-labelledby="secrets-title">
          <ListHead
            id="secrets-title"
            title="Your secrets"
            onRefresh={() => void secrets.refetch()}
            refreshLabel="Refresh secrets"
          />
          <ListBody
            query={secrets}
            items={secrets.data}
            loading="Loading secrets…"
            failure={failure}
            empty={
              <>
                No secrets yet. Add one above, then give it to a session when you create it on the{' '}
                <Link href="/">Sessions</Link> page.
              </>
            }
          >
            {(list) => <SecretsTable secrets={list} onChanged={refresh} onNotice={setNotice} />}
          </ListBody>
        </section>
      </main>
    </div>
  );
}

/** The add form: name, value (a password field), hosts (one per line), header template. */
function AddSecretForm({ onSaved }: { onSaved: (name: string) => void }) {
  const client = useTRPCClient();
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [hosts, setHosts] = useState('');
  const [header, setHeader] = useState(DEFAULT_SECRET_HEADER);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Failure | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const saved = await client.secrets.create.mutate({
        name: name.trim(),
        value,
        hosts: parseAllowList(hosts),
        header: header.trim(),
      });
      setName('');
      setValue('');
      setHosts('');
      setHeader(DEFAULT_SECRET_HEADER);
      onSaved(saved.name);
    } catch (e) {
      setError(failure(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="secrets-form" onSubmit={(e) => void submit(e)}>
      <label htmlFor="secret-name">Name</label>
      <input
        id="secret-name"
        className="mono"
        value={name}
        onChange={(e) => setName(e.target.value)}
        placeholder="OPENAI_API_KEY"
        autoComplete="off"
        spellCheck={false}
        required
        maxLength={64}
      />
      <label htmlFor="secret-value">Value</label>
      <input
        id="secret-value"
        type="password"
        value={value}
        onChange={(e) => setValue(e.target.value)}
        autoComplete="off"
        spellCheck={false}
        required
        aria-describedby="secret-value-hint"
      />
      <p id="secret-value-hint" className="muted small secrets-hint">
        Stored sealed; never shown again.
      </p>
      <label htmlFor="secret-hosts">Hosts</label>
      <textarea
        id="secret-hosts"
        rows={3}
        value={hosts}
        onChange={(e) => setHosts(e.target.value)}
        placeholder={'api.openai.com\n*.example.com'}
        spellCheck={false}
        required
        aria-describedby="secret-hosts-hint"
      />
      <p id="secret-hosts-hint" className="muted small secrets-hint">
        Where the value may go, one per line: <code>api.example.com</code>, <code>*.example.com</code> (names
        below it), with <code>:port</code> when it is not 443. Names only, never addresses.
      </p>
      <label htmlFor="secret-header">Header</label>
      <input
        id="secret-header"
        className="mono"
        value={header}
        onChange={(e) => setHeader(e.target.value)}
        spellCheck={false}
        required
        aria-describedby="secret-header-hint"
      />
      <p id="secret-header-hint" className="muted small secrets-hint">
        The header the proxy adds when a request to those hosts has none of that name;{' '}
        <code>{'{{value}}'}</code> is where the value goes (e.g. <code>{'X-Api-Key: {{value}}'}</code>).
      </p>
      {error && <ErrorBox error={error} />}
      <div className="secrets-actions">
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Saving…' : 'Add secret'}
        </button>
      </div>
    </form>
  );
}

function SecretsTable({
  secrets,
  onChanged,
  onNotice,
}: {
  secrets: Secret[];
  onChanged: () => Promise<unknown>;
  onNotice: (notice: string) => void;
}) {
  const client = useTRPCClient();
  const [rotating, setRotating] = useState<string | null>(null);
  const [newValue, setNewValue] = useState('');
  const actions = useRowActions(failure);
  const { busy, error } = actions;

  const act = (label: string, fn: () => Promise<unknown>, done: string) =>
    actions.act(label, async () => {
      await fn();
      onNotice(done);
      await onChanged();
    });

  const startRotate = (name: string) => {
    setNewValue('');
    setRotating(name);
  };
  const rotate = (event: FormEvent, name: string) => {
    event.preventDefault();
    void act(
      `rotate:${name}`,
      async () => {
        await client.secrets.rotate.mutate({ name, value: newValue });
        setNewValue('');
        setRotating(null);
      },
      `Rotated ${name}. Sessions given it use the new value from their next connection.`,
    );
  };
  const remove = (name: string) => {
    void act(
      `delete:${name}`,
      () => client.secrets.delete.mutate({ name }),
      `Deleted ${name}. Sessions given it now send its placeholder unchanged.`,
    );
  };

  return (
    <>
      {error && <ErrorBox error={error} />}
      <table className="secrets">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Hosts</th>
            <th scope="col">Header</th>
            <th scope="col">Updated</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {secrets.map((s) => (
            <tr key={s.name}>
              <td className="mono">{s.name}</td>
              <td>
                {s.hosts.map((h) => (
                  <span key={h} className="chip mono">
                    {h}
                  </span>
                ))}
              </td>
              <td className="mono small">{s.header}</td>
              <td>
                <time dateTime={s.updatedAt} title={new Date(s.updatedAt).toLocaleString()}>
                  {formatAge(s.updatedAt)} ago
                </time>
              </td>
              <td className="actions">
                {rotating === s.name ? (
                  <form className="secrets-inline" onSubmit={(e) => rotate(e, s.name)}>
                    <label htmlFor={`rotate-${s.name}`} className="small">
                      New value for {s.name}
                    </label>
                    <input
                      id={`rotate-${s.name}`}
                      type="password"
                      value={newValue}
                      onChange={(e) => setNewValue(e.target.value)}
                      autoComplete="off"
                      spellCheck={false}
                      required
                    />
                    <button type="submit" className="primary" disabled={busy !== null}>
                      {busy === `rotate:${s.name}` ? 'Saving…' : 'Save'}
                    </button>
                    <button
                      type="button"
                      onClick={() => {
                        setNewValue('');
                        setRotating(null);
                      }}
                    >
                      Cancel
                    </button>
                  </form>
                ) : (
                  <>
                    <button
                      type="button"
                      onClick={() => startRotate(s.name)}
                      disabled={busy !== null}
                      aria-label={`Rotate ${s.name}`}
                    >
                      Rotate
                    </button>
                    <ConfirmAction
                      label="Delete"
                      ariaLabel={`Delete secret ${s.name}`}
                      question={`Delete ${s.name}? Sessions given it then send its placeholder unchanged.`}
                      confirmLabel="Yes, delete"
                      runningLabel="Deleting…"
                      running={busy === `delete:${s.name}`}
                      disabled={busy !== null}
                      onConfirm={() => remove(s.name)}
                    />
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
