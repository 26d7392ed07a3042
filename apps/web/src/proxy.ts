import { securityHeaders } from '@studio/policy/html';
import { type NextRequest, NextResponse } from 'next/server';
import { loadWebEnv } from './env';

/**
 * Every page gets a fresh CSP nonce and the policy package's security headers. Next reads the nonce from the
 * request's Content-Security-Policy header and puts it on its own scripts; pages render dynamically.
 */
export function proxy(request: NextRequest) {
  const bytes = new Uint8Array(18);
  crypto.getRandomValues(bytes);
  const nonce = btoa(String.fromCharCode(...bytes));
  const headers = securityHeaders({ nonce, frameSrc: [loadWebEnv().previewOrigin] });
  const csp = headers['Content-Security-Policy'] as string;
  const requestHeaders = new Headers(request.headers);
  requestHeaders.set('x-nonce', nonce);
  requestHeaders.set('Content-Security-Policy', csp);
  const response = NextResponse.next({ request: { headers: requestHeaders } });
  for (const [name, value] of Object.entries(headers)) response.headers.set(name, value);
  return response;
}

export const config = {
  matcher: [{ source: '/((?!_next/static|_next/image|favicon.ico).*)' }],
};
