/**
 * `node --import tsx bench/src/analyze-profile.ts <file.cpuprofile> [top]`: the overhead benchmark's
 * profile summary (whole profile, no time window) for a .cpuprofile of the server, e.g. the one it
 * keeps in bench/profiles/.
 */
import { analyzeProfile } from './lib/profile';
import { REPO_ROOT } from './lib/services';

const [file, top] = process.argv.slice(2);
if (!file) {
  console.error('usage: node --import tsx bench/src/analyze-profile.ts <file.cpuprofile> [top]');
  process.exit(2);
}
const r = analyzeProfile(file, REPO_ROOT, null, Number(top ?? 20));
console.log(`busy ${r.busyMs.toFixed(0)} ms of ${r.windowMs.toFixed(0)} ms (idle ${r.idlePct}%)\n`);
console.log('package: self / self + built-ins / inclusive');
for (const c of r.attributed) {
  const self = r.categories.find((x) => x.category === c.category)?.pct ?? 0;
  const incl = r.inclusive.find((x) => x.category === c.category)?.pct;
  console.log(
    `  ${c.category.padEnd(28)} ${String(self).padStart(5)}% ${String(c.pct).padStart(5)}% ${incl === undefined ? '' : `${incl}%`}`,
  );
}
console.log('\nours by total (self / total):');
for (const f of r.oursByTotal) console.log(`  ${f.selfPct}% / ${f.totalPct}%  ${f.name}  ${f.where}`);
console.log('\ntop self:');
for (const f of r.topSelf) console.log(`  ${f.selfPct}%  ${f.name}  ${f.where}  [${f.category}]`);
