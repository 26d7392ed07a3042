export type { GVisorBackendOptions, ReconcileReport } from './gvisor-backend.ts';
export { GVisorBackend, GVisorSandbox } from './gvisor-backend.ts';
export { INSTALL_HINT, mapRunscError } from './map-error.ts';
export type { OciSpec, OciSpecOptions } from './oci-spec.ts';
export { HOST_PIDS_BASE, HOST_PIDS_PER_TASK, hostPidsLimit, ociSpec } from './oci-spec.ts';
export { MIN_RUNSC_VERSION, parseRunscVersion, RUNSC_FLAGS, runscTooOld } from './runsc.ts';
export type { OciSeccomp, SeccompProfile } from './seccomp-profile.ts';
export { ociSeccomp } from './seccomp-profile.ts';
