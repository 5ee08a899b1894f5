"""Result plots: the embedding coloured by cluster (and labels), loss curves, cluster sizes.

The embedding is scanpy's plot; the others are built on ``matplotlib.figure.Figure`` (no pyplot
state). ``save`` writes a PNG whatever the file's suffix, so atomic temporary names work.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

DPI = 150


def palette(n: int) -> list[str]:
    """Scanpy's categorical palettes: distinct colours for up to 102 categories, grey beyond."""
    from scanpy.plotting import palettes

    for colours in (palettes.default_20, palettes.default_28, palettes.default_102):
        if n <= len(colours):
            return list(colours[:n])
    return list(palettes.default_102) + ["#bbbbbb"] * (n - len(palettes.default_102))


def _categories(values) -> pd.Categorical:
    values = pd.Series(values)
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.remove_unused_categories().array
    return pd.Categorical(values.astype(str))


def _legend_outside(ax, n_entries: int, **kwargs) -> None:
    ax.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
        fontsize=8,
        ncol=1 if n_entries <= 16 else 2 if n_entries <= 40 else 3,
        **kwargs,
    )


def _save(fig: Figure, save: str | os.PathLike | None) -> Figure:
    if save is not None:
        fig.savefig(save, dpi=DPI, format="png")
    return fig


def embedding(
    adata,
    keys: list[str],
    *,
    basis: str = "X_umap",
    titles: list[str] | None = None,
    suptitle: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Plot ``obsm[basis]`` with :func:`scanpy.pl.embedding`, one panel per categorical ``obs`` column.

    Cells are drawn in a seeded random order so no category hides the others, and each legend entry
    gives the category's number of cells.

    Parameters
    ----------
    adata
        Any AnnData with ``obsm[basis]``.
    keys
        ``obs`` columns to colour by, one panel each.
    basis
        ``obsm`` key of the 2-D coordinates.
    titles
        One title per panel (default: the keys).
    suptitle
        Title of the whole figure.
    save
        Write the figure there as a PNG (whatever the suffix, so atomic temporary names work).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (closed in pyplot, so it does not stay alive).
    """
    import anndata as ad
    import matplotlib.pyplot as plt
    import scanpy as sc

    order = np.random.default_rng(0).permutation(adata.n_obs)
    columns = {key: _with_counts(adata.obs[key]) for key in keys}
    shuffled = ad.AnnData(
        obs=pd.DataFrame(columns, index=adata.obs_names).iloc[order],
        obsm={f"X_{basis.removeprefix('X_')}": np.asarray(adata.obsm[basis])[order, :2]},
    )
    name = basis.removeprefix("X_")  # scanpy labels the axes UMAP1, UMAP2 for basis 'umap' (obsm['X_umap'])
    with plt.rc_context({"figure.figsize": (5.2, 5.2)}):
        fig = sc.pl.embedding(
            shuffled,
            name,
            color=keys,
            title=titles or keys,
            show=False,
            return_fig=True,
            legend_fontsize=8,
            frameon=True,
            size=float(np.clip(120_000 / adata.n_obs, 0.5, 60)),
            wspace=0.4,
        )
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    _save(fig, save)
    plt.close(fig)  # scanpy draws with pyplot, which would keep every figure alive
    return fig


def _with_counts(values) -> pd.Categorical:
    """The categories renamed ``name (cells)``, in their order; missing labels stay missing."""
    values = _categories(values)
    counts = pd.Series(values).value_counts()
    return values.rename_categories([f"{name} ({counts.get(name, 0):,})" for name in values.categories])


def loss_curves(history: dict, *, title: str | None = None, save: str | os.PathLike | None = None) -> Figure:
    """Plot every loss term per epoch, one panel per training phase.

    ``loss`` is the weighted total and is drawn thick and black; the y axis is logarithmic when all
    values are positive, because the terms differ by orders of magnitude.

    Parameters
    ----------
    history
        ``history[phase][term]``: the term's values per epoch (``uns['scdefr']['history']``).
    title
        Title of the whole figure.
    save
        Write the figure there as a PNG (whatever the suffix, so atomic temporary names work).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per phase with a history (pre-training, joint training).
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    order = ["pretrain", "joint"] + sorted(set(history) - {"pretrain", "joint"})  # h5ad sorts keys
    phases = [p for p in order if p in history and history[p] and len(next(iter(history[p].values()))) > 0]
    fig = Figure(figsize=(6.2 * max(1, len(phases)), 4.4), layout="constrained")
    axes = fig.subplots(1, max(1, len(phases)), squeeze=False)[0]
    names = {"pretrain": "pre-training", "joint": "joint training (clustering)"}
    terms_everywhere = sorted({name for p in phases for name in history[p]} - {"loss"})
    colour_of = dict(
        zip(terms_everywhere, palette(len(terms_everywhere)), strict=False)
    )  # one colour per term in every panel
    for ax, phase in zip(axes, phases, strict=False):
        terms = {name: history[phase][name] for name in sorted(history[phase], key=lambda n: (n != "loss", n))}
        positive = all(np.all(np.asarray(v) > 0) for v in terms.values())
        for name, values in terms.items():
            values = np.asarray(values, dtype=float)
            epochs = np.arange(1, values.size + 1)
            style = (
                dict(color="black", linewidth=2.4, zorder=3)
                if name == "loss"
                else dict(color=colour_of[name], linewidth=1.5)
            )
            ax.plot(
                epochs,
                values,
                label="total (weighted)" if name == "loss" else name,
                marker="o" if values.size <= 30 else None,
                markersize=3,
                **style,
            )
        if positive:
            ax.set_yscale("log")
            values = np.concatenate([np.asarray(v, dtype=float) for v in terms.values()])
            plain = FuncFormatter(lambda value, _: f"{value:g}")
            # label 2x, 3x and 5x ticks too when the axis spans less than ~1.5 decades
            few = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "235" else "")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(few if np.log10(values.max() / values.min()) < 1.5 else NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(names.get(phase, phase), fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (mean over batches)")
        ax.grid(alpha=0.3)
        _legend_outside(ax, len(terms))
    if not phases:
        axes[0].text(0.5, 0.5, "no loss history recorded", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    if title:
        fig.suptitle(title, fontsize=12)
    return _save(fig, save)


def cluster_sizes(
    adata,
    key: str = "scdefr_cluster",
    *,
    label_key: str | None = None,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Plot the cells per cluster as bars, each split by the labels it contains if ``label_key`` is given.

    Parameters
    ----------
    adata
        Any AnnData with the clusters in ``obs[key]``.
    key
        ``obs`` column of the clusters.
    label_key
        ``obs`` column of known labels to split each bar by.
    title
        Title of the plot (default: the number of clusters and cells).
    save
        Write the figure there as a PNG (whatever the suffix, so atomic temporary names work).

    Returns
    -------
    matplotlib.figure.Figure
        One bar per cluster, its size written on top.
    """
    clusters = _categories(adata.obs[key])
    fig = Figure(figsize=(max(5.5, 0.45 * len(clusters.categories) + 3.5), 4.4), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(clusters.categories))
    if label_key is None:
        sizes = pd.Series(clusters).value_counts().reindex(clusters.categories, fill_value=0)
        ax.bar(positions, sizes.to_numpy(), color=palette(len(sizes)), edgecolor="white")
    else:
        labels = _categories(adata.obs[label_key])
        table = pd.crosstab(pd.Series(clusters, name=key), pd.Series(labels, name=label_key), dropna=False)
        table = table.reindex(index=clusters.categories, fill_value=0)
        sizes = table.sum(axis=1)
        bottom = np.zeros(len(table))
        for colour, name in zip(palette(table.shape[1]), table.columns, strict=False):
            ax.bar(
                positions,
                table[name].to_numpy(),
                bottom=bottom,
                color=colour,
                edgecolor="white",
                linewidth=0.5,
                label=str(name),
            )
            bottom += table[name].to_numpy()
        _legend_outside(ax, table.shape[1], title=label_key, title_fontsize=8)
    for x, value in zip(positions, sizes.to_numpy(), strict=False):
        ax.annotate(
            f"{value:,}", (x, value), ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points"
        )
    ax.set_xticks(positions, [str(c) for c in clusters.categories])
    ax.set_xlabel("cluster")
    ax.set_ylabel("cells")
    ax.set_ylim(0, sizes.max() * 1.1 if len(sizes) else 1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or f"Cluster sizes ({len(clusters.categories)} clusters, {len(clusters):,} cells)", fontsize=11)
    return _save(fig, save)
