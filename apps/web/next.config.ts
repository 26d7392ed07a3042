import type { NextConfig } from 'next';

const config: NextConfig = {
  // Workspace packages ship TypeScript sources: the policy (securityHeaders in src/proxy.ts) and the client.
  transpilePackages: ['@studio/policy', '@studio/client'],
  // `npm run typecheck` (tsc, strict) checks the app; the build does not repeat it.
  typescript: { ignoreBuildErrors: true },
  poweredByHeader: false,
  reactStrictMode: true,
  // The node:http server in server.ts adds the compression-free streaming proxy; Next serves pages only.
  compress: false,
};

export default config;
