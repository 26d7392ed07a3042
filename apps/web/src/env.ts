import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65_535);
const origin = z.string().regex(/^https?:\/\/[A-Za-z0-9.[\]:-]+$/, {
  error: 'must look like http://host[:port], no path',
});
// Behind Traefik every preview is its own host, `<port>-<label>.preview.<domain>`: a CSP wildcard of one label.
const previewOrigin = z.string().regex(/^https?:\/\/(\*\.)?[A-Za-z0-9.[\]:-]+$/, {
  error: 'must look like http://host[:port] or https://*.preview.example.com, no path',
});

const schema = z.object({
  STUDIO_WEB_HOST: z.string().min(1).default('127.0.0.1'),
  STUDIO_WEB_PORT: port.default(3000),
  /** Where the API listens; /trpc and /terminal are proxied there. */
  STUDIO_API_URL: origin.default('http://127.0.0.1:4000'),
  /**
   * The preview origins the IDE frames (its CSP's frame-src): every session and port is its own host,
   * `<port>-<label>.localhost:4001` locally, another site than an IDE on 127.0.0.1.
   */
  STUDIO_PREVIEW_ORIGIN: previewOrigin.default('http://*.localhost:4001'),
});

/** The web server's configuration, parsed once. */
export interface WebEnv {
  host: string;
  port: number;
  apiUrl: string;
  previewOrigin: string;
}

/** Parses `source` into a {@link WebEnv}; throws one Error naming every bad variable. */
export function parseWebEnv(source: Record<string, string | undefined> = process.env): WebEnv {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = source[key];
    if (value !== undefined && value !== '') picked[key] = value;
  }
  const parsed = schema.safeParse(picked);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${String(i.path[0] ?? '(env)')}: ${i.message}`).join('; ');
    throw new Error(`invalid configuration: ${detail}`);
  }
  const e = parsed.data;
  return {
    host: e.STUDIO_WEB_HOST,
    port: e.STUDIO_WEB_PORT,
    apiUrl: e.STUDIO_API_URL.replace(/\/+$/, ''),
    previewOrigin: e.STUDIO_PREVIEW_ORIGIN.replace(/\/+$/, ''),
  };
}

let cached: WebEnv | undefined;

/** The process's configuration, read from `process.env` on first use and never again. */
export function loadWebEnv(): WebEnv {
  cached ??= parseWebEnv(process.env);
  return cached;
}
