"""The vocabulary (inrroute.study) is the one owner of the study's names: the schema, the
rules and the profiles agree with it."""

import re
from pathlib import Path

import pytest

from inrroute import study
from inrroute.config import ConfigError, from_mapping, load_schema

ROOT = Path(__file__).resolve().parents[1]


def test_schema_datasets_are_the_vocabulary():
    props = load_schema()["properties"]
    assert props["datasets"]["items"]["enum"] == list(study.DATASETS)
    assert props["caps"]["propertyNames"]["enum"] == list(study.DATASETS)


def test_schema_reader_families_are_the_vocabulary():
    prop = load_schema()["properties"]["probes"]["properties"]["reader_families"]
    assert prop["items"]["enum"] == list(study.READER_FAMILIES)
    assert prop["default"] == list(study.READER_FAMILIES)
    assert "probes.reader_families" in study.RULE_CONFIG["fresh_reader"]
    with pytest.raises(ConfigError, match="reader_families"):
        from_mapping({"probes": {"reader_families": ["mlp", "resnet"]}})


def test_schema_pattern_admits_every_combination_and_the_package_checks_them_exactly():
    pattern = load_schema()["properties"]["combinations"]["items"]["pattern"]
    for name in (*study.ALL_COMBINATION_NAMES, "all"):
        assert re.match(pattern, name), name
    assert len(study.ALL_COMBINATION_NAMES) == study.N_COMBINATIONS == 2 ** len(study.FACTORS)
    with pytest.raises(ConfigError, match="combinations.0"):
        from_mapping({"combinations": ["cluster1_route0"]})  # admitted by the loose pattern


def test_schema_has_a_section_for_every_rule_config_key():
    schema = load_schema()["properties"]
    for rule, keys in study.RULE_CONFIG.items():
        for key in keys:
            node = schema
            for part in key.split("."):
                if part == "{dataset}":
                    break
                assert part in node, f"{rule}: config key {key!r} is not in the schema"
                node = node[part].get("properties", {})


def test_combination_names_round_trip():
    for combo in study.ALL_COMBINATIONS:
        assert study.Combination.parse(combo.name) == combo
        assert study.combination_name(**combo.levels()) == combo.name
    assert study.BASELINE == "cluster0_route0_biasroute0_densefit0"
    assert study.parse_combination("cluster1_route0_biasroute1_densefit0") == {
        "cluster": 1, "route": 0, "bias_route": 1, "dense_fit": 0,
    }  # fmt: skip


@pytest.mark.parametrize("bad", ["cluster2_route0_biasroute0_densefit0", "route0", "", "all"])
def test_bad_combination_names_are_refused(bad):
    with pytest.raises(study.VocabularyError, match=re.escape(study.COMBINATION_TEMPLATE)):
        study.parse_combination(bad)


def test_every_run_stage_has_its_runner_and_summary_variables():
    import importlib

    names = [v for s in study.RUN_STAGES for v in s.summary]
    assert len(names) == len(set(names))
    for stage in study.RUN_STAGES:
        module = importlib.import_module(f"inrroute.{stage.module}")
        assert callable(getattr(module, f"run_{stage.rule}")), stage.rule
        assert stage.rule in study.RULE_CONFIG
    assert set(study.GPU_RULES) >= {"meta_train", "fit"}
