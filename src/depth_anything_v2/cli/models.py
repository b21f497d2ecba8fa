"""``depth-anything models``: the published checkpoints, their licences, and whether they are cached."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the published models (name, kind, licence, Hub file, cached or not)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from huggingface_hub import try_to_load_from_cache

    from ..configs import PUBLISHED_MODELS

    rows = [("name", "output", "licence", "hub file", "cached")]
    for m in PUBLISHED_MODELS.values():
        cached = isinstance(try_to_load_from_cache(m.repo_id, m.filename), str)
        output = f"metres (max {m.max_depth:g})" if m.is_metric else "disparity"
        rows.append((m.name, output, m.license, f"{m.repo_id}/{m.filename}", "yes" if cached else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print("\nBase and Large weights are CC-BY-NC-4.0: non-commercial use only. Small weights are Apache-2.0.")
    return 0
