"""The laptop chapter's fair test: the registered grid as a table, the selection grid with
its choice marked, the final table with its controls, the learning curves, and PC's
verdicts by the registered rule, on made-up documents."""

import dataclasses
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from scipy.stats import t  # noqa: E402

from perceptcoh.book import laptop_fair  # noqa: E402
from perceptcoh.engine.fair import FAIR_METHODS, KNOBS, final_plan, registration  # noqa: E402

REGISTERED = {"registration": registration("laptop"), "committed_in": "8b48998" + "0" * 33}
PROBES = {"pc": 0.20, "fitnet": 0.25, "pkt": 0.20, "sp": 0.195, "cc": 0.15, "rkd": 0.201,
          "kd": 0.30, "ce": 0.10, "untrained": 0.05}
NOISE = (0.0, 0.004, -0.004)


def curve(scale):
    return [{"step": step, "loss": scale * (2 - step / 100), "transfer_loss": None,
             "cross_entropy": 4.0, "gradient_ratio": 1.0 + step / 100,
             "feature_norm": 3.0 * scale, "effective_rank": 10.0} for step in (0, 50, 100)]


def final_document():
    runs = []
    for seed, noise in zip((1, 2, 3), NOISE):
        for method, probe in PROBES.items():
            # PC's gap is 0.01 below everyone's, whose gaps are 0.28.
            gap = 0.27 if method == "pc" else 0.28
            protocol = "supervised" if method in ("ce", "untrained") else "pure"
            runs.append({"key": {"method": method, "protocol": protocol, "seed": seed},
                         "metrics": {"linear_probe_top1": probe + noise,
                                     "knn_top1": probe - 0.01,
                                     "perception_gap_r1": gap + noise / 10},
                         "curve": curve(1.0 if method != "ce" else 0.5)})
    chosen = {m: {"gradient_ratio": 1.0, "knob": KNOBS[m].name if m in KNOBS else None,
                  "value": KNOBS[m].values[0] if m in KNOBS else None} for m in FAIR_METHODS}
    return {"runs": runs, "chosen": chosen, "registered": REGISTERED}


def test_the_verdicts_follow_the_registered_rule():
    rows = {(row["baseline"], row["score"]): row for row in laptop_fair.verdicts(
        final_document())}
    assert len(rows) == 2 * (len(FAIR_METHODS) - 1)
    # Differences with no spread: intervals are points.
    assert rows["fitnet", "probe"]["verdict"] == "behind"
    assert rows["sp", "probe"]["verdict"] == "on par"  # ahead by half a point: within the margin
    assert rows["cc", "probe"]["verdict"] == "ahead"
    assert rows["rkd", "probe"]["verdict"] == "on par"
    assert rows["kd", "probe"]["group"] == "class-aware"
    # The gap margin is 1% of the CE-only student's mean gap (0.28): 0.0028; PC is 0.01 lower.
    assert rows["fitnet", "gap"]["margin"] == pytest.approx(0.01 * 0.28)
    assert rows["fitnet", "gap"]["verdict"] == "ahead"


def test_an_interval_across_zero_and_the_margin_is_undecided():
    document = final_document()
    for run in document["runs"]:
        if run["key"]["method"] == "pkt":
            run["metrics"]["linear_probe_top1"] += {1: -0.03, 2: 0.03, 3: 0.0}[run["key"]["seed"]]
    row = next(r for r in laptop_fair.verdicts(document)
               if (r["baseline"], r["score"]) == ("pkt", "probe"))
    differences = [0.0 - (-0.03), 0.004 - 0.034, -0.004 - (-0.004)]
    mean = sum(differences) / 3
    spread = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    half = t.ppf(0.95, 2) * spread / math.sqrt(3)
    assert (row["low"], row["high"]) == pytest.approx((mean - half, mean + half))
    assert row["verdict"] == "undecided"


def test_the_answer_counts_each_verdict_in_its_group():
    sentence = laptop_fair.answer(laptop_fair.verdicts(final_document()))
    assert "on the probe, against the 5 class-unaware baselines, PC is ahead 1, on par 3, " \
           "behind 1; against KD, behind" in sentence


def test_tables_show_the_registration_the_choice_and_the_controls():
    registered = laptop_fair.registration_table(REGISTERED)
    assert "8b48998000" in registered and "temperature" in registered
    unregistered = laptop_fair.registration_table({**REGISTERED, "committed_in": None})
    assert "(not committed)" in unregistered
    final = laptop_fair.final_table(final_document())
    assert "CE only (labels)" in final and "untrained" in final and "20.0 ± 0.4" in final
    assert final.count("none of 3") == len(FAIR_METHODS) + 2
    failing = final_document()
    failing["runs"][0]["collapsed"] = True  # seed 1's PC
    failing["runs"][1]["diverged"] = {"epoch": 1, "loss": float("inf")}  # seed 1's FitNet
    announced = laptop_fair.final_table(failing)
    assert "seed 1 collapsed" in announced and "seed 1 diverged" in announced
    selection = {"runs": [{"key": {"method": "pc", "gradient_ratio": r, "knob": "metric",
                                   "value": v, "seed": 0},
                           "collapsed": r == 10.0, "diverged": None,
                           "metrics": {"val_linear_probe_top1": 0.1 * r / 10 + 0.1}}
                          for r in (0.3, 1.0, 3.0, 10.0) for v in ("euclidean", "cosine")],
                 "chosen": {"pc": {"gradient_ratio": 3.0, "value": "cosine", "edge": None}},
                 "extensions": {"pc": [30.0]}}
    table = laptop_fair.selection_table(selection)
    assert "PC (ours) (grid extended)" in table
    assert "▶ 13.0" in table and "†" in table and table.count("▶") == 2  # and the footnote
    assert "not saved yet" in laptop_fair.selection_table(None)
    assert "not saved yet" in laptop_fair.final_table(None)


def test_the_curves_have_a_panel_per_quantity_and_a_line_per_method():
    figure = laptop_fair.plot_curves(final_document())
    assert len(figure.axes) == 4
    loss_axis = figure.axes[0]
    assert len(loss_axis.lines) == len(FAIR_METHODS) + 1  # and CE
    assert loss_axis.lines[0].get_ydata()[0] == pytest.approx(1.0)  # relative to the start
    plt.close(figure)


def test_the_live_plan_is_the_chosen_setting_of_one_method_from_the_first_final_seed(tmp_path):
    """The live check re-runs exactly the final plan's run of the method: same key, same
    config but the root (its output folder lies under the live root)."""
    document = dict(final_document(), scale="laptop")
    document["chosen"]["pc"] = {"gradient_ratio": 3.0, "knob": "metric", "value": "cosine"}
    plan = laptop_fair.live_plan(document, root=str(tmp_path))
    (run,) = plan.runs
    assert run.key["method"] == "pc" and run.key["seed"] == 1
    assert (run.key["gradient_ratio"], run.key["value"]) == (3.0, "cosine")
    assert run.config.loss_options == {"metric_student": "cosine", "metric_teacher": "cosine"}
    assert run.config.output_dir.startswith(str(tmp_path))
    (full,) = [r for r in final_plan("laptop", document["chosen"]).runs if r.key == run.key]
    assert dataclasses.replace(full.config, output_dir=run.config.output_dir) == run.config
    with pytest.raises(ValueError, match="method"):
        laptop_fair.live_plan(document, method="crd", root=str(tmp_path))


def test_the_live_check_of_a_final_run_takes_the_final_runs_seed_spread():
    """Every key of a final run names a knob, so the comparison's runs (no knob) are none
    of them: the tolerance takes the spread of ``pool``, the final runs (a re-run of the
    laptop chapter failed on this with a division by zero)."""
    from perceptcoh.book.laptop import compare_live, seed_spread

    document = final_document()
    for run in document["runs"]:
        run["key"].update(protocol="pure", knob=None)
        run["beta"], run["collapsed"] = 1.0, False
    document["provenance"] = {"torch": "x", "device": "cpu", "cpu_threads": 1}
    live = {"runs": [run for run in document["runs"]
                     if run["key"]["method"] == "pc" and run["key"]["seed"] == 1],
            "provenance": {"torch": "x", "device": "cpu", "cpu_threads": 2}}
    floor = dict.fromkeys(("top1", "linear_probe_top1", "knn_top1", "perception_gap_r1"), 0.0)
    with pytest.raises(ValueError, match="no seed spread"):
        compare_live(live, document, floor)
    check = compare_live(live, document, floor, pool=document["runs"])
    spread = seed_spread(document["runs"], "pc", "pure", "linear_probe_top1")
    assert check.hold and not check.locked and spread > 0
    assert check.compared[0][4] == pytest.approx(4 * math.sqrt(2) * spread)
