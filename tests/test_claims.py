"""Published claims: the shipped files load, and each verdict (supported, contradicted, not
settled, no runs) and its numbers match an independent computation (scipy) on runs written
straight into a store."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from harness.errors import ConfigError
from harness.report.build import claim_verdicts
from harness.report.claimfile import (CONTRADICTED, NO_RUNS, SUPPORTED, UNSETTLED, load_claims,
                                      parse_claim)
from harness.results.store import open_store
from report_fixture import fixture_row

LORA = {0: 0.800, 1: 0.810, 2: 0.805}


def write(url, accuracies: dict[str, dict[int, float]], task: str = "synthetic", curves: dict | None = None,
          **fields_by_method) -> None:
    """Finished runs without test predictions (seed-level tests), one per method and seed."""
    store = open_store(url)
    for i, (method, by_seed) in enumerate(accuracies.items()):
        for seed, acc in by_seed.items():
            row = {**fixture_row("lora", seed, i), "method": method, "task": task, "accuracy": acc,
                   "run_id": f"{method}-{seed}", "config_hash": f"h-{method}-{seed}",
                   "config_json": f'{{"method": {{"name": "{method}", "r": 8}}, "seed": {seed}}}'}
            for name, values in fields_by_method.get(method, {}).items():
                row[name] = values[seed]
            curve = (curves or {}).get(method, {}).get(seed, [acc])
            store.record(row, [{"epoch": e + 1, "split": "validation", "metric": "accuracy", "value": v}
                               for e, v in enumerate(curve)])


def verdict(url, name: str, dirs=()):
    from harness.config import ReportConfig

    found = [v for v in claim_verdicts(url, options=ReportConfig(claims_dirs=list(dirs))) if v.claim.name == name]
    assert len(found) == 1
    return found[0]


def paired(first: dict, second: dict) -> tuple[float, float, float, float]:
    """(mean difference, p, low, high) of a paired t-test, computed here with scipy."""
    d = np.array([first[s] - second[s] for s in sorted(first)])
    p = stats.ttest_rel([first[s] for s in sorted(first)], [second[s] for s in sorted(first)]).pvalue
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return d.mean(), p, d.mean() - half, d.mean() + half


def effect_numbers(text: str) -> list[float]:
    """The difference and interval printed in a verdict's effect."""
    import re

    return [float(x) for x in re.findall(r"[+-]\d+\.\d+", text.split(":", 1)[1])][:3]


def test_the_shipped_claims_load_and_each_names_a_command():
    claims = load_claims()
    names = {c.name for c in claims}
    assert {"dora_beats_lora", "qlora_matches_16bit", "loraplus_converges_faster", "vera_matches_lora",
            "lora_forgets_less", "tuned_lr_within_two_points", "legal_case_ranking"} <= names
    assert all(c.command.startswith("python -m harness") and c.source for c in claims)


@pytest.mark.parametrize("dora, expected", [
    ({0: 0.850, 1: 0.865, 2: 0.845}, SUPPORTED),
    ({0: 0.700, 1: 0.720, 2: 0.690}, CONTRADICTED),
    ({0: 0.810, 1: 0.800, 2: 0.815}, UNSETTLED),
])
def test_a_better_claim_matches_a_paired_t_test_computed_independently(tmp_path, dora, expected):
    url = tmp_path / "s.sqlite"
    write(url, {"lora": LORA, "dora": dora})
    v = verdict(url, "dora_beats_lora")
    diff, p, low, high = paired(dora, LORA)
    assert v.verdict == expected
    assert effect_numbers(v.effect) == pytest.approx([round(diff, 4), round(low, 4), round(high, 4)], abs=1e-4)
    assert f"p={p:.3g}" in v.evidence and "n = 3 seeds" in v.evidence
    assert (p < 0.05) == (expected != UNSETTLED)
    assert "the source reports +0.0370" in " ".join(v.notes)
    assert v.here.startswith("source: model: LLaMA-7B") and "3 seeds" in v.here


@pytest.mark.parametrize("shift, expected", [
    ({0: 0.001, 1: -0.001, 2: 0.0015}, SUPPORTED),  # the interval inside ±0.01
    ({0: -0.050, 1: -0.060, 2: -0.055}, CONTRADICTED),  # wholly below -0.01
    ({0: 0.030, 1: -0.030, 2: 0.010}, UNSETTLED),  # straddles the margin
])
def test_an_equivalence_claim_compares_the_interval_with_its_margin(tmp_path, shift, expected):
    url = tmp_path / "s.sqlite"
    qlora = {s: LORA[s] + shift[s] for s in LORA}
    write(url, {"lora": LORA, "qlora": qlora})
    v = verdict(url, "qlora_matches_16bit")
    _, _, low, high = paired(qlora, LORA)
    assert v.verdict == expected
    assert (-0.01 <= low and high <= 0.01) == (expected == SUPPORTED)
    assert effect_numbers(v.effect)[1:] == pytest.approx([round(low, 4), round(high, 4)], abs=1e-4)


def test_a_ranking_needs_every_neighbour_and_its_task(tmp_path):
    url = tmp_path / "s.sqlite"
    write(url, {"lora": {0: 0.90, 1: 0.91, 2: 0.905}, "qlora": {0: 0.85, 1: 0.86, 2: 0.852},
                "dora": {0: 0.80, 1: 0.805, 2: 0.81}}, task="scotus_outcome")
    assert verdict(url, "legal_case_ranking").verdict == SUPPORTED
    other = tmp_path / "other.sqlite"  # the same runs on another task do not bear on it
    write(other, {"lora": LORA, "qlora": LORA, "dora": LORA})
    v = verdict(other, "legal_case_ranking")
    assert v.verdict == NO_RUNS and "python -m harness -m +experiment=legal_case" in v.notes[0]


def test_a_lower_is_better_metric_turns_the_direction(tmp_path):
    url = tmp_path / "s.sqlite"
    lora_f, full_f = {0: 0.010, 1: 0.020, 2: 0.015}, {0: 0.200, 1: 0.250, 2: 0.220}
    write(url, {"lora": LORA, "full": LORA}, lora={"forgetting": lora_f}, full={"forgetting": full_f})
    v = verdict(url, "lora_forgets_less")
    diff, p, _, _ = paired(lora_f, full_f)
    assert v.verdict == SUPPORTED and diff < 0 and f"p={p:.3g}" in v.evidence


def test_sooner_is_a_sign_test_over_seeds(tmp_path):
    url = tmp_path / "s.sqlite"
    seeds = range(6)
    lora = {s: 0.80 for s in seeds}
    curves = {"lora": {s: [0.70, 0.75, 0.78, 0.80] for s in seeds},
              "loraplus": {s: [0.76, 0.80, 0.81, 0.81] if s < 6 else [0.7] * 4 for s in seeds}}
    write(url, {"lora": lora, "loraplus": lora}, curves=curves)
    v = verdict(url, "loraplus_converges_faster")
    p = stats.binomtest(6, 6, 0.5).pvalue
    assert v.verdict == SUPPORTED and f"p={p:.3g}" in v.evidence and "sooner on 6 of 6 seeds" in v.effect
    url3 = tmp_path / "three.sqlite"  # three seeds can never reach p < 0.05
    write(url3, {"lora": {s: 0.8 for s in range(3)}, "loraplus": {s: 0.8 for s in range(3)}},
          curves={m: {s: c[s] for s in range(3)} for m, c in curves.items()})
    assert verdict(url3, "loraplus_converges_faster").verdict == UNSETTLED


def test_a_user_claim_folder_adds_claims_and_a_bad_file_is_one_line(tmp_path):
    mine = tmp_path / "claims"
    mine.mkdir()
    (mine / "vera_beats_dora.yaml").write_text(
        "says: VeRA beats DoRA\nsource: my notes\ntest: better\nmethods: [vera, dora]\n"
        "metric: accuracy\ncommand: python -m harness -m method=vera,dora seed=0,1,2\n")
    url = tmp_path / "s.sqlite"
    write(url, {"dora": LORA, "vera": {s: v + 0.05 for s, v in LORA.items()}})
    assert verdict(url, "vera_beats_dora", [mine]).verdict == SUPPORTED
    (mine / "broken.yaml").write_text("says: x\nsource: y\ntest: beats\nmethods: [a, b]\nmetric: accuracy\ncommand: c\n")
    with pytest.raises(ConfigError, match="test must be one of better, equivalent, ranking, within, sooner"):
        parse_claim(mine / "broken.yaml")
    ran = subprocess.run([sys.executable, "-m", "harness.report", "--store", str(url), "--claims",
                          "--claims-dir", str(mine)], capture_output=True, text=True)
    assert ran.returncode == 2 and len(ran.stderr.strip().splitlines()) == 1 and "broken.yaml" in ran.stderr


def test_claims_print_alone_and_say_which_command_makes_the_runs(tmp_path):
    url = tmp_path / "s.sqlite"
    write(url, {"lora": LORA, "dora": {0: 0.850, 1: 0.865, 2: 0.845}})
    ran = subprocess.run([sys.executable, "-m", "harness.report", "--store", str(url), "--claims",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "DoRA beats LoRA [dora_beats_lora]\n  verdict: supported on synthetic — tiny_bert" in ran.stdout
    assert "run: python -m harness -m method=lora,vera seed=0,1,2" in ran.stdout
    assert not (tmp_path / "out").exists()  # --claims writes nothing
