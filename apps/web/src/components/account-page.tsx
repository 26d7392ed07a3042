'use client';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import {
  type ApiToken,
  expiryLabel,
  lastUsedLabel,
  MAX_TOKEN_DAYS,
  parseExpiryDays,
  tokenStatus,
} from '../lib/accounts';
import { formatAge } from '../lib/file-types';
import { errorParts, useTRPC, useTRPCClient } from '../lib/trpc';
import { ConfirmAction, ListBody, ListHead, useRowActions } from './list-parts';
import { ChangePasswordForm } from './password-form';
import { ErrorBox, type Failure } from './templates/template-parts';
import { TopBar } from './top-bar';

/**
 * The signed-in person's account (issue 22): who they are, change the password, and their API tokens: create
 * one (name, expiry, made for an agent), shown once with a copy button; the list (never a secret); revoke.
 */
export function AccountPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const me = useQuery(trpc.auth.me.queryOptions());
  const tokens = useQuery(trpc.tokens.list.queryOptions());
  // Each section's own outcome, shown in that section (beside what it is about).
  const [passwordNotice, setPasswordNotice] = useState<string | null>(null);
  const [tokenNotice, setTokenNotice] = useState<string | null>(null);
  const refresh = () => queryClient.invalidateQueries(trpc.tokens.list.queryFilter());

  return (
    <div className="page">
      <TopBar />
      <main className="dashboard" aria-labelledby="account-title">
        <section className="card" aria-labelledby="account-title">
          <h1 id="account-title">Your account</h1>
          {me.data && (
            <p>
              Signed in as <strong className="mono">{me.data.username}</strong>
              {me.data.role === 'admin' ? ' (administrator)' : ''}.
            </p>
          )}
          <h2 id="password-title">Change your password</h2>
          <ChangePasswordForm
            onChanged={() => setPasswordNotice('Password changed. Your other sign-ins have been signed out.')}
          />
          {passwordNotice && (
            <p className="muted" role="status">
              {passwordNotice}
            </p>
          )}
        </section>

        <section className="card" aria-labelledby="tokens-title">
          <ListHead
            id="tokens-title"
            title="API tokens"
            level={2}
            onRefresh={() => void tokens.refetch()}
            refreshLabel="Refresh API tokens"
          />
          <p className="muted small account-intro">
            An API token lets a program or an AI agent act as you: send it as{' '}
            <code>Authorization: Bearer …</code> (the <code>@studio/client</code> package and the MCP server
            take it as <code>token</code>). It can do what you can, except change your password. Mark tokens
            made for agents, so what they do is shown as an agent&apos;s. Revoke a token you no longer use.
          </p>
          <CreateTokenForm onCreated={() => void refresh()} />
          {tokenNotice && (
            <p className="muted" role="status">
              {tokenNotice}
            </p>
          )}
          <ListBody
            query={tokens}
            items={tokens.data}
            loading="Loading API tokens…"
            empty="No API tokens yet."
          >
            {(list) => <TokensTable tokens={list} onChanged={refresh} onNotice={setTokenNotice} />}
          </ListBody>
        </section>
      </main>
    </div>
  );
}

/**
 * Name, expiry in days, the agent flag. The secret is answered once: shown in a box with a copy button until
 * dismissed, and kept in this component's state only (the call goes through the client, so no cache holds it).
 */
function CreateTokenForm({ onCreated }: { onCreated: () => void }) {
  const client = useTRPCClient();
  const [name, setName] = useState('');
  const [days, setDays] = useState('90');
  const [agent, setAgent] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Failure | null>(null);
  const [created, setCreated] = useState<{ name: string; token: string } | null>(null);
  const [copied, setCopied] = useState<'yes' | 'failed' | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const expiry = parseExpiryDays(days);
    if ('problem' in expiry) {
      setError({ message: expiry.problem, detail: null });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const made = await client.tokens.create.mutate({
        name: name.trim(),
        ...(expiry.days === undefined ? {} : { expiresInDays: expiry.days }),
        ...(agent ? { agent: true } : {}),
      });
      setCreated({ name: made.name, token: made.token });
      setCopied(null);
      setName('');
      setAgent(false);
      onCreated();
    } catch (e) {
      setError(errorParts(e));
    } finally {
      setBusy(false);
    }
  }

  async function copy(token: string) {
    try {
      await navigator.clipboard.writeText(token);
      setCopied('yes');
    } catch {
      setCopied('failed');
    }
  }

  return (
    <>
      <form className="account-form" onSubmit={(e) => void submit(e)} aria-label="Create an API token">
        <label htmlFor="token-name">Name</label>
        <input
          id="token-name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="ci, laptop, claude-code"
          autoComplete="off"
          required
          maxLength={64}
        />
        <label htmlFor="token-days">Expires after (days)</label>
        <input
          id="token-days"
          inputMode="numeric"
          value={days}
          onChange={(e) => setDays(e.target.value)}
          aria-describedby="token-days-hint"
        />
        <p id="token-days-hint" className="muted small account-hint">
          1 to {MAX_TOKEN_DAYS}; empty for a token that never expires.
        </p>
        <label className="account-check">
          <input type="checkbox" checked={agent} onChange={(e) => setAgent(e.target.checked)} /> For an AI
          agent
        </label>
        {error && <ErrorBox error={error} />}
        <div className="account-actions">
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create token'}
          </button>
        </div>
      </form>
      {created && (
        <section className="card new-token" aria-label="New API token">
          <p>
            <strong>Copy the token {created.name} now.</strong> It is shown only this once: Studio keeps only
            a hash of it. Anyone holding it can act as you; store it like a password.
          </p>
          <p className="new-token-row">
            <code className="mono new-token-value" data-testid="new-token">
              {created.token}
            </code>
            <button type="button" onClick={() => void copy(created.token)}>
              Copy
            </button>
            {copied === 'yes' && (
              <span className="muted small" role="status">
                Copied.
              </span>
            )}
            {copied === 'failed' && (
              <span className="error small" role="status">
                This browser did not allow copying: select the token and copy it.
              </span>
            )}
          </p>
          <button type="button" onClick={() => setCreated(null)}>
            I have stored it
          </button>
        </section>
      )}
    </>
  );
}

function TokensTable({
  tokens,
  onChanged,
  onNotice,
}: {
  tokens: ApiToken[];
  onChanged: () => Promise<unknown>;
  onNotice: (notice: string) => void;
}) {
  const client = useTRPCClient();
  const { busy, error, act } = useRowActions();

  const revoke = (token: ApiToken) =>
    act(token.id, async () => {
      await client.tokens.revoke.mutate({ id: token.id });
      onNotice(`Revoked ${token.name}. Programs using it are refused from now on.`);
      await onChanged();
    });

  return (
    <>
      {error && <ErrorBox error={error} />}
      <table className="accounts">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Created</th>
            <th scope="col">Last used</th>
            <th scope="col">Expires</th>
            <th scope="col">Status</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {tokens.map((t) => {
            const status = tokenStatus(t);
            return (
              <tr key={t.id}>
                <td>
                  {t.name}
                  {t.agent && <span className="chip actor-agent">agent</span>}
                </td>
                <td>
                  <time dateTime={t.createdAt} title={new Date(t.createdAt).toLocaleString()}>
                    {formatAge(t.createdAt)} ago
                  </time>
                </td>
                <td>{lastUsedLabel(t.lastUsedAt)}</td>
                <td>{expiryLabel(t.expiresAt)}</td>
                <td className={status === 'active' ? 'state-running' : 'muted'}>{status}</td>
                <td className="actions">
                  {status !== 'revoked' && (
                    <ConfirmAction
                      label="Revoke"
                      ariaLabel={`Revoke API token ${t.name}`}
                      question={`Revoke ${t.name}?`}
                      confirmLabel="Yes, revoke"
                      runningLabel="Revoking…"
                      running={busy === t.id}
                      disabled={busy !== null}
                      onConfirm={() => void revoke(t)}
                    />
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </>
  );
}
