import { describe, expect, it } from 'vitest';
import * as policy from './index.ts';

// The names other packages import: removing or renaming one is a breaking change and must fail here.
const CONTRACT = [
  'PolicyError',
  'isPolicyError',
  'POLICY_ERROR_CODES',
  'resolveWorkspacePath',
  'isWithinRoot',
  'joinWorkspacePath',
  'isCanonicalWorkspacePath',
  'validatePreviewPort',
  'canonicalizeHost',
  'isLoopbackOrPrivate',
  'BLOCKED_PREVIEW_PORTS',
  'PREVIEW_PORT_RANGE',
  'createRateLimiter',
  'createMemoryRateLimitStore',
  'DEFAULT_WS_MESSAGE_LIMIT',
  'DEFAULT_LOGIN_LIMIT',
  'DEFAULT_SESSION_CREATE_LIMIT',
  'rateLimitKey',
  'defaultPolicy',
  'parsePolicy',
  'SANDBOX_LIMIT_BOUNDS',
  'sandboxResourcesSchema',
  'MAX_TOKEN_LENGTH',
  'signSessionToken',
  'verifySessionToken',
  'API_TOKEN_AUDIENCE',
  'PREVIEW_TOKEN_AUDIENCE',
  'TOKEN_ISSUER',
  'escapeHtml',
  'securityHeaders',
  'sessionIdSchema',
  'workspacePathSchema',
  'sessionCreateInput',
  'sessionByIdInput',
  'filesListInput',
  'filesReadInput',
  'filesWriteInput',
  'filesMkdirInput',
  'filesRemoveInput',
  'filesRenameInput',
  'execRunInput',
  'terminalInputMessage',
  'terminalResizeMessage',
  'terminalAuthMessage',
  'terminalClientMessage',
  'previewRequestInput',
  'loginInput',
  'tokenCreateInput',
  'userCreateInput',
  'changePasswordInput',
  'userRefInput',
  'userPasswordResetInput',
  'userSetRoleInput',
  'roleSchema',
  'eventsSubscribeInput',
  'createPolicySchemas',
];

describe('public surface', () => {
  it.each(CONTRACT)('exports %s', (name) => {
    expect(policy).toHaveProperty(name);
    expect((policy as Record<string, unknown>)[name]).toBeDefined();
  });

  it('does not leak internals', () => {
    for (const name of ['findControlChar', 'utf8ByteLength', 'hasLoneSurrogate', 'normalise', 'viaPolicy']) {
      expect(policy).not.toHaveProperty(name);
    }
  });
});
