"""TRL's GRPOTrainer, whole GRPO steps (sample + score + learn): the baseline of
`benches/whole_step.rs`, which writes the model directory and the prompts this script reads.

Run by that bench in the same session, or by hand:

    OMP_WAIT_POLICY=PASSIVE python3 benches/trl_grpo.py MODEL_DIR PROMPTS_JSONL --steps 6

The setting of issue 21: per_device_train_batch_size=8 and num_generations=4 (2 prompts x 4
completions per step), max_completion_length=64 with min_new_tokens=64 (no early EOS), beta=0.04,
temperature 1, use_vllm=False, use_cpu=True, TRL's other defaults (DAPO loss, epsilon 0.2,
gradient checkpointing on); the reward is a checker (the last \\boxed{} against the gold answer).
torch on 2 threads. Prints one JSON line with every step's seconds and the median after the
first.
"""

import argparse
import json
import os
import re
import statistics
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def checker_reward(completions, answer, **_kwargs):
    """1 when the completion's last \\boxed{} holds the gold answer, else 0."""
    rewards = []
    for completion, gold in zip(completions, answer):
        found = BOXED.findall(completion)
        rewards.append(1.0 if found and found[-1].strip() == gold.strip() else 0.0)
    return rewards


class StepTimer(TrainerCallback):
    """Wall time of each optimisation step; in GRPOTrainer a step includes its generation."""

    def __init__(self):
        self.seconds = []
        self._start = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("prompts")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with open(args.prompts) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    dataset = Dataset.from_list([{"prompt": r["question"], "answer": r["answer"]} for r in rows])
    # Not AutoTokenizer: for a qwen2 config.json it builds Qwen2Tokenizer, whose byte-level
    # pre-tokenizer replaces the word-level one of tokenizer.json.
    tokenizer = PreTrainedTokenizerFast.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=8,
            num_generations=4,
            max_completion_length=64,
            generation_kwargs={"min_new_tokens": 64},
            beta=0.04,
            use_vllm=False,
            use_cpu=True,
            bf16=False,
            max_steps=args.steps,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            seed=0,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=checker_reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[timer],
        )
        trainer.train()
        lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    print(
        json.dumps(
            {
                "trl": trl.__version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "completion_length_mean": lengths,
                "step_seconds": timer.seconds,
                "median_step_s": statistics.median(timer.seconds[1:]),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
