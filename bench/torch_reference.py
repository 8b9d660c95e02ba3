#!/usr/bin/env python3
"""PyTorch + transformers reference for `arlas bench sample` and `arlas bench train`.

Same model (a Hugging Face-layout directory: config.json + *.safetensors), same shapes, same
threads, same accounting as arlas-policy's `bench.rs`, so the two can be compared line by line.
Prints one JSON object per run on stdout.

    sample  batch B random prompts of --prompt-len tokens (no end-of-sequence ids), sampled at
            temperature 1 with top-p 1 and no top-k (the full distribution), KV cache on,
            exactly --new-tokens each (min_new_tokens = max_new_tokens, so no early stop). Like
            arlas, the behaviour log-prob of every sampled token is computed on the fly (a
            log-softmax over the vocabulary per step). tokens/s = generated tokens / wall time
            of the whole `generate` call, prefill INCLUDED (arlas's definition); one 2-token
            warm-up call first.
    train   --batch random sequences of --seq-len tokens; the second half is the scored
            completion. One GRPO step = for each micro-batch: policy forward (LM head only on
            the scored positions, like arlas), log-probs and entropies, frozen reference
            forward (k3 KL, coefficient 0.05) unless --no-reference, DAPO-style clipped ratio
            loss (clip 0.1 / 0.3) against behaviour log-probs scored once before timing,
            advantages +1/-1 alternating, token-mean loss over the step, backward; then global
            grad-norm clipping to 1.0 and AdamW (lr 1e-5, betas 0.9/0.999, eps 1e-8, no decay).
            tokens/s = batch x seq_len x steps / wall time of the timed steps (one warm-up step).

MFU uses the same FLOP model as arlas (`policy/src/bench.rs`): forward = 2 x matmul parameters +
4 x layers x context x heads x head_dim per token, training = 3 x forward (+1 x forward for the
reference), against the best matmul this process measures in the run's dtype (1024x1024 on the
CPU, 8192x8192 on a GPU).

--device cuda --dtype bf16 runs the same shapes on a GPU with arlas's precision choices: sampling
with the model's weights in bf16 (log-softmax of the logits in f32); training with f32 weights
(AdamW's master copy) under torch.autocast(bf16), log-probs in f32, the frozen reference model in
bf16. Times are taken between torch.cuda.synchronize() calls. On a machine without the gguf
package, write the Hugging Face directory with `arlas model export --model smollm2 --out DIR`.

    bench/.venv/bin/python bench/torch_reference.py sample --model models/tiny-2m --batch 8
    bench/.venv/bin/python bench/torch_reference.py train --model models/tiny-2m --batch 8
    bench/.venv/bin/python bench/torch_reference.py export-gguf \
        --gguf models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-hf
    python3 bench/torch_reference.py sample --model smollm2-hf --device cuda --dtype bf16 --batch 32
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, GenerationConfig, LogitsProcessor, LogitsProcessorList

CLIP_LOW = 0.1
CLIP_HIGH = 0.3
KL_COEF = 0.05
MAX_GRAD_NORM = 1.0


# ---------------------------------------------------------------- FLOP model (as bench.rs)


def head_width(cfg) -> int:
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def num_parameters(cfg) -> int:
    """`LlamaConfig::num_parameters` of arlas (tied head counted once, no q/k/v bias)."""
    h, hd = cfg.hidden_size, head_width(cfg)
    q = cfg.num_attention_heads * hd
    kv = (cfg.num_key_value_heads or cfg.num_attention_heads) * hd
    bias = q + 2 * kv if getattr(cfg, "attention_bias", False) else 0
    mlp_bias = 2 * cfg.intermediate_size + h if getattr(cfg, "mlp_bias", False) else 0
    layer = h * q + 2 * h * kv + q * h + bias + 3 * h * cfg.intermediate_size + mlp_bias + 2 * h
    embed = cfg.vocab_size * h
    head = 0 if cfg.tie_word_embeddings else embed
    return embed + head + cfg.num_hidden_layers * layer + h


def matmul_parameters(cfg) -> int:
    lookup_only = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size
    return num_parameters(cfg) - lookup_only


def forward_flops_per_token(cfg, context: int) -> float:
    dense = 2.0 * matmul_parameters(cfg)
    attention = 4.0 * cfg.num_hidden_layers * context * cfg.num_attention_heads * head_width(cfg)
    return dense + attention


DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def sync(device: str) -> None:
    """Waits for the GPU's queued work, so that wall clocks measure it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def measure_matmul_peak(device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    n = 1024 if device == "cpu" else 8192
    a = torch.ones(n, n, device=device, dtype=dtype)
    b = torch.ones(n, n, device=device, dtype=dtype)
    best = 0.0
    for round_ in range(6):  # one warm-up, then the fastest of five
        sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        seconds = time.perf_counter() - start
        if round_ > 0:
            best = max(best, 2.0 * n**3 / seconds)
    return best


def autocast(args):
    """bf16 compute over f32 weights (the training side of --dtype bf16), else nothing."""
    if args.dtype == "f32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=args.device.split(":")[0], dtype=DTYPES[args.dtype])


# ---------------------------------------------------------------- model and inputs


def load_model(path: str, attn: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
    if not os.path.isfile(os.path.join(path, "config.json")):
        sys.exit(
            f"error: {path} has no config.json: give a Hugging Face-layout model directory "
            "(for tiny: `arlas model build-tiny`; for smollm2: `arlas model export --model smollm2` "
            "or `torch_reference.py export-gguf`)"
        )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
    return model.to(device)


def eos_ids(cfg) -> set[int]:
    eos = cfg.eos_token_id
    if eos is None:
        return set()
    return set(eos) if isinstance(eos, (list, tuple)) else {eos}


def random_tokens(cfg, rows: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform random ids that are not end-of-sequence ids (as arlas's `random_tokens`)."""
    ids = torch.randint(0, cfg.vocab_size, (rows, length), generator=generator)
    for eos in eos_ids(cfg):
        while bool((ids == eos).any()):
            redraw = torch.randint(0, cfg.vocab_size, ids.shape, generator=generator)
            ids = torch.where(ids == eos, redraw, ids)
    return ids


def common_fields(args, model) -> dict:
    return {
        "framework": "torch",
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None,
        "threads": torch.get_num_threads(),
        "parameters": num_parameters(model.config),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attn_implementation": model.config._attn_implementation,
    }


# ---------------------------------------------------------------- sampling


class BehaviourLogprobs(LogitsProcessor):
    """Keeps the log-prob of each sampled token, streaming: the log-softmax of step t is
    gathered at step t+1, when the sampled token is known (arlas computes the same per step)."""

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.previous is not None:
            self.logprobs.append(self.previous.gather(1, input_ids[:, -1:]))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        if self.previous is not None:
            self.logprobs.append(self.previous.gather(1, sequences[:, -1:]))
        return torch.cat(self.logprobs, dim=1)


def sample_once(model, prompts: torch.Tensor, new_tokens: int, eos: int | None):
    config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=eos,
        eos_token_id=eos,
        use_cache=True,
    )
    behaviour = BehaviourLogprobs()
    out = model.generate(
        input_ids=prompts,
        attention_mask=torch.ones_like(prompts),
        generation_config=config,
        logits_processor=LogitsProcessorList([behaviour]),
    )
    logprobs = behaviour.finish(out)
    generated = out.shape[1] - prompts.shape[1]
    assert logprobs.shape == (prompts.shape[0], generated), logprobs.shape
    return prompts.shape[0] * generated


@torch.inference_mode()
def bench_sample(args, model=None) -> dict:
    if model is None:
        model = load_model(args.model, args.attn, args.device, DTYPES[args.dtype])
    model.eval()
    cfg = model.config
    generator = torch.Generator().manual_seed(args.seed)
    prompts = random_tokens(cfg, args.batch, args.prompt_len, generator).to(args.device)
    torch.manual_seed(args.seed)
    eos = min(eos_ids(cfg)) if eos_ids(cfg) else None
    sample_once(model, prompts, 2, eos)  # warm-up, as arlas (2 new tokens)
    times, generated = [], 0
    for _ in range(max(args.repeats, 1)):
        sync(args.device)
        start = time.perf_counter()
        generated += sample_once(model, prompts, args.new_tokens, eos)
        sync(args.device)
        times.append(time.perf_counter() - start)
    seconds = sum(times)
    repeats = len(times)
    prefill = args.batch * args.prompt_len * repeats * forward_flops_per_token(cfg, args.prompt_len // 2)
    decode = generated * forward_flops_per_token(cfg, args.prompt_len + args.new_tokens // 2)
    peak = measure_matmul_peak(args.device, DTYPES[args.dtype])
    flops_per_sec = (prefill + decode) / seconds
    per_repeat = args.batch * args.new_tokens
    return {
        "bench": "sample",
        **common_fields(args, model),
        "batch": args.batch,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "repeats": repeats,
        "seed": args.seed,
        "prefill_included": True,
        "generated_tokens": generated,
        "seconds": seconds,
        "tokens_per_sec": generated / seconds,
        "tokens_per_sec_median": per_repeat / statistics.median(times),
        "repeat_seconds": times,
        "flops_per_sec": flops_per_sec,
        "matmul_peak_flops_per_sec": peak,
        "mfu": flops_per_sec / peak,
    }


# ---------------------------------------------------------------- training


def scored_logprobs(model, ids: torch.Tensor, half: int):
    """Log-probs and entropies of the last `half` tokens; the LM head runs on those positions only."""
    logits = model(input_ids=ids, logits_to_keep=half + 1, use_cache=False).logits[:, :-1]
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, ids[:, -half:].unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def grpo_step(model, reference, optimizer, params, tokens, behaviour, advantages, micro, half, cast):
    optimizer.zero_grad(set_to_none=True)
    total = tokens.shape[0] * half
    loss_sum = 0.0
    for start in range(0, tokens.shape[0], micro):
        ids = tokens[start : start + micro]
        with cast():
            logp, _entropy = scored_logprobs(model, ids, half)
        ratio = torch.exp(logp - behaviour[start : start + micro])
        adv = advantages[start : start + micro].unsqueeze(1)
        objective = torch.minimum(ratio * adv, ratio.clamp(1.0 - CLIP_LOW, 1.0 + CLIP_HIGH) * adv)
        loss = -objective
        if reference is not None:
            with torch.no_grad(), cast():
                ref_logp, _ = scored_logprobs(reference, ids, half)
            diff = ref_logp - logp
            loss = loss + KL_COEF * (torch.exp(diff) - diff - 1.0)
        loss = loss.sum() / total
        loss.backward()
        loss_sum += float(loss.detach())
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM))
    optimizer.step()
    return loss_sum, grad_norm


def bench_train(args, model=None) -> dict:
    # f32 weights (the optimizer's), bf16 compute under autocast when --dtype bf16.
    if model is None:
        model = load_model(args.model, args.attn, args.device, torch.float32)
    cfg = model.config
    micro = args.micro_batch or args.batch
    half = args.seq_len // 2
    generator = torch.Generator().manual_seed(args.seed)
    tokens = random_tokens(cfg, args.batch, args.seq_len, generator).to(args.device)
    cast = lambda: autocast(args)  # noqa: E731
    reference = None
    if not args.no_reference:
        # Frozen, so stored in the compute dtype (as arlas stores a frozen copy).
        reference = copy.deepcopy(model).to(DTYPES[args.dtype]).eval().requires_grad_(False)
    model.eval()
    with torch.no_grad(), cast():
        behaviour = torch.cat(
            [scored_logprobs(model, tokens[s : s + micro], half)[0] for s in range(0, args.batch, micro)]
        )
    model.train()
    advantages = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(args.batch)], device=args.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    step_args = (model, reference, optimizer, params, tokens, behaviour, advantages, micro, half, cast)
    grpo_step(*step_args)  # warm-up step
    times = []
    for _ in range(args.steps):
        sync(args.device)
        start = time.perf_counter()
        loss, grad_norm = grpo_step(*step_args)
        sync(args.device)
        times.append(time.perf_counter() - start)
    seconds = sum(times)
    n_tokens = args.batch * args.seq_len * args.steps
    per_token = 3.0 * forward_flops_per_token(cfg, half)
    if reference is not None:
        per_token += forward_flops_per_token(cfg, half)
    flops_per_sec = n_tokens * per_token / seconds
    peak = measure_matmul_peak(args.device, DTYPES[args.dtype])
    return {
        "bench": "train",
        **common_fields(args, model),
        "trainable_parameters": sum(p.numel() for p in params),
        "batch": args.batch,
        "seq_len": args.seq_len,
        "micro_batch": micro,
        "steps": args.steps,
        "reference": reference is not None,
        "seed": args.seed,
        "tokens": n_tokens,
        "seconds": seconds,
        "seconds_per_step": seconds / args.steps,
        "seconds_per_step_median": statistics.median(times),
        "tokens_per_sec": n_tokens / seconds,
        "tokens_per_sec_median": args.batch * args.seq_len / statistics.median(times),
        "step_seconds": times,
        "flops_per_sec": flops_per_sec,
        "matmul_peak_flops_per_sec": peak,
        "mfu": flops_per_sec / peak,
        "last_loss": loss,
        "last_grad_norm": grad_norm,
    }


# ---------------------------------------------------------------- SmolLM2 from its GGUF


def export_gguf(args) -> dict:
    """Dequantizes a GGUF with transformers' own loader and saves an f32 HF directory."""
    from transformers import AutoTokenizer

    directory, name = os.path.split(os.path.abspath(args.gguf))
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it: copy the
    # dequantized f32 weights into a plain model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    model.save_pretrained(args.out)
    tokenizer_saved = True
    try:
        AutoTokenizer.from_pretrained(directory, gguf_file=name).save_pretrained(args.out)
    except Exception as e:  # the benchmarks feed token ids; the tokenizer is a convenience
        tokenizer_saved = False
        print(f"warning: tokenizer not converted: {e}", file=sys.stderr)
    return {
        "export": args.out,
        "from": args.gguf,
        "parameters": num_parameters(model.config),
        "tokenizer": tokenizer_saved,
    }


# ---------------------------------------------------------------- command line


def batches(value: str) -> list[int]:
    """`8` or `1,8,32,64`."""
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers: {value!r}") from e
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive: {value!r}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--model", required=True, help="Hugging Face-layout model directory")
        p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
        p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and sampler")
        p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa or eager)")
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
        p.add_argument("--dtype", default="f32", choices=sorted(DTYPES), help="compute dtype (default f32)")

    s = sub.add_parser("sample", help="batched sampling with the KV cache: tokens/s")
    common(s)
    s.add_argument("--batch", type=batches, default=[8], help="prompts per batch (arlas default 8); "
                   "a comma-separated list runs each in turn over one loaded model, one JSON line each")
    s.add_argument("--prompt-len", type=int, default=128, help="tokens per prompt (arlas default 128)")
    s.add_argument("--new-tokens", type=int, default=128, help="new tokens per prompt (arlas default 128)")
    s.add_argument("--repeats", type=int, default=2, help="timed repetitions (arlas default 2)")

    t = sub.add_parser("train", help="GRPO steps + AdamW: tokens/s")
    common(t)
    t.add_argument("--batch", type=batches, default=[8], help="sequences per step (arlas default 8); "
                   "a comma-separated list runs each in turn, from the same loaded weights")
    t.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (arlas default 256)")
    t.add_argument("--micro-batch", type=int, default=None, help="sequences per pass (default --batch)")
    t.add_argument("--steps", type=int, default=3, help="timed steps (arlas default 3)")
    t.add_argument("--no-reference", action="store_true", help="skip the KL reference forward")
    t.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate (arlas bench: 1e-5)")

    e = sub.add_parser("export-gguf", help="write an f32 HF directory from a GGUF (e.g. SmolLM2)")
    e.add_argument("--gguf", required=True, help="the .gguf file")
    e.add_argument("--out", required=True, help="output directory")

    args = parser.parse_args()
    if args.command == "export-gguf":
        print(json.dumps(export_gguf(args)), flush=True)
        return
    torch.set_num_threads(args.threads)
    sizes = args.batch
    if args.command == "sample":
        model = load_model(args.model, args.attn, args.device, DTYPES[args.dtype])
    else:
        model = load_model(args.model, args.attn, args.device, torch.float32)
    for batch in sizes:
        one = argparse.Namespace(**{**vars(args), "batch": batch})
        if args.command == "sample":
            result = bench_sample(one, model)
        else:
            # Every batch trains from the same weights, with a fresh optimizer.
            result = bench_train(one, copy.deepcopy(model))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
