import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { defaultPolicy, parsePolicy } from './limits.ts';
import {
  changePasswordInput,
  createPolicySchemas,
  eventsSubscribeInput,
  execRunInput,
  filesListInput,
  filesMkdirInput,
  filesReadInput,
  filesRemoveInput,
  filesRenameInput,
  filesWriteInput,
  imageNameSchema,
  isAllowedEnvName,
  loginInput,
  previewRequestInput,
  sessionByIdInput,
  sessionCreateInput,
  sessionIdSchema,
  terminalAuthMessage,
  terminalClientMessage,
  terminalInputMessage,
  terminalResizeMessage,
  tokenCreateInput,
  userCreateInput,
  userPasswordResetInput,
  userRefInput,
  userSetRoleInput,
  workspacePathSchema,
} from './schemas.ts';

const SID = 'ses_V1StGXR8_Z5jdHi6B-myT';
const MiB = 1024 * 1024;

function issues(schema: z.ZodType, input: unknown) {
  const r = schema.safeParse(input);
  expect(r.success, `expected ${JSON.stringify(input)?.slice(0, 200)} to be refused`).toBe(false);
  return r.error?.issues ?? [];
}

function policyCodes(schema: z.ZodType, input: unknown): unknown[] {
  return issues(schema, input).map((i) => (i as { params?: { policyCode?: string } }).params?.policyCode);
}

describe('ids and names', () => {
  it.each([SID, 'ses_0123456789abcdef', `ses_${'a'.repeat(64)}`, 'ses_123e4567-e89b-12d3-a456-426614174000'])(
    'accepts the session id %j',
    (id) => {
      expect(sessionIdSchema.parse(id)).toBe(id);
    },
  );
  it.each([
    '',
    'ses_',
    'ses_short',
    `ses_${'a'.repeat(65)}`,
    'SES_0123456789abcdef',
    'usr_0123456789abcdef',
    'ses_0123456789abcdef/../x',
    'ses_0123456789abcde\u0000',
    'ses_0123456789abcdef\n',
    'ses_0123456789abcdéf',
    42,
    null,
  ])('refuses the session id %j', (id) => {
    issues(sessionIdSchema, id);
  });
});

describe('strict objects: unknown keys are refused everywhere', () => {
  const valid: Array<[string, z.ZodType, Record<string, unknown>]> = [
    ['sessionCreateInput', sessionCreateInput, { image: 'node:20' }],
    ['sessionByIdInput', sessionByIdInput, { sessionId: SID }],
    ['filesListInput', filesListInput, { sessionId: SID }],
    ['filesReadInput', filesReadInput, { sessionId: SID, path: 'a' }],
    ['filesWriteInput', filesWriteInput, { sessionId: SID, path: 'a', content: 'x' }],
    ['filesMkdirInput', filesMkdirInput, { sessionId: SID, path: 'a' }],
    ['filesRemoveInput', filesRemoveInput, { sessionId: SID, path: 'a' }],
    ['filesRenameInput', filesRenameInput, { sessionId: SID, from: 'a', to: 'b' }],
    ['execRunInput', execRunInput, { sessionId: SID, command: ['ls'] }],
    ['terminalInputMessage', terminalInputMessage, { type: 'input', data: 'x' }],
    ['terminalResizeMessage', terminalResizeMessage, { type: 'resize', cols: 80, rows: 24 }],
    ['terminalAuthMessage', terminalAuthMessage, { type: 'auth', token: 'a.b.c' }],
    ['terminalClientMessage', terminalClientMessage, { type: 'input', data: 'x' }],
    ['previewRequestInput', previewRequestInput, { sessionId: SID, port: 3000, path: '/' }],
    ['loginInput', loginInput, { username: 'alice', password: 'pw' }],
    ['tokenCreateInput', tokenCreateInput, { name: 'ci' }],
    ['userCreateInput', userCreateInput, { username: 'alice', password: 'correct horse battery' }],
    ['eventsSubscribeInput', eventsSubscribeInput, { sessionId: SID }],
    ['changePasswordInput', changePasswordInput, { currentPassword: 'x', newPassword: 'a new passphrase' }],
    ['userRefInput', userRefInput, { userId: 'usr_1' }],
    ['userPasswordResetInput', userPasswordResetInput, { userId: 'usr_1', password: 'a new passphrase' }],
    ['userSetRoleInput', userSetRoleInput, { userId: 'usr_1', role: 'admin' }],
  ];
  it.each(valid)('%s accepts its minimal valid input', (_, schema, input) => {
    expect(schema.safeParse(input).success).toBe(true);
  });
  it.each(valid)('%s refuses an extra key', (_, schema, input) => {
    const found = issues(schema, { ...input, privileged: true });
    expect(found.some((i) => i.code === 'unrecognized_keys')).toBe(true);
  });
  it.each(valid)('%s refuses a non-object', (_, schema) => {
    issues(schema, 'x');
    issues(schema, null);
    issues(schema, [1]);
  });
});

describe('account inputs', () => {
  it('hold every new password to the 12-character floor', () => {
    issues(changePasswordInput, { currentPassword: 'x', newPassword: 'short' });
    issues(userPasswordResetInput, { userId: 'usr_1', password: 'short' });
    issues(changePasswordInput, { currentPassword: '', newPassword: 'a new passphrase' });
  });
  it('grant only the known roles', () => {
    issues(userSetRoleInput, { userId: 'usr_1', role: 'root' });
    issues(userSetRoleInput, { userId: '../x', role: 'user' });
  });
});

describe('sessionCreateInput', () => {
  it('defaults the backend to auto and accepts resource requests under the ceilings', () => {
    expect(
      sessionCreateInput.parse({
        image: 'node:20-bookworm',
        resources: { memoryMb: 512, cpus: 0.5, pids: 128, diskMb: 1024 },
      }),
    ).toEqual({
      backend: 'auto',
      image: 'node:20-bookworm',
      resources: { memoryMb: 512, cpus: 0.5, pids: 128, diskMb: 1024 },
    });
  });
  it('accepts resource maxima equal to the policy', () => {
    expect(
      sessionCreateInput.safeParse({
        image: 'node',
        resources: { memoryMb: 1024, cpus: 1, pids: 512, diskMb: 2048 },
      }).success,
    ).toBe(true);
  });
  it.each<[string, unknown]>([
    ['memory above policy', { memoryMb: 1025 }],
    ['cpus above policy', { cpus: 1.01 }],
    ['pids above policy', { pids: 513 }],
    ['disk above policy', { diskMb: 2049 }],
    ['negative memory', { memoryMb: -1 }],
    ['fractional pids', { pids: 100.5 }],
    ['zero cpus', { cpus: 0 }],
    ['string memory', { memoryMb: '512' }],
    ['a runtime parameter', { privileged: true }],
    ['capabilities', { capAdd: ['SYS_ADMIN'] }],
  ])('refuses %s', (_, resources) => {
    issues(sessionCreateInput, { image: 'node', resources });
  });
  it.each(['lxc', 'runc', 'host', '', 'DOCKER'])('refuses the backend %j', (backend) => {
    issues(sessionCreateInput, { image: 'node', backend });
  });
  it('follows a different policy when built from it', () => {
    const small = createPolicySchemas(parsePolicy({ sandbox: { memoryBytes: 256 * MiB } }));
    expect(small.sessionCreateInput.safeParse({ image: 'node', resources: { memoryMb: 512 } }).success).toBe(
      false,
    );
    expect(small.sessionCreateInput.safeParse({ image: 'node', resources: { memoryMb: 256 } }).success).toBe(
      true,
    );
  });
});

describe('imageNameSchema', () => {
  it.each([
    'node',
    'node:20',
    'node:20.11.1-bookworm-slim',
    'library/node:lts',
    'mcr/devcontainers/typescript-node:1-20',
    'my_org/my-image__x:v1',
    `node@sha256:${'a'.repeat(64)}`,
    `node:20@sha256:${'0'.repeat(64)}`,
  ])('accepts %j', (image) => {
    expect(imageNameSchema.parse(image)).toBe(image);
  });
  it.each([
    '',
    'localhost:5000/evil',
    'localhost/evil',
    'localhost',
    '127.0.0.1:5000/evil',
    '10.0.0.5/image',
    '169.254.169.254/latest',
    'registry.example.com/image',
    'evil.example/x:1',
    'ghcr.io/owner/image',
    '[::1]:5000/x',
    'Node',
    'node:',
    'node:-bad',
    `node:${'a'.repeat(129)}`,
    'node@sha256:abc',
    'node@md5:0',
    '-node',
    'node/',
    '/node',
    'a//b',
    'node:20 --privileged',
    'node\n',
    'x'.repeat(256),
  ])('refuses %j', (image) => {
    issues(imageNameSchema, image);
  });
});

describe('workspace paths in schemas', () => {
  it('outputs the canonical path, so the API never sees the raw one', () => {
    expect(workspacePathSchema.parse('./src//app.ts')).toBe('src/app.ts');
    expect(filesReadInput.parse({ sessionId: SID, path: 'a%2Fb' }).path).toBe('a/b');
  });
  it('reports the policy code on the issue', () => {
    expect(policyCodes(workspacePathSchema, '../etc/passwd')).toEqual(['PATH_TRAVERSAL']);
    expect(policyCodes(workspacePathSchema, '/etc/passwd')).toEqual(['PATH_ABSOLUTE']);
    expect(policyCodes(workspacePathSchema, '%2e%2e/x')).toEqual(['PATH_TRAVERSAL']);
    expect(policyCodes(workspacePathSchema, 'a\u0000')).toEqual(['PATH_CONTROL_CHAR']);
    expect(policyCodes(workspacePathSchema, '.')).toEqual(['PATH_IS_ROOT']);
  });
  it('refuses empty and over-long raw strings before resolving', () => {
    issues(workspacePathSchema, '');
    issues(workspacePathSchema, 'a'.repeat(20_000));
    issues(workspacePathSchema, 5);
  });
  it('lets files.list default to and name the root, but never files.remove', () => {
    expect(filesListInput.parse({ sessionId: SID }).path).toBe('');
    expect(filesListInput.parse({ sessionId: SID, path: '.' }).path).toBe('');
    expect(policyCodes(filesRemoveInput, { sessionId: SID, path: '.' })).toEqual(['PATH_IS_ROOT']);
    expect(policyCodes(filesRemoveInput, { sessionId: SID, path: './' })).toEqual(['PATH_IS_ROOT']);
    issues(filesListInput, { sessionId: SID, path: '..' });
  });
  it('files.rename refuses traversal on either side and moving into itself', () => {
    issues(filesRenameInput, { sessionId: SID, from: 'a', to: '../a' });
    issues(filesRenameInput, { sessionId: SID, from: '../a', to: 'b' });
    issues(filesRenameInput, { sessionId: SID, from: 'a', to: 'a' });
    issues(filesRenameInput, { sessionId: SID, from: 'a', to: './a' });
    issues(filesRenameInput, { sessionId: SID, from: 'a', to: 'a/b' });
    expect(filesRenameInput.parse({ sessionId: SID, from: 'a', to: 'ab' })).toEqual({
      sessionId: SID,
      from: 'a',
      to: 'ab',
    });
  });
});

describe('filesWriteInput', () => {
  const max = defaultPolicy.files.maxFileBytes;
  it('accepts utf8 content up to the limit in bytes', () => {
    expect(filesWriteInput.parse({ sessionId: SID, path: 'a', content: 'x'.repeat(max) }).encoding).toBe(
      'utf8',
    );
    issues(filesWriteInput, { sessionId: SID, path: 'a', content: 'x'.repeat(max + 1) });
  });
  it('counts UTF-8 bytes, not characters', () => {
    const content = 'é'.repeat(max / 2 + 1); // fits in characters, not in bytes
    issues(filesWriteInput, { sessionId: SID, path: 'a', content });
  });
  it('refuses malformed unicode in utf8 content', () => {
    issues(filesWriteInput, { sessionId: SID, path: 'a', content: 'a\uD800b' });
  });
  it('accepts padded base64 whose decoded size fits, refuses a byte more', () => {
    const fits = Buffer.alloc(max).toString('base64');
    expect(
      filesWriteInput.safeParse({ sessionId: SID, path: 'a', content: fits, encoding: 'base64' }).success,
    ).toBe(true);
    const tooBig = Buffer.alloc(max + 1).toString('base64');
    issues(filesWriteInput, { sessionId: SID, path: 'a', content: tooBig, encoding: 'base64' });
  });
  it.each(['abc', 'ab=c', 'a===', '!!!!', 'YQ==YQ==', 'YQ'])('refuses the bad base64 %j', (content) => {
    issues(filesWriteInput, { sessionId: SID, path: 'a', content, encoding: 'base64' });
  });
  it('accepts empty content and refuses unknown encodings', () => {
    expect(filesWriteInput.safeParse({ sessionId: SID, path: 'a', content: '' }).success).toBe(true);
    issues(filesWriteInput, { sessionId: SID, path: 'a', content: 'x', encoding: 'latin1' });
    issues(filesWriteInput, { sessionId: SID, path: 'a', content: 'x', createParents: 'yes' });
  });
});

describe('execRunInput', () => {
  const base = { sessionId: SID, command: ['npm', 'test'] };
  it('accepts argv with optional cwd, env, stdin and timeout', () => {
    const parsed = execRunInput.parse({
      ...base,
      cwd: './apps/web',
      env: { NODE_ENV: 'test', PATH: '/usr/bin', NODE_OPTIONS: '--max-old-space-size=512', _x: '' },
      stdin: 'y\n',
      timeoutMs: 60_000,
    });
    expect(parsed.cwd).toBe('apps/web');
    expect(execRunInput.parse({ ...base, cwd: '.' }).cwd).toBe('');
  });
  it.each<[string, Record<string, unknown>]>([
    ['an empty command', { command: [] }],
    ['an empty program', { command: [''] }],
    ['a shell string', { command: 'rm -rf /' }],
    ['257 arguments', { command: Array.from({ length: 257 }, () => 'a') }],
    ['a NUL in an argument', { command: ['echo', 'a\u0000b'] }],
    ['an argument over 32 KiB', { command: ['echo', 'a'.repeat(32 * 1024 + 1)] }],
    ['argv over 256 KiB in total', { command: Array.from({ length: 9 }, () => 'a'.repeat(30 * 1024)) }],
    ['a non-string argument', { command: ['echo', 1] }],
    ['cwd outside the workspace', { cwd: '..' }],
    ['an absolute cwd', { cwd: '/etc' }],
    ['LD_PRELOAD', { env: { LD_PRELOAD: '/tmp/x.so' } }],
    ['LD_LIBRARY_PATH', { env: { LD_LIBRARY_PATH: '/tmp' } }],
    ['lowercase ld_preload', { env: { ld_preload: '/tmp/x.so' } }],
    ['BASH_ENV', { env: { BASH_ENV: '/tmp/x' } }],
    ['an exported bash function', { env: { 'BASH_FUNC_ls%%': '() { id; }' } }],
    ['IFS', { env: { IFS: '/' } }],
    ['a bad env name', { env: { 'A-B': 'x' } }],
    ['an env name starting with a digit', { env: { '1A': 'x' } }],
    ['an env name with =', { env: { 'A=B': 'x' } }],
    ['an empty env name', { env: { '': 'x' } }],
    ['a NUL in an env value', { env: { A: 'x\u0000y' } }],
    ['an env value over 8 KiB', { env: { A: 'x'.repeat(8 * 1024 + 1) } }],
    ['65 env variables', { env: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`V${i}`, 'x'])) }],
    ['stdin over the limit', { stdin: 'x'.repeat(MiB + 1) }],
    ['timeout 0', { timeoutMs: 0 }],
    ['timeout over the max', { timeoutMs: 600_001 }],
    ['fractional timeout', { timeoutMs: 1.5 }],
    ['a working directory option', { workingDir: '/' }],
    ['a user option', { user: 'root' }],
  ])('refuses %s', (_, overrides) => {
    issues(execRunInput, { ...base, ...overrides });
  });
  it('isAllowedEnvName', () => {
    expect(isAllowedEnvName('NODE_ENV')).toBe(true);
    expect(isAllowedEnvName('LD_PRELOAD')).toBe(false);
    expect(isAllowedEnvName('Ld_Audit')).toBe(false);
    expect(isAllowedEnvName('PS4')).toBe(false);
    expect(isAllowedEnvName('LDX')).toBe(true);
    expect(isAllowedEnvName(5 as unknown as string)).toBe(false);
  });
});

describe('terminal messages', () => {
  it('parses each message type', () => {
    expect(terminalClientMessage.parse({ type: 'auth', token: 'a.b.c' })).toEqual({
      type: 'auth',
      token: 'a.b.c',
    });
    expect(terminalClientMessage.parse({ type: 'input', data: 'ls\r' })).toEqual({
      type: 'input',
      data: 'ls\r',
    });
    expect(terminalClientMessage.parse({ type: 'resize', cols: 500, rows: 200 })).toEqual({
      type: 'resize',
      cols: 500,
      rows: 200,
    });
  });
  it.each<unknown>([
    { type: 'resize', cols: 501, rows: 24 },
    { type: 'resize', cols: 80, rows: 201 },
    { type: 'resize', cols: 0, rows: 24 },
    { type: 'resize', cols: -1, rows: 24 },
    { type: 'resize', cols: 80.5, rows: 24 },
    { type: 'resize', cols: '80', rows: 24 },
    { type: 'resize', cols: 80 },
    { type: 'input', data: '' },
    { type: 'input', data: 'x'.repeat(64 * 1024 + 1) },
    { type: 'input', data: 5 },
    { type: 'auth', token: '' },
    { type: 'auth', token: 'x'.repeat(4097) },
    { type: 'exec', command: ['sh'] },
    { type: 'AUTH', token: 'a.b.c' },
    { data: 'x' },
    { type: 'input', data: 'x', sessionId: SID },
  ])('refuses %j', (message) => {
    issues(terminalClientMessage, message);
  });
});

describe('previewRequestInput', () => {
  const base = { sessionId: SID, port: 5173, path: '/' };
  it('accepts a port as number or decimal string and an origin-form path', () => {
    expect(previewRequestInput.parse({ ...base, port: '3000', path: '/src/main.ts?t=1&x=%2F' })).toEqual({
      sessionId: SID,
      port: 3000,
      path: '/src/main.ts?t=1&x=%2F',
    });
    expect(previewRequestInput.parse({ ...base, path: '/@vite/client' }).path).toBe('/@vite/client');
  });
  it('reports the port policy code', () => {
    expect(policyCodes(previewRequestInput, { ...base, port: 22 })).toEqual(['PORT_BLOCKED']);
    expect(policyCodes(previewRequestInput, { ...base, port: '0x0BB8' })).toEqual(['PORT_INVALID']);
    expect(policyCodes(previewRequestInput, { ...base, port: 10000 })).toEqual(['PORT_OUT_OF_RANGE']);
    issues(previewRequestInput, { ...base, port: null });
  });
  it.each([
    '',
    'src/main.ts',
    '//evil.example.com/x',
    '///evil',
    '/\\evil.example.com',
    'http://evil.example.com/',
    '/a b',
    '/a\r\nHost: evil',
    '/a\u0000',
    '/a#frag',
    '/a%zz',
    '/a%',
    '/é',
    '/<script>',
    `/${'a'.repeat(2048)}`,
  ])('refuses the path %j', (path) => {
    issues(previewRequestInput, { ...base, path });
  });
});

describe('identity inputs', () => {
  it('lowercases usernames so one account has one spelling', () => {
    expect(loginInput.parse({ username: 'Alice', password: 'x' }).username).toBe('alice');
    expect(userCreateInput.parse({ username: 'BOB.smith', password: 'a'.repeat(12) }).username).toBe(
      'bob.smith',
    );
  });
  it.each([
    '',
    ' alice',
    'alice ',
    'al ice',
    'al/ice',
    '.alice',
    '-alice',
    'a'.repeat(65),
    'alïce',
    'İstanbul',
  ])('refuses the username %j', (username) => {
    issues(loginInput, { username, password: 'x' });
  });
  it('bounds passwords', () => {
    issues(loginInput, { username: 'alice', password: '' });
    issues(loginInput, { username: 'alice', password: 'x'.repeat(1025) });
    expect(loginInput.safeParse({ username: 'alice', password: 'x'.repeat(1024) }).success).toBe(true);
    issues(userCreateInput, { username: 'alice', password: 'x'.repeat(11) });
  });
  it('has no role field on user creation (no mass assignment)', () => {
    issues(userCreateInput, { username: 'alice', password: 'a'.repeat(12), role: 'admin' });
  });
  it('bounds token names and expiry', () => {
    expect(tokenCreateInput.parse({ name: 'CI deploy', expiresInDays: 365 })).toEqual({
      name: 'CI deploy',
      expiresInDays: 365,
    });
    issues(tokenCreateInput, { name: '' });
    issues(tokenCreateInput, { name: 'x'.repeat(65) });
    issues(tokenCreateInput, { name: 'a\u001b[31mred' });
    issues(tokenCreateInput, { name: 'a\u202eb\u0085' });
    issues(tokenCreateInput, { name: 'ci', expiresInDays: 0 });
    issues(tokenCreateInput, { name: 'ci', expiresInDays: 366 });
    issues(tokenCreateInput, { name: 'ci', expiresInDays: 1.5 });
  });
  it('bounds event cursors', () => {
    expect(eventsSubscribeInput.parse({ sessionId: SID, cursor: '12345' }).cursor).toBe('12345');
    issues(eventsSubscribeInput, { sessionId: SID, cursor: '' });
    issues(eventsSubscribeInput, { sessionId: SID, cursor: 'x'.repeat(129) });
    issues(eventsSubscribeInput, { sessionId: SID, cursor: '../1' });
  });
});
