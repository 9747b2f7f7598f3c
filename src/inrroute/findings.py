"""The text of ``results/FINDINGS.md``: the statistics tables put into words.

One section per study question of DESIGN.md section 1. This module computes no
statistics: every number, interval, p-value and verdict is read from the tables of
``inrroute.stats`` (``study.STATS_TABLES``); the summary only supplies what the run
covers (datasets, seeds, combinations) and the config the thresholds of the pre-stated
rules, which are quoted before their numbers. Where a table cannot answer (a factor with
one level, too few seeds), the text says so instead of printing NaN; where the seeds give
no power for the stated minimum effect, it says that in words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from . import provenance as prov
from .config import StudyConfig, VerdictConfig
from .study import BASELINE, FACTOR_NAMES, N_COMBINATIONS, POOLED

FACTORS = FACTOR_NAMES
TERM_FACTOR = re.compile(r"^C\((\w+)\)$")
QUESTION_TITLES = {
    "clustered": "clustered (class signal in the exposed geometry of phi)",
    "routed": "routed (class structure built inside the reader's blocks)",
    "bias_route": "bias column as a sample-dependent causal route",
    "reader_dependence": "reader dependence (trained reader beats a fresh one)",
    "routing_reader_dependent": "routing reader-dependent (fresh reader families differ)",
}


# ---------------------------------------------------------------- number helpers


def is_num(x: object) -> bool:
    """True for a finite real number (False for None, NaN, strings)."""
    try:
        return bool(np.isfinite(float(x)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def num(x: float, digits: int = 3) -> str:
    """Fixed-point number, or 'n/a' where undefined."""
    return f"{float(x):.{digits}f}" if is_num(x) else "n/a"


def pnum(p: float) -> str:
    """A p-value with three significant digits; tiny values as an upper bound."""
    if not is_num(p):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.3g}"


def pval(p: float, name: str = "p") -> str:
    """'p = 0.0123', 'p < 0.0001' or 'p n/a'."""
    text = pnum(p)
    return f"{name} {text}" if text[0] in "<n" else f"{name} = {text}"


def ci_text(low: float, high: float) -> str:
    """'95% CI a to b', or a statement that no interval is available."""
    if is_num(low) and is_num(high):
        return f"95% CI {num(low)} to {num(high)}"
    return "no confidence interval: fewer than 2 seeds"


def pretty_term(term: str) -> str:
    """'C(cluster):C(route)' -> 'cluster × route'."""
    parts = term.split(":")
    return " × ".join(m.group(1) if (m := TERM_FACTOR.match(p)) else p for p in parts)


def is_factor_term(term: str) -> bool:
    """True for rows that test a training factor (main effect or interaction, also
    crossed with dataset), not the seed block or the dataset main effect."""
    names = [m.group(1) for p in str(term).split(":") if (m := TERM_FACTOR.match(p))]
    return any(n in (*FACTORS, "reader_family") for n in names) and "seed" not in names


def dataset_names(ds: xr.Dataset) -> list[str]:
    return [str(d) for d in ds["dataset"].values]


def verdict_names(ds: xr.Dataset) -> list[str]:
    """The datasets, then ``pooled`` where there are several (stats.pooled_verdicts)."""
    names = dataset_names(ds)
    return names + [POOLED] if len(names) > 1 else names


def missing_table(tables: Mapping[str, pd.DataFrame], key: str) -> str | None:
    """A sentence if the statistics table ``key`` is absent or empty, else None."""
    table = tables.get(key)
    if table is None or len(table) == 0:
        return f"The statistics table `{key}` is empty or was not computed for this run."
    return None


def _rows(table: pd.DataFrame | None, **match) -> pd.DataFrame:
    if table is None or table.empty:
        return pd.DataFrame()
    keep = np.ones(len(table), dtype=bool)
    for col, value in match.items():
        keep &= table[col].astype(str).to_numpy() == str(value)
    return table[keep]


# ---------------------------------------------------------------- document


def run_findings(summary: xr.Dataset, tables: dict[str, pd.DataFrame], cfg: StudyConfig) -> str:
    """The findings stage: the FINDINGS.md text from the summary, tables and config."""
    return findings_markdown(summary, tables, cfg.verdicts, setup_section(summary, cfg))


def setup_section(ds: xr.Dataset, cfg: StudyConfig) -> str:
    """What the numbers below depend on that a reader must know: the fresh readers'
    budget against the trained reader's, and linear probes that hit their iteration cap;
    for pooled studies (``inrroute pool``), each study's own recipe."""
    if prov.POOLED_ATTR in ds.attrs:
        return pooled_setup(ds)
    fresh, trained = cfg.fresh_reader_epochs(), cfg.training.epochs
    budget = (
        "the trained reader's budget"
        if fresh == trained
        else f"**fewer than the trained reader's {trained}** (a deviation set by "
        "`probes.fresh_reader_epochs`; it favours the trained reader, i.e. 'routed')"
    )
    lines = [
        "## Setup",
        "",
        (
            f"- Fresh readers: trained for {fresh} epochs on frozen train-split phi, {budget}; "
            f"batch size {cfg.training.batch_size}, learning rate {cfg.training.lr}, one-cycle "
            f"schedule, architecture `{cfg.probes.fresh_reader_spec}` "
            "(`trained` = the reader spec saved in each run's model.pt); families: "
            + ", ".join(f"`{f}`" for f in cfg.probes.reader_families)
            + " (question 5; the trained-versus-fresh comparison reads `transformer`)."
        ),
    ]
    lines += probe_lines(ds)
    return "\n".join(lines)


def pooled_setup(ds: xr.Dataset) -> str:
    """Setup of a summary pooled from several studies: each study's source and the config
    values that are its own (the rest, shared by all, is in the provenance record)."""
    lines = [
        "## Setup",
        "",
        (
            "- Pooled from separate studies (`inrroute pool`); each dataset keeps its own "
            "study's recipe, and its fresh readers that study's budget. Values that differ:"
        ),
    ]
    for study in json.loads(ds.attrs[prov.POOLED_ATTR]):
        values = "; ".join(
            f"`{k}` = `{json.dumps(v, sort_keys=True)}`" for k, v in study["values"].items()
        )
        lines.append(
            f"  - {', '.join(study['datasets'])}: `{study['source']}` (config hash "
            f"`{study['config_hash']}`, commit `{study['git_commit']}`): {values or 'none'}"
        )
    return "\n".join(lines + probe_lines(ds))


def probe_lines(ds: xr.Dataset) -> list[str]:
    """Linear probes that hit their iteration cap, said in words."""
    lines = []
    if "linear_probe_converged" in ds:
        ran = ds["ran"].values.astype(bool) if "ran" in ds else None
        conv = ds["linear_probe_converged"].values
        conv = conv[ran] if ran is not None else conv[np.isfinite(conv)]
        bad = int((conv < 0.5).sum())
        lines.append(
            f"- Linear probes: {len(conv) - bad} of {len(conv)} converged within their "
            "iteration cap"
            + (f"; **{bad} did not**, so their accuracy is that of a capped fit." if bad else ".")
        )
    return lines


def findings_markdown(
    ds: xr.Dataset,
    tables: Mapping[str, pd.DataFrame],
    v: VerdictConfig | None = None,
    setup: str = "",
) -> str:
    """The complete FINDINGS.md text for summary ``ds`` and the tables of inrroute.stats."""
    v = v or VerdictConfig()
    sections = [
        header_section(ds, v),
        setup,
        verdict_overview(tables),
        clustering_section(ds, tables, v),
        tokenflow_section(ds, tables, v),
        bias_section(ds, tables, v),
        factorial_section(tables, v),
        reader_family_section(ds, tables, v),
    ]
    return "\n\n".join(s.strip() for s in sections if s.strip()) + "\n"


def header_section(ds: xr.Dataset, v: VerdictConfig) -> str:
    """Title, what the run covers, and the conventions used throughout."""
    ran = ds["ran"].values if "ran" in ds else np.isfinite(ds["reader_accuracy"].values)
    runs = int(np.asarray(ran).sum())
    combos = int(np.asarray(ran).any(axis=(0, 1)).sum())
    seeds = ", ".join(str(int(s)) for s in ds["seed"].values)
    lines = [
        "# Findings",
        "",
        (
            f"Generated by `inrroute` from `results/summary.nc` and `results/stats/`: {runs} "
            f"runs: dataset(s) {', '.join(dataset_names(ds))}; seed(s) {seeds}; {combos} of "
            f"the {N_COMBINATIONS} training-factor combinations."
        ),
        "",
        (
            "Conventions: the seed is the independent unit (its runs share the SIREN init, "
            "the reader init and the batch order), so every effect is averaged within seed "
            f"and tested across the {ds.sizes['seed']} seeds; confidence intervals are 95% "
            "t-intervals over seeds; correlations are Spearman's rho with a bootstrap "
            "that resamples seeds. `p_holm` is Holm within one table (one ANOVA: one "
            "response in one scope; one verdict's criteria), `p_bh` is Benjamini-Hochberg "
            f"over every test the study reports. Verdicts use alpha = {v.alpha} and state "
            f"the smallest effect the seeds detect with {v.power:.0%} power (MDE)."
        ),
    ]
    single = [f for f in FACTORS if ds.sizes.get(f, 0) < 2]
    if single:
        lines += [
            "",
            (
                "Factors with a single level in this run, whose effects this run cannot "
                f"estimate: {', '.join(f'`{f}`' for f in single)}."
            ),
        ]
    return "\n".join(lines)


def verdict_overview(tables: Mapping[str, pd.DataFrame]) -> str:
    """A table of every verdict (detail and rules in the sections below)."""
    lines = ["## Verdicts", ""]
    verdicts = _rows(tables.get("verdicts"), criterion="verdict")
    if verdicts.empty:
        return "\n".join(lines + ["No verdict could be formed from this run's tables."])
    lines += ["| dataset | question | scope | verdict |", "|---|---|---|---|"]
    for _, r in verdicts.iterrows():
        title = QUESTION_TITLES.get(r["question"], r["question"])
        lines.append(f"| {r['dataset']} | {title} | {r['scope']} | **{r['outcome']}** |")
    lines += [
        "",
        (
            "Each criterion is 'yes' when its Holm-corrected p is below alpha and its estimate "
            "reaches the rule's minimum effect, 'no' when its 95% CI lies below that minimum "
            "(for an equivalence: inside the margin is 'yes', wholly outside is 'no'), and "
            "'inconclusive' otherwise."
        ),
    ]
    return "\n".join(lines)


def criterion_line(r: pd.Series) -> str:
    """One criterion: its rule, numbers and outcome, with a power note where needed."""
    if r["criterion"] == "separated_from_control":
        numbers = f"gap {num(r['estimate'])} (bias_shuffle CI low minus col_shuffle CI high)"
    elif r["criterion"] == "shuffle_equivalent_to_zero":
        numbers = (
            f"difference {num(r['estimate'])} (90% CI {num(r['ci90_low'])} to "
            f"{num(r['ci90_high'])}; {ci_text(r['ci_low'], r['ci_high'])})"
        )
    elif r["criterion"] == "factor_x_family_interaction":
        p_terms = pval(r["p"], "p, Holm over the two-way terms,")
        numbers = (
            f"{r['statistic']}: {num(r['estimate'])} ({p_terms}; {pval(r['p_holm'], 'Holm p')})"
        )
    else:
        numbers = (
            f"estimate {num(r['estimate'])} ({ci_text(r['ci_low'], r['ci_high'])}; "
            f"{pval(r['p'])}; {pval(r['p_holm'], 'Holm p')}; MDE {num(r['mde'])})"
        )
    line = f"- `{r['criterion']}`: rule: {r['rule']}. Numbers: {numbers}. → **{r['outcome']}**."
    if power_missing(r):
        line += (
            f" {int(r['n_seeds'])} seeds give no power here: the smallest effect they detect "
            f"with the stated power is {num(r['mde'])}, above the rule's minimum "
            f"{num(r['threshold'])}, so the rule cannot decide."
        )
    return line


def power_missing(r: pd.Series) -> bool:
    """True where a criterion stayed inconclusive and its MDE exceeds its minimum effect
    (or it has no interval at all)."""
    if r["outcome"] != "inconclusive":
        return False
    if not is_num(r["mde"]):
        return r["criterion"] not in (
            "separated_from_control",
            "shuffle_equivalent_to_zero",
            "factor_x_family_interaction",
        )
    return float(r["mde"]) > float(r["threshold"])


def verdict_block(tables: Mapping[str, pd.DataFrame], name: str, question: str) -> list[str]:
    """Every criterion of one question for one dataset, then its verdict and rule."""
    table = tables.get("verdicts")
    rows = _rows(table, dataset=name, question=question)
    if rows.empty:
        return [f"{name}: the verdict `{question}` could not be formed from this run."]
    lines = []
    for scope, part in rows.groupby("scope", sort=False):
        crit = part[part["criterion"] != "verdict"]
        verdict = part[part["criterion"] == "verdict"]
        head = f"**{name}, {QUESTION_TITLES.get(question, question)}" + (
            f", {scope}**" if scope != "all" else "**"
        )
        lines += [head, ""]
        lines += [criterion_line(r) for _, r in crit.iterrows()]
        if not verdict.empty:
            r = verdict.iloc[0]
            lines += ["", f"Verdict: **{r['outcome']}** (rule: {r['rule']}).", ""]
    return lines


def clustering_section(ds: xr.Dataset, tables: Mapping[str, pd.DataFrame], v: VerdictConfig) -> str:
    """Question 1: does the clustering pressure change geometry and reading; does the
    geometry track accuracy beyond the factors; does a fresh reader read as well."""
    lines = ["## 1. Clustering versus reading", ""]
    if ds.sizes.get("cluster", 0) < 2:
        lines += [
            (
                "This run cannot answer whether the supervised clustering pressure changes kNN "
                "consistency or reader accuracy: the factor `cluster` has one level in this run."
            ),
            "",
        ]
    lines += cluster_effect_lines(tables) + [""] + geometry_lines(tables) + [""]
    for name in verdict_names(ds):
        lines += verdict_block(tables, name, "clustered")
        lines += verdict_block(tables, name, "reader_dependence")
    return "\n".join(lines)


def cluster_effect_lines(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """The cluster_effect table (on minus off, within-seed means, across seeds)."""
    missing = missing_table(tables, "cluster_effect")
    if missing:
        return [missing]
    lines = [
        (
            "Effect of `cluster` (on minus off; per seed the mean over matched runs, then "
            "tested across seeds):"
        ),
        "",
        "| dataset | response | effect | 95% CI | p | Holm p | BH p | seeds | MDE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in tables["cluster_effect"].iterrows():
        lines.append(
            f"| {r['dataset']} | {r['response']} | {num(r['estimate'])} | "
            f"{num(r['ci_low'])} to {num(r['ci_high'])} | {pnum(r['p'])} | "
            f"{pnum(r['p_holm'])} | {pnum(r['p_bh'])} | {int(r['n_seeds'])} | {num(r['mde'])} |"
        )
    return lines


def geometry_lines(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Spearman rho of each geometry metric with reader accuracy, pooled and within cells."""
    lines = [
        (
            "Spearman rho of each geometry metric with trained-reader accuracy: `pooled` over "
            "all runs (it mostly measures the factors, e.g. cluster moves both), and "
            "`within_cells` on the residuals after the factors' main effects within each seed. "
            "CI: seed-resampling bootstrap; p: rho within each seed, t-tested across seeds."
        ),
        "",
    ]
    missing = missing_table(tables, "geometry_correlation")
    if missing:
        return lines + [missing]
    lines += [
        "| dataset | metric | kind | rho | 95% CI (seed bootstrap) | p | Holm p | BH p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in tables["geometry_correlation"].iterrows():
        rho = num(r["spearman_rho"]) if is_num(r["spearman_rho"]) else "undefined"
        lines.append(
            f"| {r['dataset']} | {r['metric']} | {r['kind']} | {rho} | "
            f"{num(r['ci_low'])} to {num(r['ci_high'])} | {pnum(r['p'])} | "
            f"{pnum(r['p_holm'])} | {pnum(r['p_bh'])} |"
        )
    return lines


def tokenflow_section(ds: xr.Dataset, tables: Mapping[str, pd.DataFrame], v: VerdictConfig) -> str:
    """Question 2: at which depth does class consistency start to predict accuracy."""
    lines = [
        "## 2. Token flow",
        "",
        (
            "Spearman rho of class consistency with trained-reader accuracy at each depth. The "
            "first point, `phi`, is the exposed phi's kNN consistency from the geometry probes "
            "(what the clustering question is about); `input` is the reader's pooled input and "
            "`projection` an affine map of it, so a rise there is not routing: the rule looks "
            "for the rise in the transformer blocks. Band: a joint 95% band over depths from "
            "the seed bootstrap."
        ),
        "",
    ]
    missing = missing_table(tables, "tokenflow_curve")
    if missing:
        return "\n".join(lines + [missing])
    lines += [
        "| dataset | depth | rho | 95% CI | joint band | p (seeds) | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in tables["tokenflow_curve"].iterrows():
        lines.append(
            f"| {r['dataset']} | {r['depth']} | {num(r['spearman_rho'])} | "
            f"{num(r['ci_low'])} to {num(r['ci_high'])} | {num(r['band_low'])} to "
            f"{num(r['band_high'])} | {pnum(r['p'])} | {int(r['n_runs'])} |"
        )
    lines.append("")
    for name in verdict_names(ds):
        lines += verdict_block(tables, name, "routed")
    return "\n".join(lines)


def bias_section(ds: xr.Dataset, tables: Mapping[str, pd.DataFrame], v: VerdictConfig) -> str:
    """Question 3: is the bias column a sample-dependent causal route (per bias_route)."""
    lines = [
        "## 3. Bias column",
        "",
        (
            "Accuracy drop = accuracy without intervention minus accuracy with it; per seed the "
            "mean over the runs of one `bias_route` level, then across seeds. `col_*` are "
            "the single-column controls; contrasts are paired differences of two drops."
        ),
        "",
    ]
    missing = missing_table(tables, "intervention_drops")
    if missing:
        return "\n".join(lines + [missing])
    lines += [
        "| dataset | bias_route | intervention | kind | drop | 95% CI | p | Holm p | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in tables["intervention_drops"].iterrows():
        lines.append(
            f"| {r['dataset']} | {r['bias_route']} | {r['intervention']} | {r['kind']} | "
            f"{num(r['estimate'])} | {num(r['ci_low'])} to {num(r['ci_high'])} | "
            f"{pnum(r['p'])} | {pnum(r['p_holm'])} | {int(r['n_runs'])} |"
        )
    lines.append("")
    for name in verdict_names(ds):
        lines += verdict_block(tables, name, "bias_route")
    return "\n".join(lines)


def factorial_section(tables: Mapping[str, pd.DataFrame], v: VerdictConfig) -> str:
    """Question 4: significant main effects and interactions per ANOVA table."""
    lines = [
        "## 4. Factorial experiment",
        "",
        (
            "Mixed-model ANOVA of the full factorial, seed and term × seed random: each term is "
            "tested against its own term × seed stratum. Listed: terms with Holm p (within one "
            f"response and scope) below {v.alpha}; interaction rows are the test of "
            "non-additivity."
        ),
        "",
    ]
    missing = missing_table(tables, "anova")
    lines += [missing] if missing else anova_lines(tables["anova"], v.alpha)
    lines += ["", *variants_lines(tables, v.alpha)]
    return "\n".join(lines)


def term_text(r: pd.Series) -> str:
    """'cluster (F = 12.30 on 1 and 2 df, Holm p = 0.002, BH p = 0.01, partial η² = 0.45)'."""
    return (
        f"{pretty_term(r['term'])} (F = {num(r['F'], 2)} on {num(r['df'], 0)} and "
        f"{num(r['df_error'], 0)} df, {pval(r['p_holm'], 'Holm p')}, {pval(r['p_bh'], 'BH p')}, "
        f"partial η² = {num(r['partial_eta_sq'])})"
    )


def anova_lines(anova: pd.DataFrame, alpha: float) -> list[str]:
    """One bullet per (scope, response): significant main effects, then interactions."""
    lines = []
    low_df = False
    for (scope, response), sub in anova.groupby(["scope", "response"], sort=False):
        terms = sub[sub["term"].map(is_factor_term)]
        if terms.empty or not terms["p_holm"].map(is_num).any():
            notes = [str(n) for n in sub["note"].dropna() if str(n)] if "note" in sub else []
            why = f": {notes[0]}" if notes else ""
            lines.append(f"- **{scope}**, {response}: could not be tested in this run{why}.")
            continue
        sig = terms[terms["p_holm"].map(is_num) & (terms["p_holm"] < alpha)]
        inter = sig["term"].str.contains(":")
        mains = "; ".join(term_text(r) for _, r in sig[~inter].iterrows()) or "none"
        inters = "; ".join(term_text(r) for _, r in sig[inter].iterrows()) or "none"
        lines.append(f"- **{scope}**, {response}: main effects: {mains}; interactions: {inters}.")
        low_df |= bool((terms["df_error"].astype(float) < 4).any())
    if low_df:
        lines += [
            "",
            (
                "With so few seeds each term's error stratum has very few degrees of freedom "
                "(2 for 3 seeds: F must exceed 18.5 before any correction), so only large, "
                "seed-consistent effects can be detected; a term not listed is not shown to be "
                "absent."
            ),
        ]
    return lines


def variants_lines(tables: Mapping[str, pd.DataFrame], alpha: float) -> list[str]:
    """Variants versus the baseline whose Holm p (over the whole table) is below alpha,
    and the count of those whose uncorrected CI excludes 0."""
    lines = [
        (
            f"Route-directed variants versus the baseline `{BASELINE}` (paired by seed, tested "
            f"across seeds; listed when Holm p over the table is below {alpha}):"
        ),
        "",
    ]
    missing = missing_table(tables, "variants_vs_baseline")
    if missing:
        return lines + [missing]
    table = tables["variants_vs_baseline"]
    sig = table[table["p_holm"].map(is_num) & (table["p_holm"] < alpha)]
    raw = table[table["ci_low"].map(is_num) & ((table["ci_low"] > 0) | (table["ci_high"] < 0))]
    for _, r in sig.iterrows():
        lines.append(
            f"- {r['dataset']}, `{r['combination']}`, {r['response']}: "
            f"{'+' if r['estimate'] > 0 else ''}{num(r['estimate'])} "
            f"({ci_text(r['ci_low'], r['ci_high'])}; {pval(r['p_holm'], 'Holm p')}; "
            f"{int(r['n_seeds'])} seeds)."
        )
    if sig.empty:
        lines.append("- none.")
    lines += [
        "",
        (
            f"{len(raw)} of {len(table)} variant differences have an uncorrected 95% CI that "
            "excludes 0; at this many tests that is not evidence on its own."
        ),
    ]
    return lines


def reader_family_section(
    ds: xr.Dataset, tables: Mapping[str, pd.DataFrame], v: VerdictConfig
) -> str:
    """Question 5: is the routing reader-dependent? Accuracy, bias-intervention drops and
    token flow per fresh reader family (and the trained reader), then the verdict."""
    lines = [
        "## 5. Is the routing reader-dependent?",
        "",
        (
            "Fresh readers of several families (`probes.reader_families`) are trained on every "
            "run's frozen train-split phi with the trained reader's budget and scored on the "
            "test split; the bias-column interventions and controls are applied to each. If "
            "only the trained transformer routed through the bias column, or the fresh "
            "families' drops differed, the routing would be a property of the reader, not of "
            "phi. Rule, stated before the numbers: each pair of families is compared on its "
            "`bias_shuffle` drop (per seed the mean over runs, across seeds; minimum "
            f"difference and equivalence margin {v.family_min_drop_gap}), and the strongest "
            "two-way training factor × reader_family interaction on that drop from the "
            "ANOVA with reader_family as a within-run factor (Holm over the two-way terms; "
            f"minimum size {v.family_min_interaction}, RMS over cells)."
        ),
        "",
    ]
    table = tables.get("reader_families")
    missing = missing_table(tables, "reader_families")
    if missing:
        return "\n".join(lines + [missing])
    shown = table[table["kind"].isin(["accuracy", "drop"])]
    lines += [
        "| dataset | reader | response | mean | 95% CI | p | Holm p | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in shown.iterrows():
        lines.append(
            f"| {r['dataset']} | {r['reader_family']} | {r['response']} | {num(r['estimate'])} "
            f"| {num(r['ci_low'])} to {num(r['ci_high'])} | {pnum(r['p'])} | "
            f"{pnum(r['p_holm'])} | {int(r['n_seeds'])} |"
        )
    flow = table[table["kind"] == "tokenflow"]
    if not flow.empty:
        lines += [
            "",
            (
                "Token-flow analogue: kNN class consistency of each fresh reader's "
                "representation at its depths (0 = its input; then, for the transformer, "
                "projection and blocks; for the MLP its hidden layers; for the set reader the "
                "pooled per-token features and the head's hidden layer):"
            ),
            "",
            "| dataset | reader | "
            + " | ".join(f"depth {c.split('__')[-1]}" for c in dict.fromkeys(flow["response"]))
            + " |",
            "|---|---|" + "---|" * len(dict.fromkeys(flow["response"])),
        ]
        for (name, reader), part in flow.groupby(["dataset", "reader_family"], sort=False):
            values = part.set_index("response")["estimate"]
            cells = [num(values.get(c)) for c in dict.fromkeys(flow["response"])]
            lines.append(f"| {name} | {reader} | " + " | ".join(cells) + " |")
    anova = tables.get("anova")
    fam = _rows(anova, response="fresh_drop_bias_shuffle") if anova is not None else pd.DataFrame()
    if not fam.empty:
        sig = fam[fam["p_holm"].map(is_num) & (fam["p_holm"] < v.alpha)]
        terms = "; ".join(term_text(r) for _, r in sig.iterrows()) or "none"
        lines += [
            "",
            (
                "ANOVA of the fresh readers' bias_shuffle drop with reader_family as a "
                f"within-run factor, terms with Holm p below {v.alpha}: {terms}."
            ),
        ]
    lines.append("")
    for name in verdict_names(ds):
        lines += verdict_block(tables, name, "routing_reader_dependent")
    return "\n".join(lines)
