// The public surface of @studio/isolation: the contract (types), its one error class, and the one SandboxSpec
// validator. The conformance suite is the `./testing` subpath. No implementation of a sandbox lives here.
export type { IsolationErrorCode, IsolationErrorOptions } from './errors.ts';
export { ISOLATION_ERROR_CODES, IsolationError, isIsolationError } from './errors.ts';
export { newSandboxId, newSnapshotId, SANDBOX_ID_PATTERN, SNAPSHOT_ID_PATTERN } from './sandbox-id.ts';
export type {
  BackendCapabilities,
  ExecOptions,
  ExecResult,
  FileChanges,
  FileEntry,
  FileStat,
  FileWatch,
  IsolationBackend,
  ListFilter,
  NetworkMode,
  ResourceLimits,
  Sandbox,
  SandboxInfo,
  SandboxListener,
  SandboxSpec,
  SandboxState,
  SandboxStats,
  SnapshotInfo,
  Terminal,
  TerminalOptions,
} from './types.ts';
export { MANAGED_LABEL, RESERVED_LABEL_PREFIX } from './types.ts';
export { CALLER_RESERVED_LABELS, validateSandboxSpec } from './validate-spec.ts';
