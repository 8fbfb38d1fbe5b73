"""Write a prompt/completion file of the kind users bring: questions with their own column names
and answers drawn from 41 labels (the number words zero..forty): every sum of two numbers from 0 to 20, to try the prompt task types.

    python experiments/make_prompt_file.py sums.jsonl        # .jsonl, .csv or .parquet
    python -m harness model=smollm2 task=jsonl task.data_path=sums.jsonl \\
        task.text_column=question task.label_column=answer task.task_type=generation

    python experiments/make_prompt_file.py --chat chats.jsonl   # the same sums as chat conversations
    python -m harness model=smollm2 task=jsonl task.data_path=chats.jsonl \\
        task.messages_column=messages task.task_type=generation

``--chat`` writes each question as a conversation in OpenAI's format (a ``messages`` column of
role/content turns, .jsonl or .parquet): the question as the user's turn and its answer as the
assistant's, every third one after an earlier exchange (the previous row's sum) and every fifth
one with a system turn first.

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


def conversations(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows as chat conversations, some with an earlier exchange or a system turn."""
    out = []
    for i, (question, answer) in enumerate(zip(frame["question"], frame["answer"])):
        turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if i % 3 == 2:  # an earlier exchange: the previous row's sum
            turns = [{"role": "user", "content": frame["question"][i - 1]},
                     {"role": "assistant", "content": frame["answer"][i - 1]}, *turns]
        if i % 5 == 0:
            turns = [{"role": "system", "content": "You add numbers and answer in words."}, *turns]
        out.append({"messages": turns})
    return pd.DataFrame(out)


def main(path: str, chat: bool = False) -> None:
    frame, target = rows(), Path(path)
    if chat:
        if target.suffix not in (".jsonl", ".parquet"):
            sys.exit("--chat writes .jsonl or .parquet (a CSV cell holds no list of turns)")
        answers = frame["answer"].nunique()
        frame = conversations(frame)
        (frame.to_json(target, orient="records", lines=True) if target.suffix == ".jsonl"
         else frame.to_parquet(target))
        print(f"{target}: {len(frame)} conversations, {answers} distinct answers")
        return
    if target.suffix == ".jsonl":
        frame.to_json(target, orient="records", lines=True)
    elif target.suffix == ".parquet":
        frame.to_parquet(target)
    else:
        frame.to_csv(target, index=False)
    print(f"{target}: {len(frame)} rows, {frame['answer'].nunique()} distinct answers")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--chat"]
    main(args[0] if args else "sums.jsonl", chat="--chat" in sys.argv[1:])
