export type { MountEntry, ReserveInput } from './host-space.ts';
export { defaultHeadroomBytes, formatBytes, parseMountinfo, reserveVerdict } from './host-space.ts';
export type { LoopWorkspacesOptions, WorkspaceMode, WorkspacePoolOptions } from './loop-workspaces.ts';
export { LoopWorkspaces, WORKSPACE_READ_ONLY_FAILURE } from './loop-workspaces.ts';
export type { SnapshotDraft, SnapshotStoreOptions, StoredSnapshot } from './snapshot-store.ts';
export { SnapshotStore } from './snapshot-store.ts';
