"""The PyTorch baseline of benches/scale/ (`cargo bench --bench scale`), in its two scenarios.

`--scenario gpu-check` (the default), for scripts/gpu-check.sh: transformers `generate` and one
GRPO step at the same shape, batch and lengths, on the same device.

    python3 benches/torch_scale.py --device cuda --shape 1.5b

Generation runs the model in bf16 on a GPU (f32 on the CPU), sampling at temperature 1 with
top-k/top-p off and EOS disabled. The GRPO step is the way TRL trains in bf16: f32 master weights
and AdamW state, the forward and backward under `torch.autocast(bfloat16)`, a bf16 reference model,
β = 1e-3, ε = 0.2, one optimizer step over all sequences. Prints one JSON line per phase, with
`torch.cuda.max_memory_allocated` where there is a GPU.

`--scenario cpu-proof`, for scripts/bench-0.5b.sh: one phase of benches/scale/cpu_proof.rs per
process on the CPU, from the Hugging Face directory that the Rust bench's `prepare` phase wrote,
with the same token ids (see `cpu_proof` below).

    python3 benches/torch_scale.py --scenario cpu-proof --phase grpo --dtype bf16 --model-dir DIR
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

PROMPT, NEW_TOKENS = 32, 128
GROUPS, G, TRAIN_COMPLETION, STEPS = 2, 8, 256, 3
BETA, EPS = 1e-3, 0.2


def shape(name):
    # Must match `shape()` in benches/scale/gpu_check.rs.
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
    parser.add_argument("--scenario", choices=["gpu-check", "cpu-proof"], default="gpu-check")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", default="tiny")
    parser.add_argument("--phase", choices=["load", "generate", "grpo"], help="cpu-proof: the phase")
    parser.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                        help="cpu-proof: f32, or bf16 (weights in generation; autocast in GRPO)")
    parser.add_argument("--model-dir", help="cpu-proof: the model the Rust bench's prepare phase wrote")
    parser.add_argument("--tokenizer", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                            "fixtures", "qwen2.5-tokenizer"))
    parser.add_argument("--threads", type=int, default=2, help="cpu-proof: torch.set_num_threads")
    args = parser.parse_args()
    if args.scenario == "cpu-proof":
        if not (args.phase and args.model_dir):
            parser.error("--scenario cpu-proof needs --phase and --model-dir")
        cpu_proof(args)
        return
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


# --- cpu-proof: must match benches/scale/cpu_proof.rs ---------------------------------------------
CPU_PROMPT, CPU_NEW, CPU_G, CPU_COMPLETION, CPU_STRIDE = 64, 128, 8, 256, 16
QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents. How much more money does Betty need to buy the wallet?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
]
SOLUTION = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\nSo the answer is \\boxed{72}."


def status_mib(field):
    """A field of /proc/self/status in MiB (VmRSS: resident memory now)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return None


def prompt_ids(tok, question, vocab):
    """The last CPU_PROMPT ids of `question`, repeated until long enough, in the chat template."""
    text = question
    while True:
        rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
        ids = tok(rendered, add_special_tokens=False)["input_ids"]
        if len(ids) >= CPU_PROMPT:
            return [i % vocab for i in ids[-CPU_PROMPT:]]
        text = f"{text} {question}"


def completion_ids(tok, vocab):
    needed = CPU_COMPLETION + (CPU_G - 1) * CPU_STRIDE
    text = SOLUTION
    while len(ids := tok(text, add_special_tokens=False)["input_ids"]) < needed:
        text = f"{text}\n{SOLUTION}"
    return [[t % vocab for t in ids[i * CPU_STRIDE:i * CPU_STRIDE + CPU_COMPLETION]] for i in range(CPU_G)]


def selective_log_softmax(logits, index):
    """TRL's memory-saving log-softmax + gather for f32 logits (one row's logsumexp at a time)."""
    selected = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1)
    return selected - torch.stack([torch.logsumexp(row, dim=-1) for row in logits])


def cpu_proof(args):
    """One phase on the CPU. GRPO as TRL's GRPOTrainer computes it (μ = 1, so no old-policy
    forward): LM head only over the completion (`logits_to_keep`), log-probs in f32 by TRL's
    `selective_log_softmax`, β = 1e-3 k3 KL to a reference model, ε = 0.2, AdamW lr 1e-5 with f32
    state, gradients clipped at 1. `--dtype bf16` is TRL's bf16: f32 weights and optimiser,
    forward and backward under `torch.autocast("cpu", bfloat16)`, a bf16 reference."""
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    line = {"impl": "torch", "phase": args.phase, "dtype": args.dtype, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "rss_at_start_mib": status_mib("VmRSS")}

    def load(weights_dtype):
        return Qwen2ForCausalLM.from_pretrained(args.model_dir, dtype=weights_dtype)

    if args.phase == "load":
        start = time.perf_counter()
        model = load(dtype)
        line.update(seconds=time.perf_counter() - start, params=sum(p.numel() for p in model.parameters()))
    elif args.phase == "generate":
        model = load(dtype).eval()
        line["rss_after_load_mib"] = status_mib("VmRSS")
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
        prompts = [prompt_ids(tok, q, model.config.vocab_size) for q in QUESTIONS]
        ids = torch.tensor(prompts)
        kwargs = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, eos_token_id=None,
                      pad_token_id=0, attention_mask=torch.ones_like(ids))
        torch.manual_seed(1)
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kwargs)
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=CPU_NEW, min_new_tokens=CPU_NEW, **kwargs)
            seconds = time.perf_counter() - start
        tokens = (out.shape[1] - CPU_PROMPT) * out.shape[0]
        assert tokens == len(prompts) * CPU_NEW, out.shape
        line.update(seconds=seconds, tokens_per_s=tokens / seconds, prompts=len(prompts),
                    prompt_tokens=CPU_PROMPT, new_tokens=CPU_NEW,
                    ids_checksum=sum(sum(p) for p in prompts))
    else:
        policy = load(torch.float32)
        reference = load(dtype).eval().requires_grad_(False)
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
        vocab = policy.config.vocab_size
        prompt = prompt_ids(tok, QUESTIONS[0], vocab)
        completions = completion_ids(tok, vocab)
        ids = torch.tensor([prompt + c for c in completions])
        completion = ids[:, CPU_PROMPT:]
        rewards = torch.tensor([float(i % 2) for i in range(CPU_G)])
        adv = ((rewards - rewards.mean()) / (rewards.std() + 1e-4)).view(-1, 1)
        opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=0.0)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16")

        def token_logprobs(model):
            logits = model(input_ids=ids, logits_to_keep=CPU_COMPLETION + 1).logits[:, :-1].float()
            return selective_log_softmax(logits, completion)

        line["rss_before_step_mib"] = status_mib("VmRSS")
        start = time.perf_counter()
        with autocast:
            with torch.no_grad():
                ref = token_logprobs(reference)
            lp = token_logprobs(policy)
        ratio = torch.exp(lp - lp.detach())
        pg = -torch.min(ratio * adv, torch.clamp(ratio, 1 - EPS, 1 + EPS) * adv)
        kl = torch.exp(ref - lp) - (ref - lp) - 1
        loss = (pg + BETA * kl).mean()
        opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        line.update(seconds=time.perf_counter() - start, loss=loss.item(), kl=kl.mean().item(),
                    grad_norm=grad_norm.item(), sequences=CPU_G,
                    tokens=CPU_G * (CPU_PROMPT + CPU_COMPLETION),
                    ids_checksum=sum(prompt) + sum(sum(c) for c in completions))
    # ru_maxrss is in KiB on Linux.
    line["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
