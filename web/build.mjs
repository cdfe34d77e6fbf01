// Bundle the page into ../sinks/static/ (committed: the API serves it without Node).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

const out = new URL('../sinks/static/', import.meta.url);
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ['src/main.js'],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome110', 'firefox110', 'safari16'],
  outfile: new URL('app.js', out).pathname,
  legalComments: 'linked',
  logLevel: 'info',
});
for (const f of ['index.html', 'style.css']) copyFileSync(`src/${f}`, new URL(f, out));
