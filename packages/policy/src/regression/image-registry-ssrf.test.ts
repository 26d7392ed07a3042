// A client-chosen image like 'localhost:5000/x' or '169.254.169.254/x' makes the Docker daemon connect to that
// registry address from the host: server-side request forgery through the daemon. Images may not name a host.
import { describe, expect, it } from 'vitest';
import { sessionCreateInput } from '../schemas.ts';

describe('regression: image registry SSRF', () => {
  it.each([
    'localhost:5000/x',
    'localhost/x',
    '127.0.0.1/x',
    '169.254.169.254/latest',
    '10.0.0.1:5000/x',
    'evil.example/x',
  ])('%j is refused', (image) => {
    expect(sessionCreateInput.safeParse({ image }).success).toBe(false);
  });

  it('Docker Hub style names are still accepted', () => {
    expect(sessionCreateInput.parse({ image: 'library/node:20' }).image).toBe('library/node:20');
  });
});
