import { imageNameSchema } from '@studio/policy';
import { z } from 'zod';

const envSchema = z.object({
  STUDIO_API_URL: z
    .url({ protocol: /^https?$/, error: 'STUDIO_API_URL must be an http(s) URL, e.g. http://127.0.0.1:4000' })
    .default('http://127.0.0.1:4000'),
  STUDIO_API_TOKEN: z
    .string({
      error:
        'STUDIO_API_TOKEN is required: create an API token (sst_…) in the Studio web app or with tokens.create, then set it in the MCP server config',
    })
    .min(1, { error: 'STUDIO_API_TOKEN is empty' }),
  STUDIO_MCP_DEFAULT_IMAGE: imageNameSchema.default('studio-sandbox:latest'),
});

/** The MCP server's configuration, parsed once from the environment. */
export type McpEnv = z.output<typeof envSchema>;

/** Parses the environment; throws an Error whose message lists every problem and how to fix it. */
export function parseEnv(source: Record<string, string | undefined> = process.env): McpEnv {
  const result = envSchema.safeParse(source);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `- ${i.message}`).join('\n');
  throw new Error(`invalid configuration of the Studio MCP server:\n${problems}`);
}
