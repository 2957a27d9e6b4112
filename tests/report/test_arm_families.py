"""Multi-objective arms are named by their objectives in the report, and arms are grouped by what they transfer."""

from __future__ import annotations

from distillab.report.tables import _inputs_table, family_of, recipe_label
from distillab.train.arms import parse_arm


def audit_of(recipes: dict[str, dict], roles: dict[str, str] | None = None) -> dict:
    roles = roles or {}
    return {"arms": list(recipes),
            "inputs": {arm: {"meta": {"recipe": recipe, **({"role": roles[arm]} if arm in roles else {})}}
                       for arm, recipe in recipes.items()}}


def test_recipe_labels_spell_out_every_objective_and_non_unit_weights():
    audit = audit_of({
        "fitnet": parse_arm("kd+hidden_mse:weight=0.5,layers=uniform").recipe(),
        "kd": parse_arm("kd").recipe(),
        "rkd": parse_arm("rkd").recipe(),
        "tfidf": {"loss": "reference_baseline", "kind": "tfidf_linear", "C": 30.0, "min_df": 2},
    })
    assert recipe_label(audit, "fitnet") == "KD (T=4, α=0.7) + hidden_mse ×0.5 (layers=uniform, normalize=False)"
    assert recipe_label(audit, "kd") == "KD (T=4, α=0.7)"
    assert recipe_label(audit, "rkd") == "rkd (layers=last:1, distance_weight=1.0, angle_weight=2.0)"
    assert recipe_label(audit, "tfidf") == "reference (tfidf_linear)"  # a baseline's own settings stay in its sidecar


def test_quantization_aware_and_int8_students_are_named_apart():
    qat = parse_arm("kd:fake_quant=int8").recipe()
    multi = parse_arm("kd+hidden_mse:weight=0.5,fake_quant=int8").recipe()
    audit = audit_of({"ptq": {**parse_arm("kd").recipe(), "quantized": "int8", "backend": "torch.ao"},
                      "qat": qat, "qat-int8": {**qat, "quantized": "int8", "backend": "torch.ao"}, "multi": multi})
    assert recipe_label(audit, "ptq") == "KD (T=4, α=0.7) int8"
    assert recipe_label(audit, "qat") == "KD (T=4, α=0.7) QAT"
    assert recipe_label(audit, "qat-int8") == "KD (T=4, α=0.7) QAT int8"
    assert recipe_label(audit, "multi").endswith("normalize=False) QAT")


def test_arms_are_grouped_by_family_in_the_inputs_table():
    recipes = {"crd": parse_arm("kd+crd_lite").recipe(), "vanilla": {"loss": "vanilla"},
               "fitnet": parse_arm("kd+hidden_mse").recipe(), "tfidf": {"loss": "reference_baseline"},
               "teacher": {}, "kd": parse_arm("kd").recipe()}
    audit = audit_of(recipes, roles={"tfidf": "reference"})
    assert [family_of(audit, a) for a in recipes] == ["relation", "logits", "hidden", "reference", "teacher", "logits"]
    table = _inputs_table(audit)
    assert [row.id for row in table.rows] == [f"inputs-{a}" for a in ("teacher", "vanilla", "kd", "fitnet", "crd", "tfidf")]
