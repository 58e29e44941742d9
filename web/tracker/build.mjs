// Build dist/funnelhub.js (embedded in the funnelhub binary) from src/funnelhub.js and
// print its size. `--check`: build in memory and fail unless dist/ holds exactly that.
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const OUT = new URL('./dist/funnelhub.js', import.meta.url);
const MAX_GZIP_BYTES = 5 * 1024;

const result = await build({
  entryPoints: [new URL('./src/funnelhub.js', import.meta.url).pathname],
  bundle: false,
  minify: true,
  target: 'es2018',
  format: 'iife',
  legalComments: 'none',
  write: false,
});
const built = Buffer.from(result.outputFiles[0].contents);
const gzip = gzipSync(built, { level: 9 }).length;
console.log(`funnelhub.js: ${built.length} bytes, ${gzip} bytes gzipped (limit ${MAX_GZIP_BYTES})`);
if (gzip > MAX_GZIP_BYTES) {
  console.error('over the size limit');
  process.exit(1);
}
if (process.argv.includes('--check')) {
  const committed = readFileSync(OUT);
  if (!committed.equals(built)) {
    console.error('dist/funnelhub.js is not what src/funnelhub.js builds: run `npm run build` in web/tracker');
    process.exit(1);
  }
  console.log('dist/funnelhub.js is what the source builds');
} else {
  writeFileSync(OUT, built);
}
