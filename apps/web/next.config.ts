import type { NextConfig } from 'next';

const config: NextConfig = {
  // @studio/policy ships TypeScript sources (securityHeaders is used by src/proxy.ts).
  transpilePackages: ['@studio/policy'],
  // `npm run typecheck` (tsc, strict) checks the app; the build does not repeat it.
  typescript: { ignoreBuildErrors: true },
  poweredByHeader: false,
  reactStrictMode: true,
  // The node:http server in server.ts adds the compression-free streaming proxy; Next serves pages only.
  compress: false,
};

export default config;
