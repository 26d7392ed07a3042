import type { Metadata, Viewport } from 'next';
import { headers } from 'next/headers';
import type { ReactNode } from 'react';
import { NonceProvider } from '../components/nonce';
import { Providers } from '../components/providers';
import './globals.css';

export const metadata: Metadata = { title: 'Claude Studio' };
export const viewport: Viewport = { colorScheme: 'dark', themeColor: '#16181d' };

// Every page renders per request, so Next can put this request's CSP nonce on its scripts.
export const dynamic = 'force-dynamic';

export default async function RootLayout({ children }: { children: ReactNode }) {
  // Reading the request headers keeps rendering dynamic (the nonce comes from src/proxy.ts).
  const nonce = (await headers()).get('x-nonce') ?? undefined;
  return (
    <html lang="en">
      <body>
        <NonceProvider nonce={nonce}>
          <Providers>{children}</Providers>
        </NonceProvider>
      </body>
    </html>
  );
}
