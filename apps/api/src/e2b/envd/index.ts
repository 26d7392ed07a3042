export { fileSignature, fileSignatureMatches, tokenMatches } from './envd-auth.ts';
export { ENVD_ERROR_CODES, EnvdError, type EnvdErrorCode, toEnvdFailure } from './envd-errors.ts';
export {
  createEnvdHandler,
  ENVD_VERSION,
  type EnvdHandler,
  type EnvdHandlerOptions,
  type EnvdTarget,
} from './envd-handler.ts';
export { E2B_HOME, WORKSPACE } from './envd-paths.ts';
