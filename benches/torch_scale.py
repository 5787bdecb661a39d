"""The PyTorch baseline of benches/scale.rs, for scripts/gpu-check.sh: transformers `generate`
and one GRPO step at the same shape, batch and lengths, on the same device.

    python3 benches/torch_scale.py --device cuda --shape 1.5b

Generation runs the model in bf16 on a GPU (f32 on the CPU), sampling at temperature 1 with
top-k/top-p off and EOS disabled. The GRPO step is the way TRL trains in bf16: f32 master weights
and AdamW state, the forward and backward under `torch.autocast(bfloat16)`, a bf16 reference model,
β = 1e-3, ε = 0.2, one optimizer step over all sequences. Prints one JSON line per phase, with
`torch.cuda.max_memory_allocated` where there is a GPU.
"""

import argparse
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

PROMPT, NEW_TOKENS = 32, 128
GROUPS, G, TRAIN_COMPLETION, STEPS = 2, 8, 256, 3
BETA, EPS = 1e-3, 0.2


def shape(name):
    # Must match `shape()` in benches/scale.rs.
    vocab, hidden, layers, heads, kv, inter = {
        "1.5b": (151936, 1536, 28, 12, 2, 8960),
        "0.5b": (151936, 896, 24, 14, 2, 4864),
    }.get(name, (1024, 64, 2, 4, 2, 128))
    return Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                       num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv, max_position_embeddings=4096,
                       rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mib(device):
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None


def generate(model, device, prompts, n):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (prompts, PROMPT), generator=gen).to(device)
    kwargs = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=n,
                  eos_token_id=None, pad_token_id=0, attention_mask=torch.ones_like(ids))
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kwargs)
        best = float("inf")
        for _ in range(2):
            sync(device)
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, **kwargs)
            sync(device)
            best = min(best, time.perf_counter() - start)
    assert (out.shape[1] - PROMPT) * out.shape[0] == prompts * n * NEW_TOKENS, out.shape
    return prompts * n * NEW_TOKENS / best, best


def grpo(cfg, device, compute):
    torch.manual_seed(0)
    with device:
        policy = Qwen2ForCausalLM(cfg).float()
        reference = Qwen2ForCausalLM(cfg).to(compute).eval()
    reference.load_state_dict(policy.state_dict())
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=0.0)
    autocast = torch.autocast(device.type, dtype=compute, enabled=compute != torch.float32)

    def token_logprobs(model, ids):
        logits = model(input_ids=ids).logits[:, PROMPT - 1:-1].float()
        return torch.gather(logits.log_softmax(-1), 2, ids[:, PROMPT:, None]).squeeze(-1)

    def step(seed):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(3, cfg.vocab_size, (GROUPS * G, PROMPT + TRAIN_COMPLETION), generator=g).to(device)
        rewards = torch.tensor([float(i % 2) for i in range(G)] * GROUPS, device=device).view(GROUPS, G)
        adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).view(-1, 1)
        with autocast:
            lp = token_logprobs(policy, ids)
            with torch.no_grad():
                ref = token_logprobs(reference, ids)
        ratio = torch.exp(lp - lp.detach())
        pg = -torch.min(ratio * adv, torch.clamp(ratio, 1 - EPS, 1 + EPS) * adv)
        kl = torch.exp(ref - lp) - (ref - lp) - 1
        loss = ((pg + BETA * kl).mean(1)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()

    step(0)
    times = []
    for s in range(STEPS):
        sync(device)
        start = time.perf_counter()
        step(s + 1)
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[STEPS // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", default="tiny")
    args = parser.parse_args()
    device = torch.device(args.device)
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = shape(args.shape)
    torch.manual_seed(0)
    with device:
        model = Qwen2ForCausalLM(cfg).to(compute).eval()
    print(json.dumps({"phase": "load", "torch": torch.__version__, "shape": args.shape,
                      "params": sum(p.numel() for p in model.parameters())}), flush=True)
    for prompts, n in [(8, 1), (2, 8)]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        tps, seconds = generate(model, device, prompts, n)
        print(json.dumps({"phase": f"generate {prompts}x{n}", "tokens_per_s": tps, "seconds": seconds,
                          "peak_allocated_mib": peak_mib(device)}), flush=True)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    seconds = grpo(cfg, device, compute)
    mode = "autocast bf16, f32 master" if compute != torch.float32 else "f32"
    print(json.dumps({"phase": "grpo step", "mode": mode, "sequences": GROUPS * G,
                      "tokens": GROUPS * G * (PROMPT + TRAIN_COMPLETION), "median_seconds": seconds,
                      "peak_allocated_mib": peak_mib(device)}), flush=True)


if __name__ == "__main__":
    main()
