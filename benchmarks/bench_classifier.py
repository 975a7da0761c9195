"""Cost of one classifier decision on a 2,000-token request.

Run with ``python benchmarks/bench_classifier.py [MODEL.npz]`` from the repository
root (default: the shipped model). Prints p50 / p99 / max of the CPU time
(``thread_time``) and wall time per ``Classifier.predict`` call, for:

- the 10-message, ~1,900-token conversation of ``bench_estimate.py``;
- one ~2,000-token user message (the ask is cut to its head and tail, so longer
  messages cost the same);

and, for comparison, ``featurize`` alone and the heuristic ``difficulty.score``.
The target is a p99 under 300 µs of CPU per decision.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "sidecar"))
sys.path.insert(0, str(HERE))

from bench_estimate import SYSTEM, TURNS  # noqa: E402

from tollgate.estimate import TokenCounter  # noqa: E402
from tollgate.routing import difficulty  # noqa: E402
from tollgate.routing.classifier import Classifier, default_model_path, featurize  # noqa: E402

CALLS = 5_000
WARMUP = 500


def _percentiles(fn: Callable[[], object]) -> tuple[float, float, float, float, float, float]:
    """(p50, p99, max) of CPU and of wall microseconds per call."""
    for _ in range(WARMUP):
        fn()
    cpu: list[int] = []
    wall: list[int] = []
    for _ in range(CALLS):
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        fn()
        w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        cpu.append(c1 - c0)
        wall.append(w1 - w0)
    cpu.sort()
    wall.sort()

    def at(values: Sequence[int], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] / 1000

    return at(cpu, 0.5), at(cpu, 0.99), cpu[-1] / 1000, at(wall, 0.5), at(wall, 0.99), wall[-1] / 1000


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default_model_path()
    model = Classifier.load(path)
    counter = TokenCounter(4)
    conversation = [("system", SYSTEM), *TURNS]
    words = " ".join(content for _, content in TURNS).split()
    single_text = " ".join(words)
    while counter.count_text(single_text) < 2_000:
        single_text += " " + " ".join(words)
    single_text = counter_trim(counter, single_text, 2_000)
    single = [("user", single_text)]
    print(f"model {path.name} ({path.stat().st_size / 1024:.0f} KiB); {CALLS} calls each after {WARMUP} warm-up")
    print(f"{'':46} {'CPU p50':>8} {'p99':>7} {'max':>7}   {'wall p50':>8} {'p99':>7} {'max':>7}  (µs)")
    for name, messages in (("conversation", conversation), ("single message", single)):
        tokens = counter.count_messages(messages)
        rows: list[tuple[str, Callable[[], object]]] = [
            (f"predict, {name} ({len(messages)} msgs, {tokens} tokens)",
             lambda m=messages, t=tokens: model.predict(m, t)),
            ("  of which featurize", lambda m=messages, t=tokens: featurize(m, t)),
            ("  heuristic difficulty.score, for comparison", lambda m=messages, t=tokens: difficulty.score(m, t)),
        ]
        for label, fn in rows:
            c50, c99, cmax, w50, w99, wmax = _percentiles(fn)
            print(f"{label:<46} {c50:>8.1f} {c99:>7.1f} {cmax:>7.1f}   {w50:>8.1f} {w99:>7.1f} {wmax:>7.1f}")


def counter_trim(counter: TokenCounter, text: str, tokens: int) -> str:
    """``text`` cut down by words to at most ``tokens`` tokens."""
    words = text.split()
    while counter.count_text(" ".join(words)) > tokens:
        words = words[: int(len(words) * 0.98)]
    return " ".join(words)


if __name__ == "__main__":
    main()
