import { randomBytes } from 'node:crypto';

/**
 * The shape of every sandbox id: `sbx-` and 16 lowercase hex digits. Backends name runtime objects (containers,
 * runsc sandboxes, workspace images, mount points) after it, so it must never carry a path separator or anything
 * a shell or the runtime would read as syntax; an id outside this shape names nothing a backend made.
 */
export const SANDBOX_ID_PATTERN = /^sbx-[0-9a-f]{16}$/;

/**
 * A fresh sandbox id (64 random bits). A caller that records what it is about to create (the API writes the id
 * into its store before `create()`, so a crash mid-create leaves an owner that reconciliation can finish or undo)
 * makes the id here and passes it as `SandboxSpec.id`.
 */
export function newSandboxId(): string {
  return `sbx-${randomBytes(8).toString('hex')}`;
}

/**
 * The shape of every snapshot id: `snp-` and 16 lowercase hex digits. Backends name host directories after it, so
 * it must never carry a path separator; an id outside this shape names no snapshot.
 */
export const SNAPSHOT_ID_PATTERN = /^snp-[0-9a-f]{16}$/;

/** A fresh snapshot id (64 random bits). */
export function newSnapshotId(): string {
  return `snp-${randomBytes(8).toString('hex')}`;
}
