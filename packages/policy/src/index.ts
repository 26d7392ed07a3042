// The public surface of @studio/policy. Everything a consumer may rely on is listed here by name; files under
// src/lib/ are internal. Each subpath export (e.g. '@studio/policy/paths') exposes the same names per module.

export type { CookieRequestFacts } from './cookie-requests.ts';
export { cookieRequestRefusal, IDE_PROOF_HEADER, IDE_PROOF_VALUE } from './cookie-requests.ts';
export type { E2bListQuery, E2bNewSandbox, E2bSchemas, E2bState } from './e2b.ts';
export {
  E2B_METADATA_LIMITS,
  E2B_SANDBOX_ID_PATTERN,
  E2B_STATES,
  e2bMetadataSchema,
  e2bSandboxIdSchema,
  e2bSchemas,
} from './e2b.ts';
export type {
  EgressAddressOptions,
  EgressDenial,
  EgressDenyReason,
  EgressRule,
  EgressTargetDecision,
  EgressTargetOptions,
  NetworkMode,
  NetworkSettings,
} from './egress.ts';
export {
  canonicalEgressList,
  checkEgressAddress,
  checkEgressTarget,
  DEFAULT_EGRESS_PORTS,
  EGRESS_DENY_REASONS,
  formatEgressRule,
  MAX_EGRESS_RULES,
  NETWORK_MODES,
  NO_NETWORK,
  parseEgressRule,
} from './egress.ts';
export type { PolicyErrorCode, PolicyErrorOptions } from './errors.ts';
export { isPolicyError, POLICY_ERROR_CODES, PolicyError } from './errors.ts';
export type { SecurityHeadersOptions } from './html.ts';
export { escapeHtml, securityHeaders } from './html.ts';
export type {
  EgressLimits,
  ExecLimits,
  FilesLimits,
  Policy,
  PolicyOverrides,
  PreviewLimits,
  RecordingLimits,
  SandboxLimits,
  SandboxResources,
  SessionLimits,
  SnapshotLimits,
  TemplateLimits,
  TerminalLimits,
  WebSocketLimits,
} from './limits.ts';
export {
  defaultPolicy,
  MAX_TOKEN_LENGTH,
  parsePolicy,
  SANDBOX_LIMIT_BOUNDS,
  sandboxResourcesSchema,
} from './limits.ts';
export type { ResolveWorkspacePathOptions } from './paths.ts';
export {
  DEFAULT_MAX_PATH_BYTES,
  DEFAULT_MAX_SEGMENT_BYTES,
  isCanonicalWorkspacePath,
  isWithinRoot,
  joinWorkspacePath,
  resolveWorkspacePath,
} from './paths.ts';
export type { CanonicalHost, HostKind } from './preview.ts';
export {
  BLOCKED_PREVIEW_PORTS,
  canonicalizeHost,
  isLoopbackOrPrivate,
  PREVIEW_PORT_RANGE,
  validatePreviewPort,
} from './preview.ts';
export type {
  MemoryRateLimitStoreOptions,
  RateLimit,
  RateLimiter,
  RateLimiterOptions,
  RateLimitResult,
  RateLimitState,
  RateLimitStore,
} from './rate-limit.ts';
export {
  createMemoryRateLimitStore,
  createRateLimiter,
  DEFAULT_LOGIN_LIMIT,
  DEFAULT_SESSION_CREATE_LIMIT,
  DEFAULT_WS_MESSAGE_LIMIT,
  MAX_RATE_LIMIT,
  MAX_RATE_LIMIT_KEY_LENGTH,
  MAX_RATE_WINDOW_MS,
  rateLimitedError,
  rateLimitKey,
} from './rate-limit.ts';
export type { RecordingsGetInput, RecordingsListInput } from './recording.ts';
export {
  RECORDING_FILE_PATTERN,
  recordingFileSchema,
  recordingsGetInput,
  recordingsListInput,
} from './recording.ts';
export type {
  Backend,
  ChangePasswordInput,
  EventsHistoryInput,
  EventsSubscribeInput,
  ExecRunInput,
  FilesListInput,
  FilesMkdirInput,
  FilesReadInput,
  FilesRemoveInput,
  FilesRenameInput,
  FilesWriteInput,
  LoginInput,
  NetworkSettingsInput,
  PolicyIssueParams,
  PolicySchemas,
  PreviewRequestInput,
  SessionByIdInput,
  SessionCreateInput,
  SessionId,
  SessionSetNetworkInput,
  TerminalAuthMessage,
  TerminalClientMessage,
  TerminalInputMessage,
  TerminalResizeMessage,
  TokenCreateInput,
  UserCreateInput,
  UserPasswordResetInput,
  UserSetRoleInput,
} from './schemas.ts';
export {
  backendSchema,
  changePasswordInput,
  createPolicySchemas,
  cursorSchema,
  envVarsSchema,
  eventsHistoryInput,
  eventsSubscribeInput,
  execRunInput,
  filesListInput,
  filesMkdirInput,
  filesReadInput,
  filesRemoveInput,
  filesRenameInput,
  filesWriteInput,
  idempotencyKeySchema,
  imageNameSchema,
  isAllowedEnvName,
  labelSchema,
  loginInput,
  networkSettingsSchema,
  newPasswordSchema,
  passwordSchema,
  previewPathSchema,
  previewPortSchema,
  previewRequestInput,
  REFUSED_ENV_NAMES,
  REFUSED_ENV_PREFIXES,
  roleSchema,
  SESSION_ID_PREFIX,
  secretCreateInput,
  secretDeleteInput,
  secretNameSchema,
  secretRotateInput,
  secretValueSchema,
  sessionByIdInput,
  sessionCreateInput,
  sessionEgressCheckInput,
  sessionIdSchema,
  sessionSecretsSchema,
  sessionSetNetworkInput,
  terminalAuthMessage,
  terminalClientMessage,
  terminalInputMessage,
  terminalResizeMessage,
  tokenCreateInput,
  userCreateInput,
  userIdSchema,
  usernameSchema,
  userPasswordResetInput,
  userRefInput,
  userSetRoleInput,
  workspaceDirSchema,
  workspacePathSchema,
} from './schemas.ts';
export type { SecretHeader } from './secrets.ts';
export {
  canonicalSecretHosts,
  checkSecretName,
  checkSecretValue,
  DEFAULT_SECRET_HEADER,
  MAX_SECRET_HOSTS,
  MAX_SECRET_VALUE_LENGTH,
  MAX_SECRETS,
  MAX_SESSION_SECRETS,
  parseSecretHeader,
  renderSecretHeader,
  SECRET_VALUE_MARK,
  secretGoesTo,
} from './secrets.ts';
export { isSameSite, previewSiteProblem, siteOf } from './sites.ts';
export { snapshotIdSchema, snapshotNameSchema, snapshotRefSchema } from './snapshot-ref.ts';
export type { SessionForkInput, SnapshotCreateInput } from './snapshots.ts';
export {
  sessionForkInput,
  sessionSetKeepAwakeInput,
  snapshotByRefInput,
  snapshotCreateInput,
} from './snapshots.ts';
export type {
  DockerfileStep,
  ParsedDockerfile,
  TemplateBuildInput,
  TemplateCreateInput,
  TemplateDockerfileSpec,
  TemplateRecipe,
  TemplateSpec,
} from './templates.ts';
export {
  DEFAULT_TEMPLATE_NAME,
  debianPackageSchema,
  MAX_DOCKERFILE_CHARS,
  MAX_TEMPLATE_FILES,
  MAX_TEMPLATE_FILES_BYTES,
  MAX_TEMPLATE_PACKAGES,
  MAX_TEMPLATE_STEPS,
  npmPackageSchema,
  parseDockerfile,
  pipPackageSchema,
  TEMPLATE_ID_PREFIX,
  TEMPLATE_RESERVED_DIRS,
  templateBuildInput,
  templateByRefInput,
  templateCreateInput,
  templateDockerfileSchema,
  templateFilePathSchema,
  templateIdSchema,
  templateNameSchema,
  templateRecipeSchema,
  templateRefSchema,
  templateSpecSchema,
} from './templates.ts';
export type {
  SessionToken,
  SessionTokenClaims,
  SignSessionTokenOptions,
  VerifySessionTokenOptions,
} from './tokens.ts';
export {
  API_TOKEN_AUDIENCE,
  DEFAULT_TOKEN_LIFETIME_MS,
  MAX_TOKEN_LIFETIME_MS,
  MIN_TOKEN_KEY_BYTES,
  PREVIEW_TOKEN_AUDIENCE,
  signSessionToken,
  TOKEN_ALGORITHM,
  TOKEN_CLOCK_TOLERANCE_S,
  TOKEN_ISSUER,
  verifySessionToken,
} from './tokens.ts';
