"""LexGLUE (Chalkidis et al. 2022) through ``datasets``: from the hub, or from local Parquet files
laid out as the hub stores them (``<data_path>/<subset>/<split>-*.parquet``), same conversion.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from harness.errors import first_line
from harness.tasks.data import TASK_LOADERS, TaskDataError
from harness.tasks.localhub import cache_dir, check_repo, load_as_the_run_does

HUB_ID = "coastalcph/lex_glue"


class Subset(NamedTuple):
    text: str  # the text field
    label: str  # the label field: a class index, a list of them, or the right choice's index
    task_type: str  # the task.task_type the subset is
    choices: str | None = None  # the field with the candidate answers (multiple choice)


SUBSETS = {
    "ecthr_a": Subset("text", "labels", "multi_label"),
    "ecthr_b": Subset("text", "labels", "multi_label"),
    "scotus": Subset("text", "label", "single_label"),
    "eurlex": Subset("text", "labels", "multi_label"),
    "ledgar": Subset("text", "label", "single_label"),
    "unfair_tos": Subset("text", "labels", "multi_label"),
    "case_hold": Subset("context", "label", "multiple_choice", choices="endings"),
}


def _split_files(folder: Path, subset: str, name: str) -> dict[str, list[str]]:
    """``<folder>/<subset>/<split>-*.parquet`` for each split that has files; none is an error."""
    split_files = {}
    for split in ("train", "validation", "test"):
        found = sorted(str(p) for p in (folder / subset).glob(f"{split}-*.parquet"))
        if found:
            split_files[split] = found
    if not split_files:
        raise TaskDataError(f"task {name}: no {subset}/<split>-*.parquet files under {folder} "
                            f"(task.data_path; null loads {HUB_ID} from the hub)")
    return split_files


def _local(folder: Path, subset: str, name: str):
    """The subset's Parquet files, cached by ``datasets`` under this folder's path and content
    (:func:`harness.tasks.localhub.cache_dir`): an edited file is read anew, never stale."""
    import datasets

    return datasets.load_dataset("parquet", data_files=_split_files(folder, subset, name),
                                 cache_dir=cache_dir(folder / subset))


def check_local(cfg) -> None:
    """The preflight's look at a local LexGLUE folder: first the Parquet footers (train and test
    files, no git-lfs pointer, none empty, each with the subset's fields), then the subset
    loaded and checked as the run loads it (:func:`harness.tasks.localhub.load_as_the_run_does`)."""
    import pyarrow.parquet as pq

    if cfg.subset not in SUBSETS:
        raise TaskDataError(f"task {cfg.name}: unknown LexGLUE subset {cfg.subset!r}; "
                            f"known: {', '.join(SUBSETS)} (task.subset)")
    folder = Path(cfg.data_path).expanduser()
    if not folder.is_dir():
        raise TaskDataError(f"task {cfg.name}: task.data_path must be a folder "
                            f"(<folder>/{cfg.subset}/<split>-*.parquet), got {folder}")
    files = _split_files(folder, cfg.subset, cfg.name)
    check_repo(cfg, folder / cfg.subset, f"LexGLUE {cfg.subset}")
    missing = [s for s in ("train", "test") if s not in files]
    if missing:
        raise TaskDataError(f"task {cfg.name}: no {cfg.subset}/{missing[0]}-*.parquet under {folder}")
    sub = SUBSETS[cfg.subset]
    fields = [sub.text, sub.label, *([sub.choices] if sub.choices else [])]
    rows = {}
    for split, paths in files.items():
        rows[split] = 0
        for path in paths:
            try:
                meta = pq.read_metadata(path)
            except Exception as exc:  # noqa: BLE001 - pyarrow's message, on one line
                raise TaskDataError(f"task {cfg.name}: cannot read {path}: {first_line(exc)}") from None
            names = meta.schema.to_arrow_schema().names
            absent = [f for f in fields if f not in names]
            if absent:
                raise TaskDataError(f"task {cfg.name}: column(s) {absent} not in {path}; "
                                    f"its columns: {names[:20]}")
            rows[split] += meta.num_rows
        if not rows[split]:
            raise TaskDataError(f"task {cfg.name}: the {split} files of {folder / cfg.subset} have no rows")
    load_as_the_run_does(cfg, folder / cfg.subset)  # wrong field types pass the footers


def _label_names(feature) -> list[str] | None:
    feature = getattr(feature, "feature", feature)  # a Sequence of ClassLabel for multi-label
    return list(feature.names) if hasattr(feature, "names") else None


def _is_sequence(feature) -> bool:
    """A list-valued feature (``Sequence`` or ``List`` in ``datasets``; multi-label fields)."""
    return isinstance(feature, (list, tuple)) or hasattr(feature, "feature")


def to_frame(dataset_dict, subset: str) -> pd.DataFrame:
    """Hub rows -> text/label[/choices]/split; class indices become the hub's class names."""
    text_field, label_field, _, choices_field = SUBSETS[subset]
    frames, starts = [], {}
    names = None
    for split, ds in dataset_dict.items():
        starts[split] = sum(map(len, frames))
        names = names or _label_names(ds.features[label_field])
        df = ds.to_pandas()
        text = df[text_field]
        if len(text) and not isinstance(text.iloc[0], str):  # ECtHR: a list of fact paragraphs
            text = text.map(lambda paragraphs: "\n".join(map(str, paragraphs)))
        frame = pd.DataFrame({"text": text, "split": split})
        if choices_field:  # the label is the index of the right choice, not a class
            frame["choices"] = df[choices_field].map(list)
            frame["label"] = df[label_field].astype(int)
        elif _is_sequence(ds.features[label_field]):  # a list of classes per row
            frame["label"] = df[label_field].map(lambda ids: [names[i] if names else str(i) for i in ids])
        else:
            frame["label"] = df[label_field].map(lambda i: names[i] if names else str(i))
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["split_rows"] = {split: (start, f"{subset}/{split}") for split, start in starts.items()}
    if names and not choices_field:
        out.attrs["label_names"] = names
    return out


# a folder; none: the hub
@TASK_LOADERS.register("lex_glue", data_path="optional", data_source="hub:lex_glue", reads="folder",
                       check=check_local)
def load_lex_glue(cfg) -> pd.DataFrame:
    subset = cfg.subset
    if subset not in SUBSETS:
        raise TaskDataError(f"task {cfg.name}: unknown LexGLUE subset {subset!r}; "
                            f"known: {', '.join(SUBSETS)} (task.subset)")
    kind = SUBSETS[subset].task_type
    if cfg.task_type != kind:
        raise TaskDataError(f"task {cfg.name}: LexGLUE {subset} is {kind}, not {cfg.task_type} "
                            f"(task.task_type={kind})")
    if cfg.data_path:
        folder = Path(cfg.data_path).expanduser()
        if not folder.is_dir():
            raise TaskDataError(f"task {cfg.name}: data folder not found: {folder} (task.data_path)")
        ds, source = _local(folder, subset, cfg.name), f"parquet:{folder.resolve()}/{subset}"
    else:
        import datasets

        ds, source = datasets.load_dataset(HUB_ID, subset), f"hub:{HUB_ID}/{subset}"
    out = to_frame(ds, subset)
    out.attrs["source"] = source
    return out
