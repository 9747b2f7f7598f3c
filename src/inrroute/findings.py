"""The text of ``results/FINDINGS.md``, generated from the summary and the statistics tables.

One section per study question of DESIGN.md section 1. Every number is read from the
inputs (the gathered summary and the tables of ``inrroute.stats``); every claim states the
rule that produced it. Where this run cannot answer a question (a factor with one level,
too few runs for a correlation), the text says so instead of printing NaN.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

ALPHA = 0.05  # Holm-corrected significance level for the ANOVA tables
CI_LEVEL = 0.95
RISE_RHO = 0.5  # token-flow curve "rises" at the first depth with rho above this
ROUTE_RATIO = 2.0  # bias_shuffle drop must be this many times the col_shuffle drop
from .config import FACTOR_NAMES as FACTORS

BIAS_INTERVENTIONS = ("bias_zero", "bias_shuffle", "bias_mean", "bias_only")
CONTROL_INTERVENTIONS = ("col_zero", "col_shuffle")
RESPONSE_LABELS = {
    "knn_consistency": "kNN consistency",
    "reader_accuracy": "trained-reader accuracy",
}
TERM_FACTOR = re.compile(r"^C\((\w+)\)$")


# ---------------------------------------------------------------- number helpers


def finite(values: np.ndarray) -> np.ndarray:
    """Flatten and drop NaN (missing combinations are NaN cells of the grid)."""
    flat = np.asarray(values, dtype=float).ravel()
    return flat[np.isfinite(flat)]


def mean_ci(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Mean and half-width of the t confidence interval (NaN half-width for n < 2)."""
    vals = finite(values)
    if vals.size == 0:
        return float("nan"), float("nan")
    if vals.size < 2:
        return float(vals.mean()), float("nan")
    sem = vals.std(ddof=1) / np.sqrt(vals.size)
    return float(vals.mean()), float(sem * stats.t.ppf(0.5 + level / 2, vals.size - 1))


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
        return f"{CI_LEVEL:.0%} CI {num(low)} to {num(high)}"
    return "no confidence interval: too few pairs"


def intervention_drops(ds: xr.Dataset, name: str) -> dict[str, np.ndarray]:
    """Per intervention, the per-run accuracy drop (none minus intervention), NaN removed."""
    acc = ds["intervention_accuracy"].sel(dataset=name)
    base = acc.sel(intervention="none")
    return {
        str(iv): finite((base - acc.sel(intervention=iv)).values)
        for iv in acc["intervention"].values
        if str(iv) != "none"
    }


def pretty_term(term: str) -> str:
    """'C(cluster):C(route)' -> 'cluster x route'."""
    parts = [TERM_FACTOR.match(p) for p in term.split(":")]
    return " × ".join(m.group(1) if m else p for m, p in zip(parts, term.split(":")))


def is_factor_term(term: str) -> bool:
    """True for main effects and interactions of the four training factors only
    (not the residual, not the dataset block of the pooled model)."""
    matches = [TERM_FACTOR.match(p) for p in str(term).split(":")]
    return all(m is not None and m.group(1) in FACTORS for m in matches)


def dataset_names(ds: xr.Dataset) -> list[str]:
    return [str(d) for d in ds["dataset"].values]


def single_level_factors(ds: xr.Dataset) -> list[str]:
    """Factors this run varies over only one level (their effects cannot be estimated)."""
    return [f for f in FACTORS if ds.sizes.get(f, 0) < 2]


def missing_table(tables: Mapping[str, pd.DataFrame], key: str) -> str | None:
    """A sentence if the statistics table ``key`` is absent or empty, else None."""
    table = tables.get(key)
    if table is None or len(table) == 0:
        return f"The statistics table `{key}` is empty or was not computed for this run."
    return None


# ---------------------------------------------------------------- sections


def findings_markdown(ds: xr.Dataset, tables: Mapping[str, pd.DataFrame]) -> str:
    """The complete FINDINGS.md text for summary ``ds`` and the tables of inrroute.stats."""
    sections = [
        header_section(ds),
        clustering_section(ds, tables),
        tokenflow_section(ds, tables),
        bias_section(ds),
        factorial_section(ds, tables),
    ]
    return "\n\n".join(s.strip() for s in sections) + "\n"


def header_section(ds: xr.Dataset) -> str:
    """Title, what the run covers, and the conventions used throughout."""
    acc = ds["reader_accuracy"]
    runs = int(np.isfinite(acc.values).sum())
    combos = int(np.isfinite(acc).any(dim=["dataset", "seed"]).values.sum())
    seeds = ", ".join(str(int(s)) for s in ds["seed"].values)
    lines = [
        "# Findings",
        "",
        (
            f"Generated by `inrroute` from `results/summary.nc` and `results/stats/`: "
            f"{runs} runs: dataset(s) {', '.join(dataset_names(ds))}; seed(s) {seeds}; "
            f"{combos} of the 16 training-factor combinations."
        ),
        "",
        (
            f"Conventions: confidence intervals are {CI_LEVEL:.0%}; an effect is called a raise or "
            "a lowering only when its interval excludes 0; ANOVA terms are called significant "
            f"when their Holm-corrected p (within one table) is below {ALPHA}. Effects of a "
            "factor are its 'on' level minus its 'off' level."
        ),
    ]
    single = single_level_factors(ds)
    if single:
        lines += [
            "",
            (
                "Factors with a single level in this run, whose effects this run cannot "
                f"estimate: {', '.join(f'`{f}`' for f in single)}."
            ),
        ]
    return "\n".join(lines)


def clustering_section(ds: xr.Dataset, tables: Mapping[str, pd.DataFrame]) -> str:
    """Question 1: does the clustering pressure change geometry and reading, and which
    geometry metric tracks reader accuracy across runs."""
    lines = ["## 1. Clustering versus reading", ""]
    lines += cluster_effect_lines(ds, tables)
    lines += ["", *geometry_lines(tables)]
    return "\n".join(lines)


def cluster_effect_lines(ds: xr.Dataset, tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Sentences on the paired effect of `cluster` on kNN consistency and reader accuracy."""
    if ds.sizes.get("cluster", 0) < 2:
        level = int(ds["cluster"].values[0]) if ds.sizes.get("cluster", 0) else "none"
        return [
            (
                "This run cannot answer whether the supervised clustering pressure changes kNN "
                "consistency or reader accuracy: the factor `cluster` has one level "
                f"(cluster={level}) in this run."
            )
        ]
    missing = missing_table(tables, "cluster_effect")
    if missing:
        return [missing]
    table = tables["cluster_effect"]
    lines = [
        (
            "Effect of `cluster` (cluster=1 minus cluster=0, paired by seed; "
            f"rule: a raise or lowering is claimed when the {CI_LEVEL:.0%} CI excludes 0):"
        ),
        "",
    ]
    for name in dataset_names(ds):
        for response, label in RESPONSE_LABELS.items():
            rows = table[(table["dataset"].astype(str) == name) & (table["response"] == response)]
            lines.append(f"- {cluster_effect_sentence(name, label, rows)}")
    return lines


def cluster_effect_sentence(name: str, label: str, rows: pd.DataFrame) -> str:
    """One sentence for one dataset and response, from its cluster_effect row."""
    if rows.empty or not is_num(rows.iloc[0]["mean_diff"]):
        return (
            f"{name}: the effect on {label} cannot be estimated from this run "
            "(no seed has runs at both cluster levels)."
        )
    r = rows.iloc[0]
    diff, low, high = float(r["mean_diff"]), r["ci_low"], r["ci_high"]
    detail = f"{ci_text(low, high)}; {int(r['n_pairs'])} pairs; {pval(r['p'])}"
    if is_num(low) and low > 0:
        return f"{name}: clustering raises {label} by {num(diff)} ({detail})."
    if is_num(high) and high < 0:
        return f"{name}: clustering lowers {label} by {num(-diff)} ({detail})."
    return (
        f"{name}: no detectable effect of clustering on {label}: mean difference "
        f"{num(diff)} ({detail})."
    )


def geometry_lines(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """A table of Spearman rho of each geometry metric with reader accuracy, plus the
    strongest metric per dataset."""
    lines = [
        (
            "Spearman correlation of each geometry metric with trained-reader accuracy "
            "across the runs of a dataset:"
        ),
        "",
    ]
    missing = missing_table(tables, "geometry_correlation")
    if missing:
        return lines + [missing]
    table = tables["geometry_correlation"]
    lines += [
        "| dataset | metric | Spearman rho | 95% CI | p | runs |",
        "|---|---|---|---|---|---|",
    ]
    undefined = False
    for _, r in table.iterrows():
        if not is_num(r["spearman_rho"]):
            undefined = True
            lines.append(f"| {r['dataset']} | {r['metric']} | undefined | | | {int(r['n'])} |")
            continue
        ci = f"{num(r['ci_low'])} to {num(r['ci_high'])}" if is_num(r["ci_low"]) else "n/a"
        lines.append(
            f"| {r['dataset']} | {r['metric']} | {num(r['spearman_rho'])} | {ci} | "
            f"{pnum(r['p'])} | {int(r['n'])} |"
        )
    lines.append("")
    if undefined:
        lines.append(
            "A correlation is undefined where the dataset has fewer than 3 runs or a metric "
            "(or the accuracy) is constant across its runs."
        )
    for name, sub in table.groupby(table["dataset"].astype(str), sort=False):
        sub = sub[sub["spearman_rho"].map(is_num)]
        if sub.empty:
            lines.append(f"- {name}: no geometry correlation can be computed from this run.")
            continue
        best = sub.loc[sub["spearman_rho"].abs().idxmax()]
        lines.append(
            f"- {name}: the metric most correlated with reader accuracy is "
            f"`{best['metric']}` (rho = {num(best['spearman_rho'])})."
        )
    return lines


def tokenflow_section(ds: xr.Dataset, tables: Mapping[str, pd.DataFrame]) -> str:
    """Question 2: at which reader depth does class consistency start to predict accuracy."""
    lines = [
        "## 2. Token flow",
        "",
        (
            "Rule: the curve of Spearman rho (per-depth kNN consistency vs trained-reader accuracy "
            f"across runs) rises at the first depth whose rho exceeds {RISE_RHO} with a "
            f"{CI_LEVEL:.0%} CI that excludes 0. Routing predicts a curve that is low at the "
            "input and rises only in the reader's blocks; clustering predicts a high rho "
            "already at the input."
        ),
        "",
    ]
    missing = missing_table(tables, "tokenflow_curve")
    if missing:
        return "\n".join(lines + [missing])
    curve = tables["tokenflow_curve"]
    for name in dataset_names(ds):
        sub = curve[curve["dataset"].astype(str) == name].sort_values("depth_index")
        lines.append(f"- {tokenflow_sentence(name, sub)}")
        lines.append(f"  {consistency_sentence(ds, name)}")
    return "\n".join(lines)


def rise_depth(curve: pd.DataFrame) -> pd.Series | None:
    """The first row (by depth_index) whose rho > RISE_RHO and whose CI excludes 0."""
    for _, r in curve.sort_values("depth_index").iterrows():
        rho_high = is_num(r["spearman_rho"]) and r["spearman_rho"] > RISE_RHO
        if rho_high and is_num(r["ci_low"]) and r["ci_low"] > 0:
            return r
    return None


def tokenflow_sentence(name: str, sub: pd.DataFrame) -> str:
    """Where the token-flow curve of one dataset rises, and its input vs last-depth rho."""
    if sub.empty or not sub["spearman_rho"].map(is_num).any():
        n = int(sub["n"].max()) if not sub.empty and sub["n"].map(is_num).any() else 0
        return (
            f"{name}: the token-flow curve cannot be computed from this run: a Spearman "
            f"correlation across runs needs at least 3 runs with varying accuracy (n = {n})."
        )
    first, last = sub.iloc[0], sub.iloc[-1]
    ends = (
        f"rho at `{first['depth']}` = {num(first['spearman_rho'])}, "
        f"at the last depth `{last['depth']}` = {num(last['spearman_rho'])}"
    )
    rise = rise_depth(sub)
    if rise is None:
        return f"{name}: the curve rises nowhere ({ends}; n = {int(last['n'])} runs)."
    where = (
        "at the input (consistent with clustering)"
        if rise["depth_index"] == first["depth_index"]
        else "inside the reader (consistent with routing)"
    )
    return (
        f"{name}: the curve first rises at `{rise['depth']}` (rho = "
        f"{num(rise['spearman_rho'])}, {ci_text(rise['ci_low'], rise['ci_high'])}), "
        f"{where}; {ends}; n = {int(last['n'])} runs."
    )


def consistency_sentence(ds: xr.Dataset, name: str) -> str:
    """Mean token-flow kNN consistency at the first and the last depth."""
    da = ds["tokenflow_consistency"].sel(dataset=name)
    depths = [str(d) for d in ds["depth"].values]
    first = finite(da.sel(depth=depths[0]).values)
    last = finite(da.sel(depth=depths[-1]).values)
    if first.size == 0 or last.size == 0:
        return "No token-flow consistency values were recorded."
    return (
        f"Mean kNN consistency over runs: {num(first.mean())} at `{depths[0]}`, "
        f"{num(last.mean())} at `{depths[-1]}`."
    )


def bias_section(ds: xr.Dataset) -> str:
    """Question 3: is the bias column a sample-dependent causal route?"""
    lines = [
        "## 3. Bias column",
        "",
        (
            "Accuracy drop = accuracy without intervention minus accuracy with it, mean over "
            f"runs with a {CI_LEVEL:.0%} t-interval. Rule: the bias column is called a "
            "sample-dependent causal route when the `bias_shuffle` drop has a CI above 0 and "
            f"is at least {ROUTE_RATIO:g} times the `col_shuffle` control drop."
        ),
        "",
    ]
    if "intervention_accuracy" not in ds.data_vars or "none" not in ds["intervention"].values:
        return "\n".join(lines + ["This run recorded no intervention baseline (`none`)."])
    for name in dataset_names(ds):
        lines += bias_dataset_lines(ds, name) + [""]
    return "\n".join(lines)


def bias_dataset_lines(ds: xr.Dataset, name: str) -> list[str]:
    """Drop table and verdict for one dataset."""
    drops = intervention_drops(ds, name)
    summary = {k: mean_ci(v) for k, v in drops.items()}
    lines = [
        f"### {name}",
        "",
        "| intervention | kind | mean drop | 95% CI | runs |",
        "|---|---|---|---|---|",
    ]
    for k in [*BIAS_INTERVENTIONS, *CONTROL_INTERVENTIONS]:
        if k not in drops:
            continue
        mean, half = summary[k]
        kind = "control" if k in CONTROL_INTERVENTIONS else "bias"
        ci = f"{num(mean - half)} to {num(mean + half)}" if is_num(half) else "n/a"
        lines.append(f"| {k} | {kind} | {num(mean)} | {ci} | {drops[k].size} |")
    lines += ["", bias_verdict(summary)]
    return lines


def bias_verdict(summary: Mapping[str, tuple[float, float]]) -> str:
    """Ratio of the bias_shuffle to the col_shuffle drop and the verdict of the rule."""
    if "bias_shuffle" not in summary or "col_shuffle" not in summary:
        return "This run lacks `bias_shuffle` or `col_shuffle`, so the rule cannot be applied."
    (bias, bias_half), (ctrl, _) = summary["bias_shuffle"], summary["col_shuffle"]
    if not is_num(bias) or not is_num(ctrl):
        return "No run has both the baseline and the shuffle interventions recorded."
    if ctrl <= 0:
        ratio_text = (
            f"The ratio bias_shuffle drop / col_shuffle drop is not defined: the control "
            f"drop is {num(ctrl)} (not above 0)."
        )
        ratio_ok = bias > 0
    else:
        ratio = bias / ctrl
        ratio_text = f"Ratio bias_shuffle drop / col_shuffle drop = {ratio:.2f}."
        ratio_ok = ratio >= ROUTE_RATIO
    if not is_num(bias_half):
        return ratio_text + " With a single run there is no CI, so the rule is not applied."
    ci_ok = bias - bias_half > 0
    verdict = (
        "the bias column acts as a sample-dependent causal route"
        if ci_ok and ratio_ok
        else "the rule does not mark the bias column as a causal route"
    )
    return f"{ratio_text} By the rule above, {verdict}."


def factorial_section(ds: xr.Dataset, tables: Mapping[str, pd.DataFrame]) -> str:
    """Question 4: significant main effects and interactions per ANOVA table."""
    lines = [
        "## 4. Factorial experiment",
        "",
        (
            f"Significant terms (Holm-corrected p < {ALPHA} within one ANOVA table: one response "
            "in one scope) of the full factorial model; interaction rows are the test of "
            "non-additivity."
        ),
        "",
    ]
    missing = missing_table(tables, "anova")
    lines += [missing] if missing else anova_lines(tables["anova"])
    lines += ["", *variants_lines(tables)]
    return "\n".join(lines)


def term_text(r: pd.Series) -> str:
    """'cluster (F = 12.30, p_holm = 0.002, partial η² = 0.450)'."""
    return (
        f"{pretty_term(r['term'])} (F = {num(r['F'], 2)}, {pval(r['p_holm'], 'p_holm')}, "
        f"partial η² = {num(r['partial_eta_sq'])})"
    )


def anova_lines(anova: pd.DataFrame) -> list[str]:
    """One bullet per (scope, response): significant main effects, then interactions."""
    lines = []
    for (scope, response), sub in anova.groupby(["scope", "response"], sort=False):
        terms = sub[sub["term"].map(is_factor_term)]
        if terms.empty or not terms["p_holm"].map(is_num).any():
            notes = [str(n) for n in sub.get("note", pd.Series(dtype=str)).dropna() if str(n)]
            why = f": {notes[0]}" if notes else ""
            lines.append(f"- **{scope}**, {response}: could not be tested in this run{why}.")
            continue
        sig = terms[terms["p_holm"].map(is_num) & (terms["p_holm"] < ALPHA)]
        interaction = sig["term"].str.contains(":")
        mains = "; ".join(term_text(r) for _, r in sig[~interaction].iterrows()) or "none"
        inters = "; ".join(term_text(r) for _, r in sig[interaction].iterrows()) or "none"
        lines.append(f"- **{scope}**, {response}: main effects: {mains}; interactions: {inters}.")
    return lines


def variants_lines(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Variants whose paired difference from the baseline combination has a CI excluding 0."""
    lines = [
        (
            "Route-directed variants versus the baseline `cluster0_route0_biasroute0_densefit0` "
            f"(paired by seed; listed when the {CI_LEVEL:.0%} CI excludes 0; not corrected "
            "for multiple comparisons):"
        ),
        "",
    ]
    missing = missing_table(tables, "variants_vs_baseline")
    if missing:
        return lines + [missing]
    table = tables["variants_vs_baseline"]
    clear = table[
        table["ci_low"].map(is_num)
        & table["ci_high"].map(is_num)
        & ((table["ci_low"] > 0) | (table["ci_high"] < 0))
    ]
    if clear.empty:
        return lines + ["- none."]
    for _, r in clear.iterrows():
        lines.append(
            f"- {r['dataset']}, `{r['combination']}`, {r['response']}: "
            f"{'+' if r['mean_diff'] > 0 else ''}{num(r['mean_diff'])} "
            f"({ci_text(r['ci_low'], r['ci_high'])}; {int(r['n_pairs'])} pairs)."
        )
    return lines


def run_findings(summary: xr.Dataset, tables: Mapping[str, pd.DataFrame], cfg) -> str:
    """FINDINGS.md for the summary and the statistics tables."""
    return findings_markdown(summary, tables)
