import { TRPCClientError } from '@trpc/client';
import { describe, expect, it } from 'vitest';
import {
  errorMessage,
  errorParts,
  humanError,
  isSignedOut,
  isTransient,
  mustChangePassword,
  studioCode,
} from './trpc.ts';

// What people see when a call fails: a message chosen by the API's stable code, the code and the server's
// message as detail, never a stack.

function apiError(studio: string, message: string): TRPCClientError<never> {
  return TRPCClientError.from({
    error: {
      code: -32600,
      message,
      data: {
        code: 'BAD_REQUEST',
        httpStatus: 400,
        studioCode: studio,
        stack: 'Error: x\n    at secret (/srv/a.ts:1:1)',
      },
    },
  }) as TRPCClientError<never>;
}

describe('error messages by studioCode', () => {
  it('a known code: the friendly message, then the code and the server message as detail', () => {
    const error = apiError('SESSION_LIMIT', 'you already have 5 live sessions');
    expect(studioCode(error)).toBe('SESSION_LIMIT');
    expect(errorMessage(error)).toBe(
      'You have reached your limit of live sessions. Destroy one (or stop it) first. you already have 5 live sessions. Code: SESSION_LIMIT',
    );
  });

  it('EGRESS_DENIED: what to do, then the code and the API message naming the host as the detail line', () => {
    const error = apiError(
      'EGRESS_DENIED',
      "example.com is not on this session's allowlist; add it with sessions.setNetwork (or ask the session's owner) (not_allowed)",
    );
    expect(errorParts(error)).toEqual({
      message:
        "The session's network settings do not allow that. Add the host to its allowlist (Network, in the session header).",
      detail: "example.com is not on this session's allowlist · Code: EGRESS_DENIED",
    });
    expect(errorMessage(error)).not.toContain('sessions.setNetwork');
    expect(errorMessage(error)).toMatch(/allowlist\. Code: EGRESS_DENIED$/);
    expect(
      errorParts(apiError('HOST_INVALID', 'allowlist entry "localhost" names a local host')).detail,
    ).toBe('allowlist entry "localhost" names a local host · Code: HOST_INVALID');
    expect(errorParts(new TypeError('fetch failed')).detail).toBeNull();
  });

  it('SECRET_INVALID: what a secret must look like, then the API naming what is wrong', () => {
    const error = apiError(
      'SECRET_INVALID',
      'name: secret name "api_key" must look like an environment variable: upper-case letters, digits and _',
    );
    expect(errorParts(error)).toEqual({
      message: expect.stringMatching(/^The secret is not valid: a name like OPENAI_API_KEY, /),
      detail:
        'name: secret name "api_key" must look like an environment variable: upper-case letters, digits and _ · Code: SECRET_INVALID',
    });
  });

  it('a pause that cannot be restored, and what a backend cannot do: what happened, then the code', () => {
    const restore = errorParts(
      apiError('RESTORE_FAILED', 'session ses_x: its saved memory could not be restored'),
    );
    expect(restore.message).toMatch(/^The paused session could not be restored: it is stopped now/);
    expect(restore.detail).toBe(
      'session ses_x: its saved memory could not be restored · Code: RESTORE_FAILED',
    );
    expect(errorParts(apiError('UNSUPPORTED', 'backend docker cannot fork sessions')).message).toMatch(
      /cannot do that: pausing, forks and snapshots/,
    );
    expect(errorParts(apiError('LIMIT_EXCEEDED', 'a fork makes at most 10 sessions here')).detail).toBe(
      'a fork makes at most 10 sessions here · Code: LIMIT_EXCEEDED',
    );
  });

  it('an unknown code: the code and the server message; never a stack', () => {
    const error = apiError('SOMETHING_NEW', 'it broke');
    expect(errorMessage(error)).toBe('it broke Code: SOMETHING_NEW');
    expect(humanError(error)).toEqual({ message: 'it broke', note: null, code: 'SOMETHING_NEW' });
    expect(errorMessage(error)).not.toMatch(/\bat |\.ts:/);
  });

  it('a transport failure is NETWORK, shown without the raw error', () => {
    const error = new TypeError('fetch failed');
    expect(studioCode(error)).toBe('NETWORK');
    expect(errorMessage(error)).toBe('Network error: the server could not be reached.');
    expect(isTransient(error)).toBe(true);
  });

  it('sign-in codes send the page to /login; refusals are not retried', () => {
    expect(isSignedOut(apiError('TOKEN_EXPIRED', 'expired'))).toBe(true);
    expect(isSignedOut(apiError('NOT_FOUND', 'gone'))).toBe(false);
    expect(isTransient(apiError('API_UNREACHABLE', 'down'))).toBe(true);
    expect(isTransient(apiError('HUMAN_HAS_CONTROL', 'no'))).toBe(false);
  });

  it('a password someone else set sends the page to the change-password screen, not to /login', () => {
    const error = apiError(
      'PASSWORD_CHANGE_REQUIRED',
      'your password was set by someone else; change it first',
    );
    expect(mustChangePassword(error)).toBe(true);
    expect(isSignedOut(error)).toBe(false);
    expect(errorParts(error)).toEqual({
      message: 'Choose a new password first: yours was set by someone else.',
      detail: 'your password was set by someone else; change it first · Code: PASSWORD_CHANGE_REQUIRED',
    });
    expect(mustChangePassword(apiError('FORBIDDEN', 'users.list is for administrators only'))).toBe(false);
  });
});

describe('messages for people carry no developer words', () => {
  it('INVALID_STATE: the human message, the readable part of the server message, the code apart', () => {
    const error = apiError('INVALID_STATE', 'session ses_x is stopped: start it with sessions.start');
    expect(humanError(error)).toEqual({
      message: 'The session is not in a state that allows this (is it running?).',
      note: 'session ses_x is stopped',
      code: 'INVALID_STATE',
    });
    expect(errorMessage(error)).not.toMatch(/\(INVALID_STATE|sessions\.start/);
  });

  it('a message that is all procedure names leaves no note', () => {
    const error = apiError('FORBIDDEN', 'only a person signed in (auth.login: the web app) can do this');
    expect(humanError(error).note).toBeNull();
    expect(errorParts(error).detail).toBe('Code: FORBIDDEN');
  });
});
