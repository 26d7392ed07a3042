import { pino } from 'pino';

/** Log levels, lowest first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

// Keys whose values are never written, at any depth (passwords, tokens, cookies, keys). pino's own `redact`
// takes fixed paths; a secret can sit at any depth of a field we log, so this walks the object instead.
const SECRET_KEY = /pass(word)?|secret|token|cookie|authorization|^key$|hash/i;

/** A JSON-lines logger (pino): one object per line, with `time`, `level`, `msg` and the given fields. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  level?: LogLevel | 'silent';
  /** Where lines go; default stdout. */
  write?: (line: string) => void;
}

function redact(value: unknown, depth = 0): unknown {
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    // Only name, message and code: a stack or cause can carry host paths and is not needed in a request log.
    const code = (value as { code?: unknown }).code;
    return { name: value.name, message: value.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  if (Array.isArray(value)) return value.slice(0, 20).map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value))
    out[k] = SECRET_KEY.test(k) ? '[redacted]' : redact(v, depth + 1);
  return out;
}

function wrap(log: pino.Logger): Logger {
  return {
    debug: (msg, fields) => log.debug(fields ?? {}, msg),
    info: (msg, fields) => log.info(fields ?? {}, msg),
    warn: (msg, fields) => log.warn(fields ?? {}, msg),
    error: (msg, fields) => log.error(fields ?? {}, msg),
    // Bindings go through the same redaction as fields.
    child: (fields) => wrap(log.child(redact(fields) as Record<string, unknown>)),
  };
}

/** Creates a {@link Logger}. Field names that look like secrets are replaced by `[redacted]`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const write = options.write;
  return wrap(
    pino(
      {
        level: options.level ?? 'info',
        base: undefined,
        messageKey: 'msg',
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: {
          level: (label) => ({ level: label }),
          log: (fields) => redact(fields) as Record<string, unknown>,
        },
      },
      // Default: pino's synchronous stdout, so the last lines before a crash are not lost.
      write ? { write: (line: string) => write(line.trimEnd()) } : pino.destination(1),
    ),
  );
}
