// How a row op spreads rows over invocations, shared by the row ops' variants (rmsnorm,
// add_rmsnorm, cross_entropy): 'lane', one invocation per row (CPU adapters: a lane streams its row
// at copy speed; a workgroup per row with a barrier tree ran 5–10× slower on lavapipe,
// LAVAPIPE-NOTES.md), or 'wg', a workgroup of wg lanes per row striding over it, reduced with
// subgroups where `sub` (GPUs: coalesced loads and enough rows in flight; 5440 rows in the lane
// layout are 85 workgroups of 64, a fraction of one wave on a discrete GPU).
import { gpu } from '../runtime/device.js';

export interface RowLayout { rows: 'lane' | 'wg'; wg: number; sub: boolean }

export const LANE: RowLayout = { rows: 'lane', wg: 64, sub: false };
export const wgRow = (wg: number, sub: boolean): RowLayout => ({ rows: 'wg', wg, sub });

/** Invocations per workgroup (the lane layout's workgroups hold `lane` rows). */
export const rowSize = (v: RowLayout, lane = 64) => (v.rows === 'wg' ? v.wg : lane);
export const rowEnable = (v: RowLayout) => (v.rows === 'wg' && v.sub ? ['subgroups'] : []);
export const rowLabel = (v: RowLayout) => (v.rows === 'lane' ? 'lane' : `wg${v.wg}${v.sub ? ' sub' : ''}`);

/** Subgroup reductions need whole subgroups per workgroup: wg ≥ the adapter's largest subgroup. */
export function subgroupsFit(wg: number): boolean {
  const { features, adapter } = gpu();
  const max = (adapter.info as GPUAdapterInfo & { subgroupMaxSize?: number }).subgroupMaxSize ?? 128;
  return features.has('subgroups') && wg >= max;
}

/** Every layout that runs here (the tests force each). */
export function rowLayouts(): RowLayout[] {
  return [LANE, ...[64, 128, 256].flatMap((wg) => [wgRow(wg, false), ...(subgroupsFit(wg) ? [wgRow(wg, true)] : [])])];
}

/** Layouts to time: on a CPU adapter the lane layout and one workgroup layout (to confirm the lane
 *  one wins there); on a GPU workgroups of 64–256 lanes, with subgroup sums where they fit. */
export function rowCandidates(): RowLayout[] {
  if (gpu().isSoftware) return [LANE, wgRow(128, subgroupsFit(128))];
  return [LANE, ...[64, 128, 256].map((wg) => wgRow(wg, subgroupsFit(wg))), wgRow(128, false)];
}
