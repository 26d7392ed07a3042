import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { hash, verify } from '@node-rs/argon2';
import { type ApiTokenRecord, isStoreError, type Role, type Store, type UserRecord } from '@studio/db';
import {
  createRateLimiter,
  DEFAULT_LOGIN_LIMIT,
  isPolicyError,
  MAX_TOKEN_LENGTH,
  MAX_TOKEN_LIFETIME_MS,
  PolicyError,
  type RateLimiter,
  rateLimitedError,
  rateLimitKey,
  type SessionToken,
  signSessionToken,
  verifySessionToken,
} from '@studio/policy';
import { AppError } from '../core/errors.ts';
import { API_TOKEN_PREFIX, hashApiToken, newId } from '../core/ids.ts';

/** Who is calling: resolved from a login JWT (cookie or bearer) or an API token. */
export interface Principal {
  userId: string;
  username: string;
  role: Role;
  via: 'login' | 'api-token';
  /** The login's id (the JWT's `sid`), for logout. */
  loginId?: string;
  /** The API token's id. */
  tokenId?: string;
  /** The API token was made for an AI agent (`tokens.create({ agent: true })`). */
  agent?: boolean;
  /**
   * The user's password was chosen by someone else (generated for the first admin, or reset by an admin). A
   * sign-in with this set may only use {@link PASSWORD_CHANGE_ALLOWS}; API tokens are not held back by it.
   */
  mustChangePassword?: boolean;
}

/**
 * What a sign-in whose password must change may still call. API tokens of such a user keep working: they are not
 * the password someone else knows, the user made them while signed in with their own, and an administrator who
 * fears them disables the user (which revokes them).
 */
export const PASSWORD_CHANGE_ALLOWS: ReadonlySet<string> = new Set([
  'auth.me',
  'auth.changePassword',
  'auth.logout',
]);

/**
 * Throws PASSWORD_CHANGE_REQUIRED for a sign-in that must change its password first (callers skip it for
 * {@link PASSWORD_CHANGE_ALLOWS}); API tokens pass.
 */
export function assertPasswordSettled(principal: Principal): void {
  if (principal.via === 'login' && principal.mustChangePassword === true) {
    throw new AppError(
      'PASSWORD_CHANGE_REQUIRED',
      'your password was set by someone else; change it first (Account in the IDE, or auth.changePassword)',
    );
  }
}

/** How long a socket token ({@link Auth.socketToken}) stays valid for opening a socket. */
export const SOCKET_TOKEN_MS = 60_000;

/** Argon2id with the library defaults (m=19 MiB, t=2, p=1: OWASP's minimum recommendation). */
export function hashPassword(password: string): Promise<string> {
  return hash(password);
}

let dummyHash: Promise<string> | undefined;

/** Verifies a password against a stored hash; runs a real verification even without a user (no timing oracle). */
export async function verifyPassword(stored: string | undefined, password: string): Promise<boolean> {
  dummyHash ??= hash(randomBytes(16).toString('hex'));
  const target = stored ?? (await dummyHash);
  const ok = await verify(target, password).catch(() => false);
  return stored !== undefined && ok;
}

/**
 * The JWT signing key: STUDIO_JWT_SECRET when set, else a random secret generated on first start and kept in
 * `<dataDir>/jwt-secret` (mode 0600), so logins survive restarts.
 */
export function loadJwtKey(options: { secret?: string | undefined; dataDir: string }): Uint8Array {
  if (options.secret !== undefined) return new TextEncoder().encode(options.secret);
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const file = join(options.dataDir, 'jwt-secret');
  try {
    const fd = openSync(file, 'wx', 0o600);
    try {
      writeSync(fd, randomBytes(48).toString('base64url'));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  const text = readFileSync(file, 'utf8').trim();
  if (text.length < 32) {
    throw new Error(`${file} holds a secret shorter than 32 characters; delete it to generate a new one`);
  }
  return new TextEncoder().encode(text);
}

/** Options for {@link Auth}. */
export interface AuthOptions {
  store: Store;
  key: Uint8Array;
  /** Login attempts per username and client address; default the policy's 10 a minute. */
  loginLimiter?: RateLimiter;
  /**
   * Login attempts per client address over all usernames; default 60 a minute. Each attempt costs an argon2
   * verification, so spraying usernames from one address must not buy unbounded CPU.
   */
  addressLimiter?: RateLimiter;
  /** JWT lifetime; default and maximum 4 h. */
  tokenLifetimeMs?: number;
  /**
   * How long a resolved principal is reused for the same credential; default {@link PRINCIPAL_CACHE_MS}, 0 turns
   * the cache off. This process forgets an entry at once on logout, token revoke and user disable; another API
   * instance's change reaches this one within this time.
   */
  principalCacheMs?: number;
}

/**
 * Default lifetime of a cached principal. Reading the sign-in and its user costs a store round trip on every
 * request; a few seconds of reuse removes it from bursts of calls while bounding how long a change made on another
 * instance takes to apply here.
 */
export const PRINCIPAL_CACHE_MS = 5_000;

interface CachedPrincipal {
  principal: Principal;
  untilMs: number;
}

/** Sign-in, token verification and API tokens. */
export class Auth {
  readonly #store: Store;
  readonly #key: Uint8Array;
  readonly #limiter: RateLimiter;
  readonly #addressLimiter: RateLimiter;
  readonly lifetimeMs: number;
  readonly #cacheMs: number;
  // Principals by their exact credential text (bounded; a sweep drops expired entries when it is full).
  readonly #principals = new Map<string, CachedPrincipal>();

  constructor(options: AuthOptions) {
    this.#store = options.store;
    this.#key = options.key;
    this.#limiter = options.loginLimiter ?? createRateLimiter(DEFAULT_LOGIN_LIMIT);
    this.#addressLimiter = options.addressLimiter ?? createRateLimiter({ limit: 60, windowMs: 60_000 });
    this.lifetimeMs = Math.min(options.tokenLifetimeMs ?? MAX_TOKEN_LIFETIME_MS, MAX_TOKEN_LIFETIME_MS);
    this.#cacheMs = Math.max(0, options.principalCacheMs ?? PRINCIPAL_CACHE_MS);
  }

  /**
   * Checks a username and password (rate-limited per username and client address before any hashing) and
   * records a login. Unknown user, wrong password and disabled account all give INVALID_CREDENTIALS.
   */
  async login(
    username: string,
    password: string,
    ip: string,
  ): Promise<{ token: string; expiresAt: Date; user: UserRecord }> {
    const key = this.#takeAttempt(username, ip);
    const user = await this.#store.getUserByUsername(username);
    const ok = await verifyPassword(user?.passwordHash, password);
    if (!user || !ok || user.disabledAt !== null) {
      throw new AppError('INVALID_CREDENTIALS', 'wrong username or password');
    }
    this.#limiter.reset(key);
    const loginId = newId('ses_');
    const now = new Date();
    const expiresAt = new Date(now.getTime() + this.lifetimeMs);
    await this.#store.createLogin({ id: loginId, userId: user.id, expiresAt });
    const token = await signSessionToken(
      { userId: user.id, sessionId: loginId, projectPath: '' },
      this.#key,
      { lifetimeMs: this.lifetimeMs, now },
    );
    return { token, expiresAt, user };
  }

  /** Counts a password guess against the login limits (per username and address, and per address); its key. */
  #takeAttempt(username: string, ip: string): string {
    const key = rateLimitKey('login', username, ip);
    const verdict = this.#limiter.take(key);
    if (!verdict.allowed) throw rateLimitedError(verdict, 'login attempts');
    const perAddress = this.#addressLimiter.take(rateLimitKey('login-address', ip));
    if (!perAddress.allowed) throw rateLimitedError(perAddress, 'login attempts from this address');
    return key;
  }

  /**
   * Changes the signed-in user's password. The current one is checked under the same limits as a login (a
   * stolen sign-in cannot guess it faster than the login form allows); the new one must differ from it. Every
   * other sign-in of the user is revoked, this one stays, API tokens are untouched, and the must-change flag is
   * cleared. Refused for API tokens (INVALID_STATE): a password belongs to a person's sign-in.
   */
  async changePassword(
    principal: Principal,
    currentPassword: string,
    newPassword: string,
    ip: string,
  ): Promise<UserRecord> {
    if (principal.via !== 'login' || principal.loginId === undefined) {
      throw new AppError(
        'INVALID_STATE',
        'an API token cannot change a password; sign in with the password (the IDE, or auth.login) and change it there',
      );
    }
    const key = this.#takeAttempt(principal.username, ip);
    const user = await this.#store.getUser(principal.userId);
    if (!user || !(await verifyPassword(user.passwordHash, currentPassword))) {
      throw new AppError(
        'INVALID_CREDENTIALS',
        'the current password is wrong; type the one you signed in with',
      );
    }
    this.#limiter.reset(key);
    if (await verifyPassword(user.passwordHash, newPassword)) {
      throw new AppError('INPUT_INVALID', 'the new password is the current one; choose a different password');
    }
    const updated = await this.#store.setPassword(user.id, {
      passwordHash: await hashPassword(newPassword),
      mustChangePassword: false,
      keepLoginId: principal.loginId,
    });
    if (!updated) throw new AppError('UNAUTHENTICATED', 'this account no longer exists; sign in again');
    this.forgetUser(user.id);
    return updated;
  }

  /**
   * A short-lived JWT ({@link SOCKET_TOKEN_MS}) for the same sign-in, for the first message of a WebSocket: a
   * browser's login cookie is httpOnly, so its page cannot read it. Revoking the sign-in revokes this too.
   */
  async socketToken(principal: Principal): Promise<{ token: string; expiresAt: Date }> {
    if (principal.via !== 'login' || principal.loginId === undefined) {
      throw new AppError(
        'INVALID_STATE',
        'socket tokens are for signed-in browsers; send your API token instead',
      );
    }
    const now = new Date();
    const token = await signSessionToken(
      { userId: principal.userId, sessionId: principal.loginId, projectPath: '' },
      this.#key,
      { lifetimeMs: SOCKET_TOKEN_MS, now },
    );
    return { token, expiresAt: new Date(now.getTime() + SOCKET_TOKEN_MS) };
  }

  /**
   * Checks that a principal resolved earlier from `raw` still holds, for sockets that authenticate once and
   * stay open: the sign-in is not revoked or past its expiry (checked on the login, not on the short socket
   * token that opened the socket), the API token is not revoked or expired, the user is not disabled. Throws
   * TOKEN_EXPIRED, TOKEN_REVOKED or UNAUTHENTICATED.
   */
  async recheck(principal: Principal, raw: string): Promise<void> {
    if (principal.via === 'api-token') {
      await this.authenticate(raw);
      return;
    }
    const found =
      principal.loginId === undefined ? undefined : await this.#store.getLoginWithUser(principal.loginId);
    if (!found) throw new AppError('UNAUTHENTICATED', 'this sign-in is unknown to the server; sign in again');
    if (found.login.revokedAt !== null) throw new AppError('TOKEN_REVOKED', 'you signed out; sign in again');
    if (found.login.expiresAt.getTime() <= Date.now()) {
      throw new PolicyError('TOKEN_EXPIRED', 'your sign-in has expired; sign in again');
    }
    activeUser(found.user);
  }

  /**
   * Resolves a bearer value (login JWT or API token) to a principal, or throws UNAUTHORIZED-class errors. A
   * principal resolved in the last few seconds is reused (never past its credential's own expiry); failures are
   * never cached.
   */
  async authenticate(raw: string): Promise<Principal> {
    if (raw.length === 0 || raw.length > MAX_TOKEN_LENGTH) {
      throw new AppError('UNAUTHENTICATED', 'the credential is empty or too long; sign in again');
    }
    const now = Date.now();
    const hit = this.#principals.get(raw);
    if (hit && hit.untilMs > now) return hit.principal;
    const { principal, expiresAtMs } = raw.startsWith(API_TOKEN_PREFIX)
      ? await this.#fromApiToken(raw)
      : await this.#fromLogin(raw);
    if (this.#cacheMs > 0) this.#remember(raw, principal, Math.min(now + this.#cacheMs, expiresAtMs));
    return principal;
  }

  #remember(raw: string, principal: Principal, untilMs: number): void {
    if (this.#principals.size >= 10_000) {
      const now = Date.now();
      for (const [key, entry] of this.#principals) if (entry.untilMs <= now) this.#principals.delete(key);
      if (this.#principals.size >= 10_000) this.#principals.clear();
    }
    this.#principals.set(raw, { principal, untilMs });
  }

  /** Forgets cached principals matching `match`: called when a sign-in, token or user stops being valid. */
  #forget(match: (principal: Principal) => boolean): void {
    for (const [key, entry] of this.#principals) if (match(entry.principal)) this.#principals.delete(key);
  }

  /** An API token was revoked: requests with it fail from now on in this process. */
  forgetApiToken(tokenId: string): void {
    this.#forget((p) => p.tokenId === tokenId);
  }

  /** A user was disabled (or changed): every cached principal of theirs is dropped. */
  forgetUser(userId: string): void {
    this.#forget((p) => p.userId === userId);
  }

  async #fromLogin(raw: string): Promise<{ principal: Principal; expiresAtMs: number }> {
    const claims = await this.#verify(raw);
    const found = await this.#store.getLoginWithUser(claims.sessionId);
    if (!found || found.login.userId !== claims.userId) {
      throw new AppError('UNAUTHENTICATED', 'this sign-in is unknown to the server; sign in again');
    }
    if (found.login.revokedAt !== null) throw new AppError('TOKEN_REVOKED', 'you signed out; sign in again');
    // A socket token outlives nothing: its sign-in's own expiry still holds.
    if (found.login.expiresAt.getTime() <= Date.now()) {
      throw new PolicyError('TOKEN_EXPIRED', 'your sign-in has expired; sign in again');
    }
    const user = activeUser(found.user);
    const principal: Principal = {
      userId: user.id,
      username: user.username,
      role: user.role,
      via: 'login',
      loginId: found.login.id,
      ...(user.mustChangePassword ? { mustChangePassword: true } : {}),
    };
    return { principal, expiresAtMs: Math.min(found.login.expiresAt.getTime(), claims.exp * 1000) };
  }

  // Verified JWTs by their exact text, until min(exp, 60 s from now): an identical string verifies identically,
  // so this only skips repeating the HMAC. Revocation and the user's state are still read on every request.
  readonly #verified = new Map<string, { claims: SessionToken; untilMs: number }>();

  async #verify(raw: string): Promise<SessionToken> {
    const now = Date.now();
    const hit = this.#verified.get(raw);
    if (hit && hit.untilMs > now) return hit.claims;
    const claims = await verifySessionToken(raw, this.#key);
    if (this.#verified.size >= 10_000) this.#verified.clear();
    this.#verified.set(raw, { claims, untilMs: Math.min(claims.exp * 1000, now + 60_000) });
    return claims;
  }

  /**
   * The principal of API token `tokenId` of `userId`, checked as a bearer of it would be (revoked, expired, the
   * account disabled: refused), without its secret: what a credential issued on the token's behalf acts as (an
   * E2B sandbox's envd access token, issue 21). Cached like {@link authenticate}.
   */
  async apiTokenPrincipal(userId: string, tokenId: string): Promise<Principal> {
    // NUL never appears in a credential: these keys cannot collide with one.
    const key = `\0token-id:${userId}:${tokenId}`;
    const now = Date.now();
    const hit = this.#principals.get(key);
    if (hit && hit.untilMs > now) return hit.principal;
    const token = (await this.#store.listApiTokens(userId)).find((t) => t.id === tokenId);
    const user = await this.#store.getUser(userId);
    if (!token || !user)
      throw new AppError('UNAUTHENTICATED', 'the API token behind this credential is gone');
    const { principal, expiresAtMs } = this.#tokenPrincipal(token, user);
    if (this.#cacheMs > 0) this.#remember(key, principal, Math.min(now + this.#cacheMs, expiresAtMs));
    return principal;
  }

  async #fromApiToken(raw: string): Promise<{ principal: Principal; expiresAtMs: number }> {
    const found = await this.#store.findApiTokenWithUser(hashApiToken(raw));
    if (!found) throw new AppError('UNAUTHENTICATED', 'unknown API token; create one with tokens.create');
    return this.#tokenPrincipal(found.token, found.user);
  }

  #tokenPrincipal(
    token: ApiTokenRecord,
    foundUser: UserRecord,
  ): { principal: Principal; expiresAtMs: number } {
    if (token.revokedAt !== null) throw new AppError('TOKEN_REVOKED', 'this API token was revoked');
    if (token.expiresAt !== null && token.expiresAt.getTime() <= Date.now()) {
      throw new AppError('TOKEN_REVOKED', 'this API token has expired; create a new one');
    }
    const user = activeUser(foundUser);
    this.#touchToken(token.id);
    const principal: Principal = {
      userId: user.id,
      username: user.username,
      role: user.role,
      via: 'api-token',
      tokenId: token.id,
      ...(token.agent ? { agent: true } : {}),
      ...(user.mustChangePassword ? { mustChangePassword: true } : {}),
    };
    return { principal, expiresAtMs: token.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY };
  }

  readonly #lastTokenTouch = new Map<string, number>();
  #touchToken(id: string): void {
    const now = Date.now();
    if (now - (this.#lastTokenTouch.get(id) ?? 0) < 60_000) return;
    if (this.#lastTokenTouch.size > 10_000) this.#lastTokenTouch.clear();
    this.#lastTokenTouch.set(id, now);
    void this.#store.touchApiToken(id).catch(() => undefined);
  }

  async logout(principal: Principal): Promise<void> {
    if (!principal.loginId) return;
    const loginId = principal.loginId;
    await this.#store.revokeLogin(loginId);
    this.#forget((p) => p.loginId === loginId);
  }
}

function activeUser(user: UserRecord): UserRecord {
  if (user.disabledAt !== null) {
    throw new AppError('UNAUTHENTICATED', 'this account is disabled; ask an administrator');
  }
  return user;
}

/** True for errors that mean "the credential is not good" (as opposed to a server failure). */
export function isCredentialError(error: unknown): boolean {
  if (isPolicyError(error)) return error.code.startsWith('TOKEN_');
  return (
    error instanceof AppError &&
    (error.code === 'UNAUTHENTICATED' ||
      error.code === 'TOKEN_REVOKED' ||
      error.code === 'INVALID_CREDENTIALS')
  );
}

/**
 * Creates the first administrator when the store has no users: username `admin`, with `password` when given,
 * else a generated one returned so the caller can print it once. A generated password has been in a log, so the
 * admin must change it at the first sign-in; one the operator chose (STUDIO_ADMIN_PASSWORD) is theirs already.
 */
export async function ensureAdmin(
  store: Store,
  password: string | undefined,
): Promise<{ created: false } | { created: true; username: string; password: string; generated: boolean }> {
  if ((await store.countUsers()) > 0) return { created: false };
  const generated = password === undefined;
  const chosen = password ?? randomBytes(18).toString('base64url');
  try {
    await store.createUser({
      id: newId('usr_'),
      username: 'admin',
      passwordHash: await hashPassword(chosen),
      role: 'admin',
      mustChangePassword: generated,
    });
  } catch (error) {
    // Another instance created it at the same moment.
    if (isStoreError(error, 'CONFLICT')) return { created: false };
    throw error;
  }
  return { created: true, username: 'admin', password: chosen, generated };
}
