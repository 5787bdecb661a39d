"""The PyTorch baseline of benches/grpo_step.rs: one GRPO step (policy + reference forward,
backward, AdamW) of the same ~60M Qwen2 config (transformers' Qwen2ForCausalLM, f32, eager
attention) on 16 random sequences of 32 prompt + 128 completion tokens, 2 threads.

Prints the median step time of 3 (after one warm-up) and the peak resident memory of those 3
steps above what was resident before them (weights, gradients and AdamW state included in the
baseline, as the Rust bench counts heap above weights and optimiser state). Linux only: the peak is
reset through /proc/self/clear_refs, since ru_maxrss keeps the peak of model construction."""
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

torch.set_num_threads(2)
torch.manual_seed(0)
GROUPS, G, P, C = 2, 8, 32, 128
BETA, EPS = 1e-3, 0.2
cfg = Qwen2Config(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048,
                  rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  attn_implementation="eager")
policy = Qwen2ForCausalLM(cfg).float()
reference = Qwen2ForCausalLM(cfg).float().eval()
reference.load_state_dict(policy.state_dict())
opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=0.0)


def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def token_logprobs(model, ids):
    logits = model(input_ids=ids).logits[:, P - 1:-1].float()
    return torch.gather(logits.log_softmax(-1), 2, ids[:, P:, None]).squeeze(-1)


def step(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, cfg.vocab_size, (GROUPS * G, P + C), generator=g)
    rewards = torch.tensor([float(i % 2) for i in range(G)] * GROUPS).view(GROUPS, G)
    adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).view(-1, 1)
    lp = token_logprobs(policy, ids)
    with torch.no_grad():
        ref = token_logprobs(reference, ids)
    old = lp.detach()
    ratio = torch.exp(lp - old)
    pg = -torch.min(ratio * adv, torch.clamp(ratio, 1 - EPS, 1 + EPS) * adv)
    kl = torch.exp(ref - lp) - (ref - lp) - 1
    loss = ((pg + BETA * kl).mean(1)).mean()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    opt.step()


step(0)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM (peak RSS) to the current RSS
rss0 = status_kib("VmRSS")
times = []
for s in range(3):
    t = time.perf_counter()
    step(s + 1)
    times.append(time.perf_counter() - t)
times.sort()
peak = status_kib("VmHWM")
print(f"torch {torch.__version__}: GRPO step median {times[1]:.2f} s of 3, "
      f"peak RSS above the pre-step RSS {(peak - rss0) / 1024:.0f} MiB")
print(f"median_s={times[1]}")
