"""Detection and false-positive rates of the injection rules over security/corpora/.

    .venv/bin/python bench/injection_rates.py [--verbose]

Prints the share of malicious samples caught (per class) and of benign samples flagged; with
--verbose, every miss and every false positive with the rule that fired.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from security.injection import find_injection  # noqa: E402  (needs the path above)

CORPORA = ROOT / "security" / "corpora"


def load(name: str) -> list[dict[str, str]]:
    with open(CORPORA / name, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def main(verbose: bool) -> int:
    everything = (load("malicious.jsonl"), load("benign.jsonl"))
    # "tuning": written while the rules were tuned; "held_out": written after, never tuned on.
    for label, keep in (("all", None), ("tuning", "tuning"), ("held_out", "held_out")):
        malicious, benign = ([s for s in samples if keep is None or s.get("set", "tuning") == keep] for samples in everything)
        print(f"== {label} ==")
        report(malicious, benign, verbose and label == "all")
    return 0


def report(malicious: list[dict[str, str]], benign: list[dict[str, str]], verbose: bool) -> None:
    caught_by_class: dict[str, list[int]] = {}
    for sample in malicious:
        hit = find_injection(sample["text"])
        counts = caught_by_class.setdefault(sample["class"], [0, 0])
        counts[0] += hit is not None
        counts[1] += 1
        if hit is None and verbose:
            print(f"MISS [{sample['class']}] {sample['text']!r}")
    false_positives = 0
    for sample in benign:
        hit = find_injection(sample["text"])
        if hit is not None:
            false_positives += 1
            if verbose:
                print(f"FALSE POSITIVE [{hit.rule}] {sample['text']!r}")
    caught = sum(c for c, _ in caught_by_class.values())
    print(f"detection rate: {caught}/{len(malicious)} = {caught / len(malicious):.1%}")
    for name, (hits, total) in sorted(caught_by_class.items()):
        print(f"  {name}: {hits}/{total} = {hits / total:.1%}")
    print(f"false-positive rate: {false_positives}/{len(benign)} = {false_positives / len(benign):.1%}")


if __name__ == "__main__":
    raise SystemExit(main("--verbose" in sys.argv))
