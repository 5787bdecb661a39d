"""Hugging Face transformers `generate` on the ~60M random Qwen2 config of `benches/common/mod.rs`,
the baseline of `benches/generation.rs`.

Run on the same machine, back to back with `cargo bench --bench generation`:

    OMP_WAIT_POLICY=PASSIVE python3 benches/hf_generate.py

torch on CPU with 2 threads, float32, sampling at temperature 1 (top-k/top-p off), EOS disabled so
every sequence generates all `--new-tokens` tokens. Prints one JSON line per scenario.
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402


def config_60m() -> Qwen2Config:
    # Must match `config_60m()` in benches/common/mod.rs.
    return Qwen2Config(
        vocab_size=32000,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )


def run(model, prompts: int, prompt_len: int, new_tokens: int, n: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (prompts, prompt_len), generator=gen)
    mask = torch.ones_like(ids)
    kwargs = dict(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        num_return_sequences=n,
        eos_token_id=None,
        pad_token_id=0,
    )
    with torch.inference_mode():
        model.generate(ids, attention_mask=mask, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = model.generate(ids, attention_mask=mask, **kwargs)
            times.append(time.perf_counter() - start)
    generated = (out.shape[1] - prompt_len) * out.shape[0]
    assert generated == prompts * n * new_tokens, out.shape
    best = min(times)
    return {
        "scenario": f"{prompts} prompts x {prompt_len} tokens, n={n}, {new_tokens} new tokens",
        "seconds_best": best,
        "seconds_all": times,
        "tokens_per_s": generated / best,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config_60m()).eval()
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "params": params,
                      "loadavg": os.getloadavg()}))
    for prompts, n in [(8, 1), (2, 8)]:
        result = run(model, prompts, 32, args.new_tokens, n, args.repeats)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
