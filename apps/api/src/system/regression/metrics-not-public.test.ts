import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../../testing/api-fixture.ts';
import { FakeBackend } from '../../testing/fake-backend.ts';

// Issue 16: /metrics answered anyone who could reach the API (route names, request counts, the process's
// internals). Now it is served on an address of the operator's choosing, or to the bearer of a token; by default
// nowhere.

describe('regression: /metrics is not public', () => {
  let plain: TestApi;
  let separate: TestApi;
  beforeAll(async () => {
    plain = await startTestApi({ backends: [new FakeBackend()] });
    separate = await startTestApi({
      backends: [new FakeBackend()],
      env: { STUDIO_METRICS_PORT: '0', STUDIO_METRICS_HOST: '127.0.0.1' },
    });
  }, 120_000);
  afterAll(async () => {
    await plain?.close();
    await separate?.close();
  });

  it('is not served on the API port unless a token is configured, and says how to turn it on', async () => {
    const res = await fetch(`${plain.url}/metrics`);
    expect(res.status).toBe(404);
    const text = await res.text();
    expect(text).toMatch(/STUDIO_METRICS_PORT.*STUDIO_METRICS_TOKEN/);
    expect(text).not.toContain('process_cpu');
    expect(plain.api.metricsUrl).toBeUndefined();
  });

  it('with STUDIO_METRICS_PORT: served there, and only there', async () => {
    const url = separate.api.metricsUrl as string;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(new URL(url).port).not.toBe(new URL(separate.url).port);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('studio_http_requests_total');
    expect((await fetch(`${separate.url}/metrics`)).status).toBe(404);
    // Nothing else answers on the metrics listener.
    expect((await fetch(url.replace('/metrics', '/trpc/auth.me'))).status).toBe(404);
  });
});
