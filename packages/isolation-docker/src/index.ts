export type { DockerBackendOptions } from './docker-backend.ts';
export { DockerBackend, DockerSandbox } from './docker-backend.ts';
export { mapDockerError } from './map-error.ts';
