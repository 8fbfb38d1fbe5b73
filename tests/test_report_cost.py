"""The report's cost view: quality against time, energy, memory and money, per configuration.

Money is wall_s / 3600 x the price of the run's device kind, exactly; no price, no money; energy
stays empty where a run did not measure it; a bad cost setting fails in one line."""
from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf
from pypdf import PdfReader
from report_fixture import MIB, fixture_row

from harness.config import ConfigError, CostConfig, ReportConfig
from harness.report import build_report
from harness.report.__main__ import main as report_main
from harness.report.compare import analyze
from harness.report.cost import cost_frame, cost_table
from harness.results import load
from harness.results.store import open_store

SEEDS = {"lora": (0, 1, 2), "dora": (0, 1, 2), "full": (3, 4)}
PRICE = 3.6  # per cpu-hour: a run of 12 s costs 0.012


def row(method: str, seed: int) -> dict:
    """lora measured RAPL energy on a CPU, dora none, full NVML energy on a GPU."""
    r = {**fixture_row(method, seed, 0), "train_s": 10.0 + seed, "wall_s": 12.0 + seed,
         "device_kind": "cuda" if method == "full" else "cpu"}
    if method == "lora":
        r.update(energy_j=100.0 + 10 * seed, energy_kind="rapl_package")
    if method == "full":
        r.update(energy_j=500.0 + seed, energy_kind="nvml_gpu")
    return r


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cost") / "results.sqlite"
    s = open_store(path)
    for method, seeds in SEEDS.items():
        for seed in seeds:
            s.record(row(method, seed), [])
    return path


@pytest.fixture(scope="module")
def report(store):
    return build_report(store, store.parent / "out",
                        options=ReportConfig(cost={"per_device_hour": {"cpu": PRICE}, "currency": "EUR"}))


def finished_and_analysis(store):
    finished = load(store, decode=False)
    return finished, analyze(finished)


def test_money_is_wall_time_times_the_price_and_none_without_one(store):
    finished, a = finished_and_analysis(store)
    frame = cost_frame(a, finished, "synthetic", "tiny_bert", CostConfig({"cpu": PRICE}, "EUR"))
    by = frame.set_index("label")
    assert by.loc["lora", "money_per_run"] == pytest.approx((12 + 13 + 14) / 3 / 3600 * PRICE, abs=1e-15)
    assert by.loc["lora", "money_per_run"] == pytest.approx(0.013, abs=1e-15)
    assert by.loc["lora", "money_per_run_std"] == pytest.approx(0.001, abs=1e-15)
    assert by.loc["dora", "money_per_run"] == pytest.approx(0.013, abs=1e-15)
    assert pd.isna(by.loc["full", "money_per_run"]) and by.loc["full", "money_per_run_n"] == 0  # cuda: no price
    assert by.loc["lora", "currency"] == "EUR" and by.loc["lora", "price_per_hour"] == PRICE
    assert by.loc["lora", "accuracy"] == pytest.approx(0.81) and by.loc["lora", "n"] == 3
    assert by.loc["lora", "train_s"] == pytest.approx(11.0) and by.loc["full", "wall_s"] == pytest.approx(15.5)
    assert by.loc["lora", "peak_memory_mib"] == pytest.approx(510.0)

    table = cost_table(a, finished, "synthetic", "tiny_bert", CostConfig({"cpu": PRICE}, "EUR"))
    cells = {r[0].mean: {h: c.text() for h, c in zip(table.headers, r)} for r in table.rows}
    assert cells["lora"]["Cost EUR/run ↓"] == "0.013 ± 0.001"
    assert cells["full"]["Cost EUR/run ↓"] == "—"
    assert any("wall time / 3600 × the price per device-hour (cpu 3.6 EUR)" in n and "(cuda)" in n
               for n in table.notes)

    for unpriced in (None, CostConfig(), CostConfig({"cuda": None})):
        table = cost_table(a, finished, "synthetic", "tiny_bert", unpriced)
        assert not [h for h in table.headers if h.startswith("Cost")]
        assert any(n.startswith("No money shown") for n in table.notes)
        assert "money_per_run" not in cost_frame(a, finished, "synthetic", "tiny_bert", unpriced)


def test_energy_is_shown_where_measured_and_blank_otherwise(store):
    finished, a = finished_and_analysis(store)
    table = cost_table(a, finished, "synthetic", "tiny_bert")
    cells = {r[0].mean: {h: c.text() for h, c in zip(table.headers, r)} for r in table.rows}
    assert table.headers[:7] == ["Method", "n", "Accuracy ↑", "Macro-F1 ↑", "Train time s ↓",
                                 "Wall time s ↓", "Energy J ↓"]
    assert cells["lora"]["Energy J ↓"] == "110 ± 10" and cells["lora"]["Energy measured as"] == "rapl_package"
    assert cells["dora"]["Energy J ↓"] == "—" and cells["dora"]["Energy measured as"] == "not measured"
    assert cells["full"]["Energy J ↓"] == "503.5 ± 0.7071" and cells["full"]["Energy measured as"] == "nvml_gpu"
    assert cells["lora"]["Train time s ↓"] == "11 ± 1" and cells["lora"]["Accuracy ↑"] == "0.8100 ± 0.0100"
    assert cells["lora"]["Peak memory MiB ↓"] == "510 ± 10"
    column = table.headers.index("Energy J ↓")
    assert not [r for r in table.rows if r[column].best]  # a CPU package and a GPU: not one scale
    assert any("Energies of different kinds are not compared" in n for n in table.notes)
    finished.loc[finished.method == "full", "energy_kind"] = "rapl_package"
    table = cost_table(a, finished, "synthetic", "tiny_bert")
    assert {r[0].mean for r in table.rows if r[column].best} == {"lora"}
    assert "Peak train MiB ↓" not in table.headers  # not recorded by these runs


def test_one_run_without_energy_is_counted_apart(store):
    finished, a = finished_and_analysis(store)
    finished.loc[finished.run_id == "lora-2", ["energy_j", "energy_kind"]] = None
    frame = cost_frame(a, finished, "synthetic", "tiny_bert").set_index("label")
    assert frame.loc["lora", "energy_j"] == pytest.approx(105.0) and frame.loc["lora", "energy_j_n"] == 2
    cells = {r[0].mean: r for r in cost_table(a, finished, "synthetic", "tiny_bert").rows}
    headers = cost_table(a, finished, "synthetic", "tiny_bert").headers
    assert cells["lora"][headers.index("Energy J ↓")].text() == "105 ± 7.071 (2 of 3 runs)"


def test_peak_memory_per_phase_is_shown_when_the_runs_have_it(store):
    finished, a = finished_and_analysis(store)
    finished["peak_memory_train_bytes"] = [400 * MIB] * len(finished)
    finished["peak_memory_eval_bytes"] = [None] * (len(finished) - 1) + [300 * MIB]
    table = cost_table(a, finished, "synthetic", "tiny_bert")
    assert table.headers[-3:] == ["Peak memory MiB ↓", "Peak train MiB ↓", "Peak eval MiB ↓"]
    cells = {r[0].mean: [c.text() for c in r] for r in table.rows}
    assert cells["lora"][-2:] == ["400 ± 0", "—"]


def test_the_report_writes_the_cost_view_everywhere(report):
    tables = report.out_dir / "tables"
    md = (tables / "synthetic__tiny_bert.md").read_text()
    assert "### synthetic — tiny_bert: cost" in md and "| Cost EUR/run ↓ |" in md and "0.013 ± 0.001" in md
    assert "synthetic — tiny_bert: cost" in (report.out_dir / "report.md").read_text()
    assert "0.013 ± 0.001" in (tables / "synthetic__tiny_bert.html").read_text()
    assert r"Cost EUR/run $\downarrow$" in (tables / "synthetic__tiny_bert.tex").read_text()
    csv = pd.read_csv(tables / "synthetic__tiny_bert_cost.csv").set_index("label")
    assert csv.loc["lora", "money_per_run"] == pytest.approx(0.013) and pd.isna(csv.loc["dora", "energy_j"])
    figure = report.out_dir / "figures" / "synthetic__tiny_bert_cost_quality.png"
    assert figure.is_file() and figure in report.files
    text = " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(report.pdf).pages)
    assert "synthetic — tiny_bert: cost" in text and "0.013" in text and "rapl_package" in text
    assert "Accuracy against training time" in text


def test_bad_cost_settings_fail_with_one_line(store, tmp_path, capsys):
    for cost, message in [
        ({"per_device_hour": {"cpu": -1.0}}, "report.cost.per_device_hour.cpu must be a finite price >= 0 or null, got -1.0"),
        ({"per_device_hour": {"cpu": float("nan")}}, "report.cost.per_device_hour.cpu must be a finite price"),
        ({"per_device_hour": {"gpu": 1.0}}, "report.cost.per_device_hour: unknown device kind 'gpu'; known: cpu, cuda"),
        ({"per_device_hour": [1.0]}, "report.cost.per_device_hour must map a device kind to a price"),
        ({"price": 1.0}, "report.cost: unknown key(s) price; allowed: per_device_hour, currency"),
        ({"currency": ""}, "report.cost.currency must be a non-empty text"),
        (5, "report.cost must be a mapping"),
    ]:
        with pytest.raises(ConfigError) as info:
            ReportConfig(cost=cost)
        assert str(info.value).startswith(message) and "\n" not in str(info.value)
    out = str(tmp_path / "out")
    assert report_main(["--store", str(store), "--out", out, "--price", "cpu=cheap"]) == 2
    assert report_main(["--store", str(store), "--out", out, "--price", "tpu=1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --price must be KIND=PRICE, e.g. cpu=0.05; got 'cpu=cheap'",
        "error: report.cost.per_device_hour: unknown device kind 'tpu'; known: cpu, cuda"]


def test_the_price_comes_from_the_command_line_and_the_sweep_config(store, tmp_path):
    out = tmp_path / "out"
    assert report_main(["--store", str(store), "--out", str(out), "--format", "csv", "--no-pdf",
                        "--price", "cpu=3.6", "--price", "cuda=7.2", "--currency", "EUR"]) == 0
    csv = pd.read_csv(out / "tables" / "synthetic__tiny_bert_cost.csv").set_index("label")
    assert csv.loc["full", "money_per_run"] == pytest.approx(15.5 / 3600 * 7.2)

    from tests.conftest import compose_config

    cfg = compose_config(["report.cost.per_device_hour.cpu=0.05", "report.cost.currency=EUR"])
    assert OmegaConf.to_object(cfg.report).cost == CostConfig({"cpu": 0.05, "cuda": None}, "EUR")
    # the end-of-sweep hook rebuilds the settings from a plain container
    options = ReportConfig(**OmegaConf.to_container(cfg.report, resolve=True))
    assert options.cost.prices() == {"cpu": 0.05} and options.cost.currency == "EUR"
    assert ReportConfig().cost.prices() == {}  # the default shows no money
