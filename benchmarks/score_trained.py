"""Score the clusters of `scdefr train` outputs against a label column, and KMeans at the true k on
their embedding, for training runs made outside the other scripts (e.g. with a patched copy of
`src/`). Labels only score here; the runs never saw them (`scdefr train` reads no labels).

    python benchmarks/score_trained.py T.seed0.h5ad T.seed1.h5ad --label-key cell_type --tag v9_two_level
"""

from __future__ import annotations

import argparse

from _common import LABEL_KEY, append_rows, score

RESULTS_FILE = "trained_scores.csv"


def main(argv=None):
    import anndata
    from sklearn.cluster import KMeans

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trained", nargs="+", help="h5ad files written by `scdefr train`")
    parser.add_argument("--label-key", default=LABEL_KEY)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args(argv)

    for path in args.trained:
        adata = anndata.read_h5ad(path)
        truth = adata.obs[args.label_key].astype(str).to_numpy()
        k = len(set(truth))
        kmeans = KMeans(k, n_init=20, random_state=0).fit_predict(adata.obsm["X_scdefr"])
        row = {"tag": args.tag, "input": path, "n_cells": adata.n_obs, "seed": adata.uns["scdefr"]["params"]["training"]["seed"],
               "n_clusters": int(adata.obs["scdefr_cluster"].nunique()), **score(truth, adata.obs["scdefr_cluster"]),
               **{f"kmeans_true_k_{name}": value for name, value in score(truth, kmeans).items()}}
        print(row, flush=True)
        append_rows(RESULTS_FILE, [row])


if __name__ == "__main__":
    main()
