export { type McpEnv, parseEnv } from './env.ts';
export { errorResult, McpToolError, type ToolErrorBody, toToolError } from './errors.ts';
export { PreviewFetcher, type PreviewFetcherOptions, type PreviewResponse } from './preview-fetch.ts';
export {
  createStudioMcpServer,
  eventsUri,
  fileUri,
  parseResourceUri,
  type StudioMcpServer,
  type StudioMcpServerOptions,
} from './server.ts';
export { type StudioTool, studioTools, type ToolContext } from './tools.ts';
