// Command-line flags: MiniMind's SFT/pretrain flags with the same names and defaults (spec §8),
// plus this project's own. One table drives parsing (model/cli_flags.ts), validation and --help.
import { parseFlags, flagHelp, type FlagSpec, type FlagTable, type Parsed } from '../model/cli_flags.js';
export interface TrainArgs {
  save_dir: string; save_weight: string; epochs: number; batch_size: number; learning_rate: number;
  device: string; dtype: string; num_workers: number; accumulation_steps: number; grad_clip: number;
  log_interval: number; save_interval: number; hidden_size: number; num_hidden_layers: number;
  max_seq_len: number; use_moe: number; data_path: string; from_weight: string; from_resume: number;
  use_wandb: boolean; wandb_project: string; use_compile: number;
  tokenizer_path: string; config: string; preset: string; seed: number; log_file: string;
  checkpoint_dir: string; skip_bad_lines: boolean; max_bad_steps: number; max_steps: number; samples: number;
  augment: number; nproc_per_node: number; ddp_timeout: number; dashboard: string; dashboard_host: string;
}


/** Defaults of MiniMind's train_full_sft.py; `pretrain` overrides a few (see PRETRAIN_DEFAULTS). */
export const FLAGS: Record<keyof TrainArgs, FlagSpec> = {
  save_dir: { kind: 'string', def: '../out', help: 'where weights are saved' },
  save_weight: { kind: 'string', def: 'full_sft', help: 'weight file prefix: {save_dir}/{save_weight}_{hidden}[_moe].pth' },
  epochs: { kind: 'number', def: 2, help: 'epochs' },
  batch_size: { kind: 'number', def: 16, help: 'sequences per micro-batch' },
  learning_rate: { kind: 'number', def: 1e-6, help: 'base learning rate (cosine from base to base/10)' },
  device: { kind: 'string', def: 'webgpu', help: 'accepted for compatibility; the adapter is chosen with MINIMIND_ADAPTER' },
  dtype: { kind: 'string', def: 'bfloat16', help: 'float32 | bfloat16 | float16: mixed precision as torch.autocast gives it to MiniMind (16-bit Linears, attention, SwiGLU, logits and residual stream, float32 sums, softmax, norms, loss, master weights and AdamW: README "--dtype"); float16 adds GradScaler\'s dynamic loss scaling' },
  num_workers: { kind: 'number', def: 8, help: 'tokenizer worker threads that run ahead of the GPU (0 = inline)' },
  accumulation_steps: { kind: 'number', def: 1, help: 'micro-batches per optimizer step' },
  grad_clip: { kind: 'number', def: 1.0, help: 'clip the global gradient L2 norm to this' },
  log_interval: { kind: 'number', def: 100, help: 'log every N steps (and at the last)' },
  save_interval: { kind: 'number', def: 1000, help: 'save weights and a resume checkpoint every N steps (and at the end)' },
  hidden_size: { kind: 'number', def: 512, help: 'hidden size (MiniMind2 config)' },
  num_hidden_layers: { kind: 'number', def: 8, help: 'layers (MiniMind2 config)' },
  max_seq_len: { kind: 'number', def: 340, help: 'tokens per sequence (truncate / right-pad)' },
  use_moe: { kind: 'number', def: 0, help: '1 = MiniMind2 MoE feed-forward' },
  data_path: { kind: 'string', def: '../dataset/sft_512.jsonl', help: 'JSONL training data' },
  from_weight: { kind: 'string', def: 'pretrain', help: "'none', a name ({save_dir}/{name}_{hidden}[_moe].pth) or a .pth/.safetensors path" },
  from_resume: { kind: 'number', def: 0, help: "1 = continue from {checkpoint_dir}/{save_weight}_{hidden}[_moe]_resume.pth, MiniMind's resume format (written by MiniMind's trainer or ours)" },
  use_wandb: { kind: 'switch', def: false, help: 'no wandb/swanlab here: the metrics go to --log_file as JSON lines (next to the weights unless given)' },
  wandb_project: { kind: 'string', def: 'MiniMind-Full-SFT', help: 'accepted for compatibility (no wandb/swanlab here)' },
  use_compile: { kind: 'number', def: 0, help: 'accepted; not needed (each WGSL kernel is compiled once, on first use)' },
  tokenizer_path: { kind: 'string', def: '../model', help: "directory with tokenizer.json + tokenizer_config.json (MiniMind's trainers load '../model')" },
  config: { kind: 'string', def: '', help: 'MiniMind/HF config.json (overrides --hidden_size etc.)' },
  preset: { kind: 'string', def: '', help: 'minimind2-small | minimind2 | minimind2-moe | minimind3 | minimind3-moe | tiny; --hidden_size, --num_hidden_layers, --use_moe given change it' },
  seed: { kind: 'number', def: 42, help: 'seed for initialisation and data order (epoch e uses seed + e)' },
  log_file: { kind: 'string', def: '', help: 'JSON lines: one object per logged step' },
  checkpoint_dir: { kind: 'string', def: '../checkpoints', help: "where the resume checkpoint is saved and read (MiniMind's trainers use ../checkpoints)" },
  skip_bad_lines: { kind: 'switch', def: false, help: 'count and skip malformed data lines instead of stopping' },
  max_bad_steps: { kind: 'number', def: 5, help: 'stop after this many NaN/inf losses in a row' },
  max_steps: { kind: 'number', def: 0, help: 'stop after this many steps of this run (0 = all), at an optimizer boundary, saving as Ctrl-C does; the LR schedule still spans --epochs' },
  samples: { kind: 'number', def: -1, help: 'sample answers printed before and after training (-1 = 3 for the built-in run, else 0)' },
  augment: { kind: 'number', def: 1, help: "SFT: MiniMind's augmentation (a random system prompt for 20% of the samples that have none, "
    + 'empty think blocks stripped from 80%), drawn from (seed, epoch, sample) so a resume sees the same samples; 0 = off' },
  nproc_per_node: { kind: 'number', def: 0, help: "torchrun's flag: N data-parallel ranks, one WebGPU device each, as threads of this process "
    + '(MINIMIND_ADAPTER=a,b,… names one adapter per rank; one name, or none, puts every rank on the same adapter); '
    + "the data order is then DistributedSampler's (seed 0 + epoch), as under torchrun, even for N = 1; 0 = one process, no DDP" },
  ddp_timeout: { kind: 'number', def: 1800, help: 'seconds a rank waits for the others at an exchange before it stops naming the rank that did not arrive (torch: 30 min)' },
  dashboard: { kind: 'string', def: '', bare: '6006', help: 'serve the live training dashboard (train/dashboard.ts) on this port while the run lasts (0 = any free port); '
    + 'the metrics go to --log_file, next to the weights unless given' },
  dashboard_host: { kind: 'string', def: '127.0.0.1', help: 'address the dashboard binds (0.0.0.0 shows the run to the whole network)' },
};

/** What train_pretrain.py (MiniMind2) sets apart from train_full_sft.py; no augmentation (MiniMind's
 *  PretrainDataset has none). */
export const PRETRAIN_DEFAULTS: Partial<Record<keyof TrainArgs, string | number>> = {
  save_weight: 'pretrain', epochs: 1, batch_size: 32, learning_rate: 5e-4, accumulation_steps: 8,
  data_path: '../dataset/pretrain_hq.jsonl', from_weight: 'none', wandb_project: 'MiniMind-Pretrain', augment: 0,
};

const given = new WeakMap<TrainArgs, Set<string>>();

/** Whether `--key` was on the command line (not a default, nor a built-in run's setting). */
export function wasGiven(args: TrainArgs, key: string): boolean {
  return given.get(args)?.has(key) ?? false;
}

/** `extra`: flags of one trainer only (DPO's --beta, LoRA's --lora_name), parsed and listed in --help with the
 *  others; `drop`: shared flags that trainer has not (LoRA names its files with --lora_name, not --save_weight). */
export function parseArgs<E extends FlagTable = Record<never, FlagSpec>>(argv: string[], overrides: Partial<Record<string, string | number | boolean>> = {},
  usage = '', extra?: E, drop: (keyof TrainArgs)[] = []): TrainArgs & Parsed<E>['values'] {
  // The table with the caller's defaults (a built-in run's settings, pretrain's), so --help shows them.
  const all: FlagTable = { ...Object.fromEntries(Object.entries(FLAGS).filter(([k]) => !drop.includes(k as keyof TrainArgs))), ...extra };
  const table = Object.fromEntries(Object.entries(all).map(([k, f]) => [k, { ...f, def: overrides[k] ?? f.def }])) as FlagTable;
  const p = parseFlags(table, argv);
  if (p.help) {
    console.log(flagHelp(usage, table));
    process.exit(0);
  }
  const args = p.values as unknown as TrainArgs & Parsed<E>['values'];
  given.set(args, p.given);
  for (const k of ['epochs', 'batch_size', 'accumulation_steps', 'log_interval', 'save_interval', 'max_seq_len'] as const) {
    if (!Number.isInteger(args[k]) || args[k] < 1) throw new Error(`--${k} must be a positive integer, got ${args[k]}`);
  }
  if (args.augment !== 0 && args.augment !== 1) throw new Error(`--augment must be 0 or 1, got ${args.augment}`);
  if (!(Number.isInteger(args.nproc_per_node) && args.nproc_per_node >= 0)) {
    throw new Error(`--nproc_per_node must be an integer ≥ 0, got ${args.nproc_per_node}`);
  }
  if (!(args.ddp_timeout > 0)) throw new Error(`--ddp_timeout must be a positive number of seconds, got ${args.ddp_timeout}`);
  if (args.dashboard !== '' && !(/^\d+$/.test(args.dashboard) && Number(args.dashboard) <= 65535)) {
    throw new Error(`--dashboard must be a port number from 0 to 65535 (0 = any free port), got '${args.dashboard}'`);
  }
  return args;
}
