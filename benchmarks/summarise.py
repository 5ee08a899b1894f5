"""Markdown tables for BENCHMARKS.md from ``benchmarks/results/*.csv``: mean ± sample sd over seeds.

python benchmarks/summarise.py --tag v13_smooth4                  # scDEFR beside the baselines, per dataset
python benchmarks/summarise.py --tag v19_joint_epochs23 --seeds 0 1 2
python benchmarks/summarise.py --label-rules v13_label_rules --rule argmax_q --rule q_walk4 --metric nmi
python benchmarks/summarise.py --label-rules v13_label_rules v14_seeds34 --rule q_walk4   # five seeds
"""

from __future__ import annotations

import argparse

import pandas as pd
from _common import RESULTS_DIR

BASELINES = ("leiden_default", "leiden_true_k", "kmeans_pca")


def baselines_on(baselines: pd.DataFrame, dataset: str, seeds) -> pd.DataFrame:
    """The baseline rows of ``dataset`` on the seeds a group of runs used: the bar is then averaged
    over the same seeds as the runs beside it, however many seeds the baselines have."""
    return baselines[(baselines["dataset"] == dataset) & baselines["seed"].isin(set(seeds))]


def mean_sd(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna()
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f} (1 seed)"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def quality_table(tags: list[str], seeds=None) -> str:
    runs = pd.read_csv(RESULTS_DIR / "scdefr_quality.csv")
    baselines = pd.read_csv(RESULTS_DIR / "baselines.csv")
    runs = runs[runs["tag"].isin(tags) & (runs["seed"].isin(seeds) if seeds else True)].assign(
        k_mode=lambda frame: frame["k_mode"].astype(str).str.lower()
    )
    header = "| dataset | tag | k | seeds | ARI | NMI | ACC | KMeans on z ARI | K found | train s | best baseline ARI |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for (dataset, tag, k_mode), group in runs.groupby(["dataset", "tag", "k_mode"], sort=True):
        reference = baselines_on(baselines, dataset, group["seed"]).groupby("method")["ari"].mean()
        best = reference.reindex(list(BASELINES)).dropna()
        best_text = f"{best.max():.3f} ({best.idxmax()})" if len(best) else "n/a"
        lines.append(
            f"| {dataset} | {tag} | {k_mode} | {group['seed'].nunique()} | {mean_sd(group['ari'])} | "
            f"{mean_sd(group['nmi'])} | {mean_sd(group['acc'])} | {mean_sd(group['kmeans_z_ari'])} | "
            f"{group['n_clusters'].mean():.1f} (true {int(group['true_k'].iloc[0])}) | "
            f"{group['train_s'].mean():.0f} | {best_text} |"
        )
    return "\n".join(lines)


def label_rules_table(tags: list[str], rules: list[str], seeds=None, metric: str = "ari") -> str:
    """``metric`` of each label rule (``label_rules.py``) per dataset, the rows of ``tags`` pooled
    (e.g. seeds 0-2 and seeds 3-4 run apart), beside the best Leiden baseline's on the same seeds."""
    runs = pd.read_csv(RESULTS_DIR / "label_rules.csv")
    runs = runs[runs["tag"].isin(tags) & (runs["seed"].isin(seeds) if seeds else True)]
    baselines = pd.read_csv(RESULTS_DIR / "baselines.csv")
    rules = rules or list(dict.fromkeys(runs["rule"]))
    header = "| dataset | seeds | " + " | ".join(rules) + f" | best Leiden {metric.upper()} |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for dataset, group in runs.groupby("dataset", sort=True):
        leiden = baselines_on(baselines, dataset, group["seed"])
        leiden = leiden[leiden["method"].str.startswith("leiden")]
        cells = [mean_sd(group.loc[group["rule"] == rule, metric]) for rule in rules]
        lines.append(
            f"| {dataset} | {group['seed'].nunique()} | "
            + " | ".join(cells)
            + f" | {leiden.groupby('method')[metric].mean().max():.3f} |"
        )
    means = [runs.loc[runs["rule"] == rule].groupby("dataset")[metric].mean().mean() for rule in rules]
    lines.append("| mean over datasets | | " + " | ".join(f"{m:.3f}" for m in means) + " | |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", action="append", default=[], help="scdefr_quality.csv tag(s) to show")
    parser.add_argument(
        "--label-rules", metavar="TAG", nargs="+", help="label_rules.csv tag(s) to show instead, pooled"
    )
    parser.add_argument("--rule", action="append", default=[], help="label rule(s) to show (default: all)")
    parser.add_argument(
        "--metric", choices=("ari", "nmi", "acc"), default="ari", help="score of the label rules' table"
    )
    parser.add_argument("--seeds", nargs="+", type=int, help="only these seeds (default: every seed of the tag)")
    args = parser.parse_args(argv)
    if not args.tag and not args.label_rules:
        parser.error("give --tag or --label-rules")
    if args.label_rules:
        print(label_rules_table(args.label_rules, args.rule, args.seeds, args.metric))
    else:
        print(quality_table(args.tag, args.seeds))


if __name__ == "__main__":
    main()
