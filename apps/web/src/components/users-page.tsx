'use client';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { MIN_PASSWORD_LENGTH, type User } from '../lib/accounts';
import { formatAge } from '../lib/file-types';
import { errorParts, useTRPC, useTRPCClient } from '../lib/trpc';
import { ListBody, ListHead, useRowActions } from './list-parts';
import { ErrorBox, type Failure } from './templates/template-parts';
import { TopBar } from './top-bar';

const PASSWORD_HINT = `At least ${MIN_PASSWORD_LENGTH} characters. Give it to the person privately.`;

/**
 * Users (issue 22), for administrators: the list, create, disable and enable, reset a password (the person must
 * choose a new one at the next sign-in), make an administrator or take it back. The API refuses these to others
 * (FORBIDDEN); the page says so instead of showing an empty list.
 */
export function UsersPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const me = useQuery(trpc.auth.me.queryOptions());
  const isAdmin = me.data?.role === 'admin';
  const users = useQuery({ ...trpc.users.list.queryOptions(), enabled: isAdmin });
  const [notice, setNotice] = useState<string | null>(null);
  const refresh = () => queryClient.invalidateQueries(trpc.users.list.queryFilter());

  return (
    <div className="page">
      <TopBar />
      <main className="dashboard" aria-labelledby="users-title">
        {me.data && !isAdmin ? (
          <section className="card">
            <h1 id="users-title">Users</h1>
            <p role="alert">
              Only administrators manage users. Ask one to create an account or reset a password.
            </p>
          </section>
        ) : (
          <>
            <section className="card" aria-labelledby="create-user-title">
              <h2 id="create-user-title">Create a user</h2>
              <CreateUserForm
                onCreated={(name) => {
                  setNotice(`Created ${name}. They sign in with the password you chose.`);
                  void refresh();
                }}
              />
            </section>
            {notice && (
              <p className="muted" role="status">
                {notice}
              </p>
            )}
            <section aria-labelledby="users-title">
              <ListHead
                id="users-title"
                title="Users"
                onRefresh={() => void users.refetch()}
                refreshLabel="Refresh users"
              />
              <ListBody query={users} items={users.data} loading="Loading users…" empty="No users.">
                {(list) => (
                  <UsersTable users={list} myId={me.data?.id} onChanged={refresh} onNotice={setNotice} />
                )}
              </ListBody>
            </section>
          </>
        )}
      </main>
    </div>
  );
}

/** Username and a first password; the account is a `user` (make it an administrator from the list). */
function CreateUserForm({ onCreated }: { onCreated: (username: string) => void }) {
  const client = useTRPCClient();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Failure | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const user = await client.users.create.mutate({ username: username.trim(), password });
      setUsername('');
      setPassword('');
      onCreated(user.username);
    } catch (e) {
      setError(errorParts(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="account-form" onSubmit={(e) => void submit(e)} aria-label="Create a user">
      <label htmlFor="new-username">Username</label>
      <input
        id="new-username"
        value={username}
        onChange={(e) => setUsername(e.target.value)}
        autoComplete="off"
        spellCheck={false}
        required
        maxLength={64}
      />
      <label htmlFor="new-user-password">Password</label>
      <input
        id="new-user-password"
        type="password"
        autoComplete="new-password"
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        required
        minLength={MIN_PASSWORD_LENGTH}
        aria-describedby="new-user-password-hint"
      />
      <p id="new-user-password-hint" className="muted small account-hint">
        {PASSWORD_HINT}
      </p>
      {error && <ErrorBox error={error} />}
      <div className="account-actions">
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create user'}
        </button>
      </div>
    </form>
  );
}

function UsersTable({
  users,
  myId,
  onChanged,
  onNotice,
}: {
  users: User[];
  myId: string | undefined;
  onChanged: () => Promise<unknown>;
  onNotice: (notice: string) => void;
}) {
  const client = useTRPCClient();
  const actions = useRowActions();
  const { busy, error } = actions;
  const [resetting, setResetting] = useState<string | null>(null);
  const [password, setPassword] = useState('');

  const act = (label: string, fn: () => Promise<unknown>, done: string) =>
    actions.act(label, async () => {
      await fn();
      onNotice(done);
      await onChanged();
    });

  const reset = (event: FormEvent, user: User) => {
    event.preventDefault();
    void act(
      `reset:${user.id}`,
      async () => {
        await client.users.resetPassword.mutate({ userId: user.id, password });
        setPassword('');
        setResetting(null);
      },
      `Reset the password of ${user.username}. They are signed out, and choose a new password at their next sign-in.`,
    );
  };

  return (
    <>
      {error && <ErrorBox error={error} />}
      <table className="accounts">
        <thead>
          <tr>
            <th scope="col">Username</th>
            <th scope="col">Role</th>
            <th scope="col">Status</th>
            <th scope="col">Created</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {users.map((u) => {
            const self = u.id === myId;
            return (
              <tr key={u.id}>
                <td>
                  <span className="mono">{u.username}</span>
                  {self && <span className="muted small"> (you)</span>}
                </td>
                <td>{u.role === 'admin' ? 'administrator' : 'user'}</td>
                <td>
                  {u.disabled ? (
                    <span className="state-failed">disabled</span>
                  ) : (
                    <span className="state-running">active</span>
                  )}
                  {u.mustChangePassword && <div className="muted small">must change password</div>}
                </td>
                <td>
                  <time dateTime={u.createdAt} title={new Date(u.createdAt).toLocaleString()}>
                    {formatAge(u.createdAt)} ago
                  </time>
                </td>
                <td className="actions">
                  {self ? (
                    <span className="muted small">Change your own password on the Account page.</span>
                  ) : (
                    <>
                      {u.disabled ? (
                        <button
                          type="button"
                          onClick={() =>
                            void act(
                              `enable:${u.id}`,
                              () => client.users.enable.mutate({ userId: u.id }),
                              `Enabled ${u.username}. They can sign in again; their old API tokens stay revoked.`,
                            )
                          }
                          disabled={busy !== null}
                          aria-label={`Enable ${u.username}`}
                        >
                          Enable
                        </button>
                      ) : (
                        <button
                          type="button"
                          className="danger"
                          onClick={() =>
                            void act(
                              `disable:${u.id}`,
                              () => client.users.disable.mutate({ userId: u.id }),
                              `Disabled ${u.username}: signed out, API tokens revoked, sessions stopped.`,
                            )
                          }
                          disabled={busy !== null}
                          aria-label={`Disable ${u.username}`}
                        >
                          Disable
                        </button>
                      )}
                      <button
                        type="button"
                        onClick={() =>
                          void act(
                            `role:${u.id}`,
                            () =>
                              client.users.setRole.mutate({
                                userId: u.id,
                                role: u.role === 'admin' ? 'user' : 'admin',
                              }),
                            u.role === 'admin'
                              ? `${u.username} is no longer an administrator.`
                              : `${u.username} is now an administrator.`,
                          )
                        }
                        disabled={busy !== null}
                        aria-label={
                          u.role === 'admin'
                            ? `Make ${u.username} a user`
                            : `Make ${u.username} an administrator`
                        }
                      >
                        {u.role === 'admin' ? 'Make user' : 'Make administrator'}
                      </button>
                      {resetting === u.id ? (
                        <form className="account-inline" onSubmit={(e) => reset(e, u)}>
                          <label htmlFor={`reset-${u.id}`} className="small">
                            New password for {u.username}
                          </label>
                          <input
                            id={`reset-${u.id}`}
                            type="password"
                            autoComplete="new-password"
                            value={password}
                            onChange={(e) => setPassword(e.target.value)}
                            required
                            minLength={MIN_PASSWORD_LENGTH}
                            title={PASSWORD_HINT}
                          />
                          <button type="submit" className="primary" disabled={busy !== null}>
                            {busy === `reset:${u.id}` ? 'Resetting…' : 'Set password'}
                          </button>
                          <button type="button" onClick={() => setResetting(null)}>
                            Cancel
                          </button>
                        </form>
                      ) : (
                        <button
                          type="button"
                          onClick={() => {
                            setPassword('');
                            setResetting(u.id);
                          }}
                          disabled={busy !== null}
                          aria-label={`Reset the password of ${u.username}`}
                        >
                          Reset password
                        </button>
                      )}
                    </>
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
