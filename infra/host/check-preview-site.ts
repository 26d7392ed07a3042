// Used by setup-host.sh: exits 1 with the reason when previews on *.<preview domain> would share a site with the
// IDE (the rule of @studio/policy, on the Public Suffix List; the API checks the same at start-up).
//   tsx check-preview-site.ts PREVIEW_DOMAIN IDE_HOST
import { previewSiteProblem } from '@studio/policy';

const [previewDomain, ideHost] = process.argv.slice(2);
if (!previewDomain || !ideHost) {
  process.stderr.write('usage: check-preview-site.ts PREVIEW_DOMAIN IDE_HOST\n');
  process.exit(2);
}
const problem = previewSiteProblem(previewDomain, [ideHost]);
if (problem !== null) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
