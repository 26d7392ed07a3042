import { DEFAULT_SECRET_HEADER as POLICY_DEFAULT } from '@studio/policy/secrets';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SECRET_HEADER, secretNames, secretsLabel } from './secrets.ts';

describe('secrets on the page', () => {
  it("prefills the API's default header template", () => {
    expect(DEFAULT_SECRET_HEADER).toBe(POLICY_DEFAULT);
  });

  it('names secrets in a sentence and in the session header', () => {
    expect(secretNames([])).toBe('');
    expect(secretNames(['API_KEY'])).toBe('API_KEY');
    expect(secretNames(['API_KEY', 'GITHUB_TOKEN'])).toBe('API_KEY and GITHUB_TOKEN');
    expect(secretNames(['A', 'B', 'C'])).toBe('A, B and C');
    expect(secretsLabel(['OPENAI_API_KEY', 'GITHUB_TOKEN'])).toBe('secrets: OPENAI_API_KEY, GITHUB_TOKEN');
  });
});
