// A loss-curve picture (SVG) from the JSON-lines log, written next to the weights, for headless use (the
// dashboard's charts draw on a canvas in the browser, so they cannot write this file). Both read the log
// through train/run_log.ts.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';
import { parseLines, isStep } from './run_log.js';

export function plotLoss(logFile: string, svgPath: string, title: string): void {
  const rows = parseLines(readFileSync(logFile, 'utf8')).records.filter(isStep);
  const ys = rows.map((r) => r.loss).filter((v): v is number => Number.isFinite(v));
  if (ys.length < 2) return;
  const W = 640, H = 360, pad = 48;
  const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
  const x = (i: number) => pad + ((W - 2 * pad) * i) / (ys.length - 1);
  const y = (v: number) => H - pad - ((H - 2 * pad) * (v - lo)) / span;
  const path = ys.map((v, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle">${title}</text>
<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="black"/>
<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="black"/>
<text x="${pad - 4}" y="${y(hi) + 4}" text-anchor="end">${hi.toFixed(2)}</text>
<text x="${pad - 4}" y="${y(lo) + 4}" text-anchor="end">${lo.toFixed(2)}</text>
<text x="${W / 2}" y="${H - 12}" text-anchor="middle">logged step (${ys.length} points, ${rows.at(-1)!.elapsed_s.toFixed(0)} s)</text>
<path d="${path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>
</svg>\n`;
  writeFileAtomic(svgPath, svg);
}
