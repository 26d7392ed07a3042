export { AgentConnections } from './agent-connections.ts';
export { AgentSandbox } from './agent-sandbox.ts';
export type { IsolationErrorCode, IsolationErrorOptions } from './errors.ts';
export { ISOLATION_ERROR_CODES, IsolationError, isIsolationError } from './errors.ts';
export type { WorkspaceMode } from './loop-workspaces.ts';
export { LoopWorkspaces } from './loop-workspaces.ts';
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
  SandboxSpec,
  SandboxState,
  SandboxStats,
  Terminal,
  TerminalOptions,
} from './types.ts';
export { MANAGED_LABEL, RESERVED_LABEL_PREFIX } from './types.ts';
