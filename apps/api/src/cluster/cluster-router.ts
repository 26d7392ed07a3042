import { adminProcedure, router } from '../core/trpc.ts';

/**
 * The cluster as its operators see it (issue 23; docs/scale-out.md): every node service with its Swarm
 * availability, whether it is shutting down, when it last reported and its live sessions. Admins only: it names
 * the nodes' internal addresses. Empty on single-box Studio.
 */
export const clusterRouter = router({
  nodes: adminProcedure.query(async ({ ctx }) =>
    (await ctx.deps.store.listNodes()).map((n) => ({
      id: n.id,
      host: n.host,
      url: n.url,
      swarmNodeId: n.swarmNodeId,
      availability: n.availability,
      draining: n.draining,
      lastReportMs: Math.round(n.ageMs),
      liveSessions: n.liveSessions,
      backends: n.capacity.backends,
      cpus: n.capacity.cpus,
      load1: n.capacity.load1,
      memoryFreeBytes: n.capacity.memoryFreeBytes,
      memoryTotalBytes: n.capacity.memoryTotalBytes,
    })),
  ),
});
