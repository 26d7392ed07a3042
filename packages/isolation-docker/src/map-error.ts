import { IsolationError, isIsolationError } from '@studio/isolation';

interface DockerodeError {
  statusCode?: number;
  code?: string;
  json?: { message?: string } | null;
  reason?: string;
  message?: string;
}

/**
 * The one place where Docker's failures become `IsolationError`s. `what` names the object for the
 * message ("sandbox sbx-…", "image studio-sandbox:latest").
 */
export function mapDockerError(error: unknown, what: string): IsolationError {
  if (isIsolationError(error)) return error;
  const e = (error ?? {}) as DockerodeError;
  const detail = e.json?.message ?? e.message ?? String(error);
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT' || e.code === 'EACCES') {
    return new IsolationError(
      'UNAVAILABLE',
      `the Docker daemon is not reachable (${e.code}): start it with 'dockerd' (npm start does it) and check the socket permissions`,
      { cause: error },
    );
  }
  switch (e.statusCode) {
    case 404:
      if (/no such image/i.test(detail)) {
        return new IsolationError(
          'NOT_FOUND',
          `${what}: image not found; build it with infra/image/build.sh`,
          {
            cause: error,
          },
        );
      }
      return new IsolationError('NOT_FOUND', `${what} not found`, { cause: error });
    case 409:
      if (/already in use|already exists/i.test(detail)) {
        return new IsolationError('ALREADY_EXISTS', `${what} already exists`, { cause: error });
      }
      return new IsolationError('INVALID_STATE', `${what}: ${detail}`, { cause: error });
    case 304:
      return new IsolationError('INVALID_STATE', `${what} is already in that state`, { cause: error });
    case 400:
      return new IsolationError('INVALID_INPUT', `${what}: Docker refused the request: ${detail}`, {
        cause: error,
      });
    default:
      return new IsolationError('INTERNAL', `${what}: Docker failed: ${detail}`, { cause: error });
  }
}
