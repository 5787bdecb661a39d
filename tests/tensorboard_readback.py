"""Reads a log directory with TensorBoard's own EventAccumulator and checks it against a JSON
file of expected records: {"scalars": [{"tag", "step", "value"}], "texts": [{"tag", "step", "text"}],
optionally "histograms": [{"tag", "step", "num", "min", "max", "sum"}] and "hparams": {name: value}
(read with the HParams plugin's own parser).

Usage: python3 tests/tensorboard_readback.py LOGDIR EXPECTED.json   (exit code 1 on any mismatch)
Run by tests/tensorboard_readback.rs.
"""

import json
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
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

    errors.extend(check_histograms(acc, tags, expected.get("histograms", [])))
    if "hparams" in expected:
        errors.extend(check_hparams(acc, expected["hparams"]))

    n_scalars = sum(len(v) for v in want_scalars.values())
    n_texts = sum(len(v) for v in want_texts.values())
    print(f"tensorboard read back {n_scalars} scalars under {len(want_scalars)} tags and "
          f"{n_texts} texts under {len(want_texts)} tags: {len(errors)} mismatch(es)")
    for error in errors:
        print("  " + error)
    return 1 if errors else 0


def check_histograms(acc, tags, want):
    """Each expected histogram's count, range and sum, and bucket counts that add up to it."""
    errors = []
    for h in want:
        tag, step = h["tag"], h["step"]
        events = [e for e in acc.Histograms(tag) if e.step == step] if tag in tags["histograms"] else []
        if len(events) != 1:
            errors.append(f"histogram {tag!r} step {step}: {len(events)} events, expected 1")
            continue
        got = events[0].histogram_value
        for field in ("num", "min", "max", "sum"):
            value = getattr(got, field)
            if abs(value - h[field]) > 1e-9 * max(1.0, abs(h[field])):
                errors.append(f"histogram {tag!r} step {step}: {field} {value!r}, expected {h[field]!r}")
        if sum(got.bucket) != got.num or len(got.bucket) != len(got.bucket_limit):
            errors.append(f"histogram {tag!r} step {step}: buckets {list(got.bucket)} of {got.num}")
        if list(got.bucket_limit) != sorted(got.bucket_limit) or got.bucket_limit[-1] != got.max:
            errors.append(f"histogram {tag!r} step {step}: edges {list(got.bucket_limit)}")
    return errors


def check_hparams(acc, want):
    """The session start info the HParams tab reads: the same names, kinds and values."""
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    tag = hparams_metadata.SESSION_START_INFO_TAG
    if tag not in content:
        return [f"no {tag!r} for the hparams plugin (tags: {sorted(content)})"]
    info = hparams_metadata.parse_session_start_info_plugin_data(content[tag])
    got = {}
    for name, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        got[name] = getattr(value, kind)
    errors = []
    if got != want:
        errors.append(f"hparams {got!r}, expected {want!r}")
    for name, value in want.items():
        kind = info.hparams[name].WhichOneof("kind") if name in info.hparams else None
        expected_kind = {bool: "bool_value", str: "string_value"}.get(type(value), "number_value")
        if kind != expected_kind:
            errors.append(f"hparam {name!r} is a {kind}, expected a {expected_kind}")
    if info.start_time_secs <= 0:
        errors.append(f"hparams start time {info.start_time_secs}")
    return errors


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
