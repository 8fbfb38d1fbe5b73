"""Bad input to ``python -m harness.dashboard``: one line on stderr, ``error: ...``, exit code 2,
before anything serves; a password in the store's URL is never repeated. And what the views are
made of, checked without a browser: the Pareto points and front in each field's direction, the
filters, the compare page's counts."""
from __future__ import annotations

import json
import os
import socket
import sqlite3

import pytest

pytest.importorskip("dash", reason="Dash is not installed: pip install -e '.[dashboard]'")

from harness.dashboard.__main__ import OFFLINE, main  # noqa: E402
from harness.results.secrets import PASSWORDS_ENV  # noqa: E402
from tests.report_fixture import ACCURACY, MIB, PEAK_MIB, make_fixture_store  # noqa: E402


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    """The command sets the hub offline and keeps passwords in the environment: undone after."""
    for key in (*OFFLINE, PASSWORDS_ENV):
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)


def one_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "results.sqlite"
    make_fixture_store(path)
    return path


def test_a_missing_unreadable_or_foreign_store_is_one_line(tmp_path, capsys):
    assert "no results store at" in one_error(capsys, ["--store", str(tmp_path / "none.sqlite")])
    assert "is a directory, not a results store; pass --store a file" in one_error(capsys, ["--store", str(tmp_path)])
    (tmp_path / "notes.sqlite").write_text("not a database, only text " * 100)
    assert "is not a results store" in one_error(capsys, ["--store", str(tmp_path / "notes.sqlite")])
    with sqlite3.connect(tmp_path / "other.sqlite") as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    foreign = one_error(capsys, ["--store", str(tmp_path / "other.sqlite")])
    assert "not a results store of this harness; pass --store a store the harness wrote" in foreign
    assert "store.url" not in foreign  # a training run's setting: the dashboard's flag is --store
    assert "unknown results store scheme" in one_error(capsys, ["--store", "mongodb://db/results"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: an unreadable file needs another user")
def test_an_unreadable_store_is_one_line(store, capsys):
    store.chmod(0)
    try:
        assert "cannot open the results store" in one_error(capsys, ["--store", str(store)])
    finally:
        store.chmod(0o644)


def test_a_password_in_the_store_url_is_never_shown(capsys):
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'peft-harness[postgres]'")
    with socket.socket() as s:  # a port nothing listens on: the server cannot be reached
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = one_error(capsys, ["--store", f"postgresql://alice:hunter2secret@127.0.0.1:{port}/results"])
    assert "hunter2secret" not in line and "alice:***@" in line


def test_a_port_in_use_or_out_of_range_is_one_line(store, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = one_error(capsys, ["--store", str(store), "--port", str(port)])
    assert f"cannot serve on 127.0.0.1:{port}" in line and "in use" in line and "--port" in line
    assert "between 1 and 65535" in one_error(capsys, ["--store", str(store), "--port", "70000"])
    assert "--refresh must be positive" in one_error(capsys, ["--store", str(store), "--refresh", "0"])


# --- the views' content, without a browser --------------------------------------------------------

def test_pareto_points_and_fronts_follow_each_fields_direction(store):
    from harness.dashboard import pareto
    from harness.dashboard.data import StoreView, pick

    view = StoreView(store)
    snap = view.snapshot()
    per_run = snap.per_run[snap.per_run.run_id.isin(pick(snap.runs, {"stage": "final"}).run_id)]
    found = pareto.points(per_run, "peak_memory_bytes", "accuracy").set_index("label")
    for method, seeds in ACCURACY.items():
        assert found.at[method, "n"] == len(seeds)
        assert found.at[method, "y"] == pytest.approx(sum(seeds.values()) / len(seeds))
        memory = [PEAK_MIB[method] + 10 * s for s in seeds]
        assert found.at[method, "x"] == pytest.approx(sum(memory) / len(memory))
        assert (found.at[method, "y_low"] < found.at[method, "y"]) == (len(seeds) > 1)
    # lower memory and higher accuracy are better: qlora (least memory), lora, dora, full (most accurate)
    assert pareto.front_labels(per_run, "peak_memory_bytes", "accuracy") == {
        "synthetic — tiny_bert": ["qlora", "lora", "dora", "full"]}
    # throughput is better high: the front now runs from the fastest
    front = pareto.front_labels(per_run, "train_samples_per_s", "accuracy")["synthetic — tiny_bert"]
    assert front[-1] == "lora" and "full" in front and "qlora" not in front
    figure = pareto.figure(per_run, "peak_memory_bytes", "accuracy", sorted(ACCURACY), ["none", "nf4"])
    assert {t.name for t in figure.data} >= {"lora · none", "qlora · nf4", "Pareto front: synthetic — tiny_bert"}
    assert figure.layout.xaxis.title.text == "Peak memory MiB (lower is better)"


def test_a_selection_without_one_of_the_axes_fields_says_so(store):
    """Runs that recorded one field only (an older harness, no energy counter): the Explore view
    is drawn with a note, not a callback's failure."""
    from harness import fields
    from harness.dashboard import callbacks, pareto
    from harness.dashboard.data import StoreView, axis_label

    view = StoreView(store)
    per_run = view.snapshot().per_run
    assert per_run[fields.get("energy_j").display_name].isna().all()  # this store recorded no energy
    shown = callbacks.explore(view, {"stage": "final"}, "energy_j", "accuracy")
    assert not shown["figure"].data and shown["rows"]  # the table still lists the selection
    assert shown["figure"].layout.annotations[0].text == (
        f"No finished run in this selection has both {axis_label(fields.get('energy_j'))} "
        f"and {axis_label(fields.get('accuracy'))}")
    assert pareto.front_labels(per_run, "energy_j", "accuracy") == {}


def test_filters_pick_what_the_report_would(store):
    from harness.dashboard.data import StoreView, pick, report_selection
    from harness.report.select import select_runs

    snap = StoreView(store).snapshot()
    chosen = pick(snap.runs, {"method": ["lora", "dora"], "seed": [0, 1], "stage": "final"})
    assert sorted(chosen.run_id) == ["dora-0", "dora-1", "lora-0", "lora-1"]
    failed = pick(snap.runs, {"status": ["failed"], "stage": "final"})
    assert list(failed.run_id) == ["lora-failed"]
    finished, others = select_runs(snap.raw, report_selection(snap.runs, failed, {"status": ["failed"]}))
    assert finished.empty and list(others.run_id) == ["lora-failed"]
    assert snap.counts() == {"finished": 15, "failed": 1, "running": 0}


def test_the_runs_table_pages_and_sorts_the_whole_selection(store):
    from harness.dashboard import table
    from harness.dashboard.data import StoreView

    chosen = StoreView(store).pick({"stage": "final"})
    rows, pages = table.page(chosen, "peak_memory_bytes", "accuracy", 0, [{"column_id": "accuracy",
                                                                           "direction": "desc"}])
    assert pages == 2 and len(rows) == table.PAGE_SIZE and rows[0]["accuracy"] == max(chosen.accuracy)
    assert rows[0]["peak_memory_mib"] == pytest.approx(chosen.loc[chosen.accuracy.idxmax(), "peak_memory_bytes"] / MIB)
    last, _ = table.page(chosen, "peak_memory_bytes", "accuracy", 1, [{"column_id": "accuracy", "direction": "desc"}])
    assert len(last) == len(chosen) - table.PAGE_SIZE and last[-1]["status"] == "failed"  # no accuracy: last
    newest, _ = table.page(chosen, "peak_memory_bytes", "accuracy", 0, [])
    assert newest[0]["id"] == chosen.sort_values("created_at", kind="stable").run_id.iloc[-1]


def test_compare_counts_are_mcnemars(tmp_path):
    import numpy as np

    from harness.dashboard.compare import counts
    from harness.dashboard.examples import disagreements, side
    from tests.report_fixture import make_prediction_store, prediction_row

    runs = [prediction_row("lora", 0, 0.80, n=200), prediction_row("dora", 0, 0.85, n=200)]
    make_prediction_store(tmp_path / "p.sqlite", runs)
    a, b = (side(row, preds["test"]) for row, preds in runs)
    test, cells = counts(a, b)
    right_a, right_b = (p["test"]["predictions"] == p["test"]["labels"] for _, p in runs)
    assert cells["only A right"] == int((right_a & ~right_b).sum()) == test.base_only
    assert cells["only B right"] == int((~right_a & right_b).sum()) == test.other_only
    assert sum(cells.values()) - cells["examples"] == 200 and test.diff == pytest.approx(0.05)
    assert list(disagreements(a, b)) == list(np.flatnonzero(right_a != right_b))
    assert json.loads(runs[0][0]["details_json"])["label_names"] == ["c0", "c1"] and a.labels[0] in ("c0", "c1")


def test_two_generation_runs_compared_with_their_texts_and_what_each_wrote(run_tiny, store_path):
    """A prompt task over classes stores its labels as indices and reads them back as the
    answers' texts: the page matches the two by the run's label names and shows the examples'
    texts, and for a generation task what each run wrote beside its prediction."""
    from harness.dashboard import compare
    from harness.dashboard.data import StoreView
    from harness.dashboard.examples import side, test_texts

    prompt = ["model=tiny_llama", "task.task_type=generation", "seed=0"]
    for method in ("lora", "dora"):
        assert run_tiny(*prompt, f"method={method}")["status"] == "finished"
    view = StoreView(store_path)
    a, b = (r.to_dict() for _, r in view.snapshot().raw.iterrows())
    arrays = view.predictions([a["run_id"], b["run_id"]])
    first = side(a, arrays[a["run_id"]])
    assert first.reference.dtype.kind in "iu"  # stored as class indices, read again as the answers' texts
    texts, why = test_texts(a, first.reference)
    assert not why and len(texts) == len(first.reference) == int(a["n_test"])
    # B as a run that wrote otherwise on three examples (the stored arrays, three texts changed)
    wrote = arrays[b["run_id"]]["generated"].astype(object)
    for i in (0, 5, 9):
        wrote[i] = f"{wrote[i]} (B's words {i})"
    arrays[b["run_id"]] = {**arrays[b["run_id"]], "generated": wrote}
    shown = compare.page(a, b, arrays)
    table = shown[-1]
    assert [c["id"] for c in table.columns] == ["example", "text", "label", "A", "B", "A wrote", "B wrote", "right"]
    changed = [r for r in table.data if r["B wrote"].endswith(f"(B's words {r['example']})")]
    assert [r["example"] for r in changed] == [0, 5, 9]
    assert all(r["text"] == texts[r["example"]] and r["A wrote"] == str(arrays[a["run_id"]]["generated"][r["example"]])
               for r in changed)
    assert not any(getattr(part, "id", None) == "texts-note" for part in shown)
