import { describe, expect, it } from 'vitest';
import { parseEnv } from './env.ts';

describe('parseEnv', () => {
  it('defaults the API URL and the image, and requires a token', () => {
    expect(parseEnv({ STUDIO_API_TOKEN: 'sst_x' })).toEqual({
      STUDIO_API_URL: 'http://127.0.0.1:4000',
      STUDIO_API_TOKEN: 'sst_x',
      STUDIO_MCP_DEFAULT_IMAGE: 'studio-sandbox:latest',
    });
  });

  it('says what to do when the token is missing or the URL is wrong', () => {
    expect(() => parseEnv({})).toThrow(/STUDIO_API_TOKEN is required: create an API token/);
    expect(() => parseEnv({ STUDIO_API_TOKEN: '' })).toThrow(/STUDIO_API_TOKEN is empty/);
    expect(() => parseEnv({ STUDIO_API_TOKEN: 't', STUDIO_API_URL: 'ftp://x' })).toThrow(
      /STUDIO_API_URL must be an http\(s\) URL/,
    );
    expect(() => parseEnv({ STUDIO_API_TOKEN: 't', STUDIO_MCP_DEFAULT_IMAGE: 'evil.example/x' })).toThrow(
      /image must be/,
    );
  });
});
