import { StudioClientError } from '@studio/client';
import { filesReadInput } from '@studio/policy';
import { describe, expect, it } from 'vitest';
import { errorResult, fixFor, McpToolError, toToolError } from './errors.ts';

const clientError = (code: string, message: string) =>
  new StudioClientError(message, { code, trpcCode: null, httpStatus: 404, path: 'x', requestId: 'req_1' });

describe('toToolError', () => {
  it('keeps the policy code of a refused path and names the field', () => {
    const parsed = filesReadInput.safeParse({ sessionId: 'ses_0123456789abcdefgh', path: 'a/../../b' });
    expect(parsed.success).toBe(false);
    const body = toToolError(parsed.error);
    expect(body).toMatchObject({ code: 'PATH_TRAVERSAL', fix: fixFor('PATH_TRAVERSAL') });
    expect(body.message).toMatch(/^path: /);
  });

  it('reports other schema failures as INPUT_INVALID with every issue', () => {
    const parsed = filesReadInput.safeParse({ sessionId: 'nope', path: 'a', more: 1 });
    const body = toToolError(parsed.error);
    expect(body.code).toBe('INPUT_INVALID');
    expect(body.message).toContain('sessionId: session id must be ses_');
    expect(body.message).toContain('more');
  });

  it("passes the API's Studio code through with the request id and a fix", () => {
    expect(toToolError(clientError('SESSION_LIMIT', 'you already have 5 live sessions'))).toEqual({
      code: 'SESSION_LIMIT',
      message: 'you already have 5 live sessions (request req_1)',
      fix: fixFor('SESSION_LIMIT'),
    });
    expect(toToolError(clientError('NETWORK', 'fetch failed')).fix).toMatch(/STUDIO_API_URL/);
    expect(toToolError(clientError('SOMETHING_NEW', 'x')).fix).toMatch(/retry/);
  });

  it('tells an agent refused with HUMAN_HAS_CONTROL to wait for control.released and retry', () => {
    const body = toToolError(clientError('HUMAN_HAS_CONTROL', 'a person has taken control of session ses_x'));
    expect(body.code).toBe('HUMAN_HAS_CONTROL');
    expect(body.fix).toMatch(/get_events/);
    expect(body.fix).toMatch(/control\.released/);
    expect(body.fix).toMatch(/retry/);
  });

  it('tells an agent refused with EGRESS_DENIED how to allow the host: set_network, then check_egress', () => {
    const body = toToolError(
      clientError(
        'EGRESS_DENIED',
        "example.com is not on this session's allowlist; add it with sessions.setNetwork",
      ),
    );
    expect(body).toMatchObject({
      code: 'EGRESS_DENIED',
      message:
        "example.com is not on this session's allowlist; add it with sessions.setNetwork (request req_1)",
    });
    expect(body.fix).toMatch(/set_network with mode 'allowlist'/);
    expect(body.fix).toMatch(/keeping the entries already there/);
    expect(body.fix).toMatch(/check_egress/);
    expect(fixFor('HOST_INVALID')).toMatch(/\*\.example\.com/);
  });

  it('tells an agent refused with SECRET_INVALID to use list_secrets: it cannot add secrets', () => {
    const body = toToolError(
      clientError('SECRET_INVALID', 'secret name "key" must look like an environment variable'),
    );
    expect(body.fix).toMatch(/list_secrets/);
    expect(body.fix).toMatch(/added by people in the Studio web app/);
  });

  it('tells an agent whose paused session could not be restored to start it again', () => {
    const body = toToolError(clientError('RESTORE_FAILED', 'session ses_x could not be restored'));
    expect(body.code).toBe('RESTORE_FAILED');
    expect(body.fix).toMatch(/stopped with its workspace intact/);
    expect(body.fix).toMatch(/start_session/);
    expect(fixFor('UNSUPPORTED')).toMatch(/stop_session/);
  });

  it('keeps the code and fix of a deliberate tool error', () => {
    expect(toToolError(new McpToolError('TIMEOUT', 'slow', 'be quicker'))).toEqual({
      code: 'TIMEOUT',
      message: 'slow',
      fix: 'be quicker',
    });
  });

  it('never leaks the message or stack of an unexpected failure', () => {
    const body = toToolError(new TypeError('secret internals at /work/x.ts:1'));
    expect(body).toEqual({
      code: 'INTERNAL',
      message: 'the MCP server failed unexpectedly',
      fix: fixFor('INTERNAL'),
    });
  });
});

describe('errorResult', () => {
  it('is an MCP tool error with the body as JSON text and structured content', () => {
    const body = { code: 'NOT_FOUND', message: 'm', fix: 'f' };
    expect(errorResult(body)).toEqual({
      isError: true,
      content: [{ type: 'text', text: '{"error":{"code":"NOT_FOUND","message":"m","fix":"f"}}' }],
      structuredContent: { error: body },
    });
  });
});
