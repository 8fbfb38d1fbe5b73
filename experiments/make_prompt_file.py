"""Write a prompt/completion file of the kind users bring: questions with their own column names
and answers drawn from 41 labels (the number words zero..forty): every sum of two numbers from 0 to 20, to try the prompt task types.

    python experiments/make_prompt_file.py sums.jsonl        # .jsonl, .csv or .parquet
    python -m harness model=smollm2 task=jsonl task.data_path=sums.jsonl \\
        task.text_column=question task.label_column=answer task.task_type=generation

The rows are shuffled with a fixed seed, so the file is the same on every machine.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pandas as pd

UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
TENS = {20: "twenty", 30: "thirty", 40: "forty"}


def word(n: int) -> str:
    if n < 20:
        return UNITS[n]
    tens, unit = 10 * (n // 10), n % 10
    return TENS[tens] + ("" if unit == 0 else "-" + UNITS[unit])


def rows(seed: int = 0) -> pd.DataFrame:
    """Every sum of two numbers from 0 to 20 (441 questions, 41 distinct answers), shuffled."""
    pairs = [(a, b) for a in range(21) for b in range(21)]
    random.Random(seed).shuffle(pairs)
    return pd.DataFrame([{"question": f"What is {a} plus {b}? Answer in words.", "answer": word(a + b)}
                         for a, b in pairs])


def main(path: str) -> None:
    frame, target = rows(), Path(path)
    if target.suffix == ".jsonl":
        frame.to_json(target, orient="records", lines=True)
    elif target.suffix == ".parquet":
        frame.to_parquet(target)
    else:
        frame.to_csv(target, index=False)
    print(f"{target}: {len(frame)} rows, {frame['answer'].nunique()} distinct answers")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sums.jsonl")
