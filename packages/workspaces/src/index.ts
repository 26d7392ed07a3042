export type { WorkspaceMode } from './loop-workspaces.ts';
export { LoopWorkspaces } from './loop-workspaces.ts';
