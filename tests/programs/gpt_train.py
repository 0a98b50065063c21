"""A small GPT trained the way nanoGPT-style scripts train one, written against PyTorch.

The test suite runs this file twice, as written and with only its import lines switched to
numformer, from the same initial weights (``--save_init`` in one run, ``--load_init`` in the
other) and the same batches (drawn with NumPy), and compares the losses step by step. It also
runs it under ``mpiexec -n 2`` (DistributedDataParallel, each rank its half of every batch).

What it exercises: a Module tree with weight tying and ``apply`` init, fused attention,
parameter groups with and without weight decay, AdamW, a disabled GradScaler, autocast as a
null context on the CPU, ``torch.compile``, a warm-up + cosine schedule set by hand, gradient
accumulation and clipping, evaluation under ``no_grad``, a checkpoint of model, optimizer,
step and config that a second run resumes from, and top-k sampling with ``multinomial``.
"""

import argparse
import inspect
import json
import math
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.distributed import destroy_process_group, init_process_group
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass
class Config:
    vocab_size: int = 17
    block_size: int = 16
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 24
    dropout: float = 0.0
    bias: bool = True


class SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.n_head, self.dropout = cfg.n_head, cfg.dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=p, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.tok.weight = self.head.weight  # tied
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("mlp.2.weight") or name.endswith("attn.proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def _init(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if targets is None:
            return self.head(x[:, [-1], :]), None
        logits = self.head(x)
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)

    def configure_optimizers(self, weight_decay, lr, betas, device_type):
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        groups = [
            {"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0},
        ]
        available = "fused" in inspect.signature(torch.optim.AdamW).parameters
        extra = dict(fused=device_type == "cuda") if available else dict()
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **extra)

    @torch.no_grad()
    def generate(self, idx, new_tokens, temperature=1.0, top_k=None):
        for _ in range(new_tokens):
            context = idx if idx.size(1) <= self.cfg.block_size else idx[:, -self.cfg.block_size :]
            logits, _ = self(context)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("Inf")
            probs = F.softmax(logits, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
        return idx


def lr_at(it, args):
    if it < args.warmup:
        return args.lr * (it + 1) / (args.warmup + 1)
    ratio = min(1.0, (it - args.warmup) / max(1, args.iters - args.warmup))
    return args.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (args.lr - args.min_lr)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="global batch (all ranks together)")
    parser.add_argument("--accum", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--min_lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--eval_every", type=int, default=4)
    parser.add_argument("--out", default="out", help="checkpoint folder")
    parser.add_argument("--log", default="log.json", help="per-step losses (and the sample beside them)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--save_init", default="")
    parser.add_argument("--load_init", default="")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--sample", type=int, default=0, help="tokens to sample at the end")
    parser.add_argument("--top_k", type=int, default=None)
    args = parser.parse_args()

    ddp = int(os.environ.get("RANK", -1)) != -1
    if ddp:
        init_process_group(backend="gloo")
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank, world = 0, 1
    device = "cpu"
    device_type = "cuda" if "cuda" in device else "cpu"
    torch.manual_seed(1337)
    ctx = nullcontext() if device_type == "cpu" else torch.amp.autocast(device_type=device_type, dtype=torch.bfloat16)

    cfg = Config()
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, 2000)
    draws = np.random.default_rng(1)  # every rank draws every global batch, then takes its share

    def get_batch(rng, rows):
        ix = rng.integers(0, len(data) - cfg.block_size - 1, rows)
        x = torch.from_numpy(np.stack([data[i : i + cfg.block_size] for i in ix]).astype(np.int64))
        y = torch.from_numpy(np.stack([data[i + 1 : i + 1 + cfg.block_size] for i in ix]).astype(np.int64))
        share = rows // world
        return x[rank * share : (rank + 1) * share].to(device), y[rank * share : (rank + 1) * share].to(device)

    model = GPT(cfg)
    if args.save_init and rank == 0:
        torch.save(model.state_dict(), args.save_init)
    if args.load_init:
        model.load_state_dict(torch.load(args.load_init))
    model.to(device)
    optimizer = model.configure_optimizers(0.1, args.lr, (0.9, 0.95), device_type)
    scaler = torch.amp.GradScaler(device_type, enabled=False)
    start, best_val = 0, 1e9
    if args.resume:
        ckpt = torch.load(os.path.join(args.out, "ckpt.pt"), map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, best_val = ckpt["iter"], ckpt["best_val"]
        draws.bit_generator.state = ckpt["draws"]
    raw = model
    if args.compile:
        model = torch.compile(model)
    if ddp:
        model = DDP(model)

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        fixed = np.random.default_rng(2)
        losses = torch.zeros(2)
        for k in range(2):
            x, y = get_batch(fixed, args.batch)
            with ctx:
                _, loss = model(x, y)
            losses[k] = loss.item()
        model.train()
        return losses.mean()

    log = []
    draws_before = draws.bit_generator.state
    x, y = get_batch(draws, args.batch)
    for it in range(start, args.iters):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it, args)
        if it % args.eval_every == 0 and it > start:
            val = estimate_loss()
            if val < best_val and rank == 0:
                best_val = val.item()
                os.makedirs(args.out, exist_ok=True)
                state = {"model": raw.state_dict(), "optimizer": optimizer.state_dict(), "iter": it}
                # the draws as they were before this step's batch, which a resumed run draws again
                state.update(best_val=best_val, config=asdict(cfg), draws=draws_before)
                torch.save(state, os.path.join(args.out, "ckpt.pt"))
        total = 0.0
        for micro in range(args.accum):
            if ddp:
                model.require_backward_grad_sync = micro == args.accum - 1
            with ctx:
                _, loss = model(x, y)
                loss = loss / args.accum
            draws_before = draws.bit_generator.state
            x, y = get_batch(draws, args.batch)
            scaler.scale(loss).backward()
            total += loss.item()
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if ddp:
            mean = torch.tensor([total])
            torch.distributed.all_reduce(mean, op=torch.distributed.ReduceOp.AVG)
            total = mean.item()
        log.append({"iter": it, "loss": total, "norm": float(norm)})
    if rank == 0:
        with open(args.log, "w") as f:
            json.dump(log, f)
    if args.sample and rank == 0:
        raw.eval()
        prompt = torch.tensor([[1, 2, 3]], dtype=torch.long, device=device)
        with torch.no_grad(), ctx:
            tokens = raw.generate(prompt, args.sample, temperature=0.8, top_k=args.top_k)
        with open(args.log.replace(".json", ".sample.json"), "w") as f:
            json.dump(tokens[0].tolist(), f)
    if ddp:
        destroy_process_group()


if __name__ == "__main__":
    main()
