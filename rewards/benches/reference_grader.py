"""Times the reference grader (QwenLM/Qwen2.5-Math evaluation, Python + sympy) on the same
extracted pairs as `benches/checker.rs`: `math_equal(pipeline_pred, pipeline_gold)` over the
conformance vectors, one core, 3 s limit per pair as the reference's own scorer uses.

    pip install sympy==1.12 antlr4-python3-runtime==4.11.1 regex word2number
    python3 rewards/benches/reference_grader.py --eval-dir PATH/TO/Qwen2.5-Math/evaluation

The reference's code is not vendored here; `--eval-dir` must hold its `grader.py`.
"""
import argparse, json, os, signal, sys, time


class Timeout(Exception):
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-dir", required=True)
    ap.add_argument("--vectors", default=os.path.join(os.path.dirname(__file__), "../../tests/fixtures/grader/vectors.jsonl"))
    args = ap.parse_args()
    sys.path.insert(0, args.eval_dir)
    from grader import math_equal  # noqa: E402

    def on_alarm(*_):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    pairs = [(r["pipeline_pred"], r["pipeline_gold"]) for r in map(json.loads, open(args.vectors)) if "pipeline_pred" in r]
    worst, timeouts = 0.0, 0
    start = time.time()
    for pred, gold in pairs:
        t = time.time()
        signal.alarm(3)
        try:
            math_equal(pred, gold)
        except Timeout:
            timeouts += 1
        except Exception:
            pass
        signal.alarm(0)
        worst = max(worst, time.time() - t)
    total = time.time() - start
    print(f"reference: {len(pairs)} pairs in {total:.1f} s = {len(pairs) / total:.1f} pairs/s on one core; worst {worst:.3f} s; {timeouts} over 3 s")


if __name__ == "__main__":
    main()
