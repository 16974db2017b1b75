// Trainer flags: train_pretrain.py's defaults where they differ from SFT's, --augment, and the one line
// each for MiniMind's flags that do something else here (printed only when given).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { resolve } from 'node:path';
import { parseArgs, PRETRAIN_DEFAULTS } from '../train/args.js';
import { flagNotes, type RunFacts } from '../train/compat.js';
import { adapterList, refuseTorchrun } from '../train/ddp.js';

const s = suite('train_args');

s('pretrain takes MiniMind2 train_pretrain.py\'s defaults; SFT keeps train_full_sft.py\'s', () => {
  const pick = (a: ReturnType<typeof parseArgs>) => [a.save_weight, a.epochs, a.batch_size, a.learning_rate, a.accumulation_steps,
    a.max_seq_len, a.hidden_size, a.data_path, a.from_weight, a.wandb_project, a.augment];
  assert.equal(pick(parseArgs([], PRETRAIN_DEFAULTS)),
    ['pretrain', 1, 32, 5e-4, 8, 340, 512, '../dataset/pretrain_hq.jsonl', 'none', 'MiniMind-Pretrain', 0]);
  assert.equal(pick(parseArgs([])), ['full_sft', 2, 16, 1e-6, 1, 340, 512, '../dataset/sft_512.jsonl', 'pretrain', 'MiniMind-Full-SFT', 1]);
  assert.is(parseArgs(['--accumulation_steps', '2'], PRETRAIN_DEFAULTS).accumulation_steps, 2);
});

s('--augment is on for SFT by default, 0 turns it off, anything else is refused', () => {
  assert.is(parseArgs([]).augment, 1);
  assert.is(parseArgs(['--augment', '0']).augment, 0);
  assert.throws(() => parseArgs(['--augment', '2']), /--augment must be 0 or 1, got 2/);
});

const facts: RunFacts = { mode: 'sft', adapter: 'mesa / cpu / llvmpipe', adapterEnv: undefined, workers: 1 };

s('MiniMind flags that do nothing here say so in one line each, only when given', () => {
  assert.equal(flagNotes(parseArgs([]), facts), [], 'defaults print nothing');
  const notes = flagNotes(parseArgs(['--device', 'cuda:0', '--use_wandb', '--use_compile', '1', '--num_workers', '8', '--log_file', 'l.jsonl']), facts);
  assert.is(notes.length, 4);
  assert.match(notes[0], /^--device cuda:0: not used; the WebGPU adapter is chosen with MINIMIND_ADAPTER \(not set\), and this run uses mesa \/ cpu \/ llvmpipe$/);
  assert.is(notes[1], `--use_wandb: no wandb/swanlab here; the run's metrics go to --log_file as JSON lines: ${resolve('l.jsonl')}; `
    + 'add --dashboard [PORT] to watch them live in a browser, as wandb does');
  assert.match(flagNotes(parseArgs(['--use_wandb', '--dashboard']), facts)[0], /; the dashboard shows them live$/);
  assert.match(notes[2], /^--use_compile 1: nothing to compile here/);
  assert.match(notes[3], /^--num_workers 8: 1 loader thread \(capped/);
  assert.match(flagNotes(parseArgs(['--device', 'x']), { ...facts, adapterEnv: 'nvidia' })[0], /\(set to 'nvidia'\)/);
  assert.equal(flagNotes(parseArgs(['--num_workers', '1']), facts), [], 'a worker count that is not capped works as asked');
  assert.match(flagNotes(parseArgs(['--wandb_project', 'p']), facts)[0], /^--wandb_project p: not used .*pass --log_file/);
  assert.match(flagNotes(parseArgs(['--augment', '1'], PRETRAIN_DEFAULTS), { ...facts, mode: 'pretrain' })[0], /^--augment 1: not used; MiniMind augments SFT data only/);
  assert.equal(flagNotes(parseArgs(['--augment', '0']), facts), []);
  const ddp = flagNotes(parseArgs(['--nproc_per_node', '2', '--seed', '3', '--num_workers', '8']), facts);
  assert.match(ddp[0], /^--num_workers 8: 1 loader thread per rank \(capped at the CPU cores per rank \(2 ranks\) less one/);
  assert.match(ddp[1], /^--seed 3: sets the initialisation; with --nproc_per_node the data order is DistributedSampler's \(seed 0 \+ epoch\)/);
  assert.equal(flagNotes(parseArgs(['--seed', '3']), facts), [], 'one process: --seed orders the data too');
});

s('--nproc_per_node and --ddp_timeout are checked; torchrun\'s environment is refused with what to run instead', () => {
  assert.is(parseArgs([]).nproc_per_node, 0);
  assert.throws(() => parseArgs(['--nproc_per_node', '1.5']), /--nproc_per_node must be an integer ≥ 0, got 1.5/);
  assert.throws(() => parseArgs(['--ddp_timeout', '0']), /--ddp_timeout must be a positive number of seconds, got 0/);
  refuseTorchrun({});
  refuseTorchrun({ RANK: '-1' });
  assert.throws(() => refuseTorchrun({ RANK: '0', WORLD_SIZE: '4' }), /RANK=0 and WORLD_SIZE=4 are set .* train\/sft\.ts --nproc_per_node 4/);
  assert.equal(adapterList(undefined, 2), [undefined, undefined]);
  assert.equal(adapterList('nvidia', 2), ['nvidia', 'nvidia']);
  assert.equal(adapterList('nvidia, amd', 2), ['nvidia', 'amd']);
  assert.throws(() => adapterList('a,b,c', 2), /MINIMIND_ADAPTER names 3 adapters \(a, b, c\) for --nproc_per_node 2/);
  assert.throws(() => refuseTorchrun({ RANK: '1', WORLD_SIZE: '2' }, 'train/dpo.ts'), /npx tsx train\/dpo\.ts --nproc_per_node 2/);
  assert.throws(() => parseArgs(['--nproc_per_node', '-1']), /--nproc_per_node must be an integer ≥ 0, got -1/);
});

s('--dashboard takes a port or none (then 6006), before another flag or last; anything else is refused', () => {
  assert.is(parseArgs([]).dashboard, '', 'off by default');
  assert.is(parseArgs(['--dashboard']).dashboard, '6006');
  assert.is(parseArgs(['--dashboard', '--epochs', '3']).dashboard, '6006');
  assert.is(parseArgs(['--dashboard', '0', '--epochs', '3']).dashboard, '0');
  assert.is(parseArgs(['--dashboard=8080']).dashboard, '8080');
  assert.throws(() => parseArgs(['--dashboard', 'x']), /--dashboard must be a port number from 0 to 65535 \(0 = any free port\), got 'x'/);
  assert.throws(() => parseArgs(['--dashboard', '70000']), /got '70000'/);
});

s.run();
