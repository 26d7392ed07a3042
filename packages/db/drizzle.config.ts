import { defineConfig } from 'drizzle-kit';

// `npm run db:generate -w @studio/db -- --name <what-changed>` writes the next migration from src/schema.ts.
// No database is needed to generate; the API applies the migrations itself at start-up (src/migrate.ts).
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/schema.ts',
  out: './drizzle',
  strict: true,
});
