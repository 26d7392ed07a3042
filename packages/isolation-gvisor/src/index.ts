export type { GVisorBackendOptions, ReconcileReport } from './gvisor-backend.ts';
export { GVisorBackend, GVisorSandbox } from './gvisor-backend.ts';
export { INSTALL_HINT, mapRunscError } from './map-error.ts';
export type { OciSpec, OciSpecOptions, RootfsBuildSpecOptions } from './oci-spec.ts';
export {
  DOCKER_DEFAULT_CAPS,
  HOST_PIDS_BASE,
  HOST_PIDS_PER_TASK,
  hostPidsLimit,
  ociSpec,
  rootfsBuildSpec,
} from './oci-spec.ts';
export type {
  BuildFailure,
  BuildFailureReason,
  BuildStep,
  BuildStepFile,
  BuildStepRun,
  RootfsBuilderOptions,
  RootfsBuildLimits,
  RootfsBuildOptions,
  RootfsBuildResult,
} from './rootfs-builder.ts';
export { buildFailureOf, RootfsBuilder } from './rootfs-builder.ts';
export { MIN_RUNSC_VERSION, parseRunscVersion, RUNSC_FLAGS, runscTooOld } from './runsc.ts';
export type { OciSeccomp, OciSeccompOptions, SeccompProfile } from './seccomp-profile.ts';
export { ociSeccomp, readOciSeccomp } from './seccomp-profile.ts';
