"""Reads a log directory with TensorBoard's own EventAccumulator and checks it against a JSON
file of expected records: {"scalars": [{"tag", "step", "value"}], "texts": [{"tag", "step", "text"}]}.

Usage: python3 tests/tensorboard_readback.py LOGDIR EXPECTED.json   (exit code 1 on any mismatch)
Run by tests/tensorboard_readback.rs.
"""

import json
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util


def main(logdir, expected_path):
    with open(expected_path, encoding="utf-8") as f:
        expected = json.load(f)
    size_guidance = {kind: 0 for kind in event_accumulator.DEFAULT_SIZE_GUIDANCE}  # 0 = keep all
    acc = event_accumulator.EventAccumulator(logdir, size_guidance=size_guidance)
    acc.Reload()
    errors = []
    tags = acc.Tags()
    if acc.file_version != 2.0:
        errors.append(f"file_version {acc.file_version!r}, expected 2.0")

    want_scalars = {}
    for s in expected["scalars"]:
        want_scalars.setdefault(s["tag"], {})[s["step"]] = s["value"]
    if sorted(tags["scalars"]) != sorted(want_scalars):
        errors.append(f"scalar tags {sorted(tags['scalars'])}, expected {sorted(want_scalars)}")
    for tag, want in want_scalars.items():
        got = {e.step: e.value for e in acc.Scalars(tag)} if tag in tags["scalars"] else {}
        if sorted(got) != sorted(want):
            errors.append(f"scalar {tag!r}: steps {sorted(got)}, expected {sorted(want)}")
        for step, value in want.items():
            if step in got and abs(got[step] - value) > 1e-6 * abs(value):
                errors.append(f"scalar {tag!r} step {step}: {got[step]!r}, expected {value!r}")

    want_texts = {}
    for t in expected["texts"]:
        want_texts.setdefault(t["tag"], {})[t["step"]] = t["text"]
    text_plugin_tags = acc.PluginTagToContent("text") if want_texts else {}
    for tag, want in want_texts.items():
        if tag not in text_plugin_tags:
            errors.append(f"text {tag!r} is not tagged for the text plugin")
        events = acc.Tensors(tag) if tag in tags["tensors"] else []
        got = {}
        for e in events:
            array = tensor_util.make_ndarray(e.tensor_proto)
            if array.shape != (1,):
                errors.append(f"text {tag!r} step {e.step}: shape {array.shape}, expected (1,)")
            got[e.step] = array.reshape(-1)[0].decode("utf-8")
        if got != want:
            errors.append(f"text {tag!r}: {got!r}, expected {want!r}")

    n_scalars = sum(len(v) for v in want_scalars.values())
    n_texts = sum(len(v) for v in want_texts.values())
    print(f"tensorboard read back {n_scalars} scalars under {len(want_scalars)} tags and "
          f"{n_texts} texts under {len(want_texts)} tags: {len(errors)} mismatch(es)")
    for error in errors:
        print("  " + error)
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
