from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .._atomic import replaced_atomically  # noqa: E402


def _np(t):
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def save(fig, path) -> Path:
    """Save ``fig`` as PNG at ``path`` (folders created) and close it. The image is written to
    a temporary file renamed into place, so a failed write leaves no partial file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as fh:
            fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def loss_curves(train_loss, val_loss=None, ylabel="negative ELBO (nats per sample)", title=None):
    """Training (and validation) loss per epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(train_loss) + 1)
    ax.plot(epochs, train_loss, label="train")
    if val_loss is not None and any(v is not None for v in val_loss):
        ax.plot(epochs, [np.nan if v is None else v for v in val_loss], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _tile(images, nrow):
    images = _np(images)
    if images.ndim == 4:
        images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    n = images.shape[0]
    ncol = math.ceil(n / nrow)
    h, w = images.shape[1:3]
    canvas = np.ones((nrow * h + (nrow - 1), ncol * w + (ncol - 1)) + images.shape[3:], dtype=float)
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[i]
    return canvas


def image_grid(images, nrow=None, title=None):
    """A grid of ``(N, C, H, W)`` images in [0, 1]."""
    n = len(images)
    nrow = nrow or max(1, int(math.sqrt(n)))
    fig, ax = plt.subplots(figsize=(6, 6 * nrow / max(1, math.ceil(n / nrow))))
    ax.imshow(_tile(images, nrow), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def class_rows(images_per_class, class_names=None, title=None):
    """One row of samples per class: ``images_per_class`` is ``(C, n, 1, H, W)``."""
    images = _np(images_per_class)
    num_classes, per = images.shape[:2]
    fig, axes = plt.subplots(num_classes, 1, figsize=(per * 0.6 + 1, num_classes * 0.65))
    axes = np.atleast_1d(axes)
    for c in range(num_classes):
        axes[c].imshow(_tile(images[c], 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[c].set_xticks([])
        axes[c].set_yticks([])
        axes[c].set_ylabel(class_names[c] if class_names else str(c), rotation=0, ha="right", va="center")
    if title:
        axes[0].set_title(title)
    return fig


def predictive_draws(images, probs, class_names, title=None, per_row=6):
    """Each input image above its predictive class probabilities: the mean over posterior
    draws (bars) and the 5-95% range across the draws (lines). ``images`` is ``(N, 1, H, W)``,
    ``probs`` ``(S, N, K)``."""
    images, probs = _np(images), _np(probs)
    n = len(images)
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.9 * cols, 3.2 * rows), squeeze=False)
    k = probs.shape[-1]
    for i in range(rows * cols):
        top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        top.axis("off")
        if i >= n:
            bottom.axis("off")
            continue
        top.imshow(images[i].reshape(images.shape[-2:]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        mean, lo, hi = probs[:, i].mean(0), np.quantile(probs[:, i], 0.05, 0), np.quantile(probs[:, i], 0.95, 0)
        bottom.bar(np.arange(k), mean, color="C0")
        bottom.vlines(np.arange(k), lo, hi, color="k", linewidth=1)
        bottom.set_ylim(0, 1)
        bottom.set_xticks(np.arange(k), class_names, fontsize=6)
        bottom.tick_params(axis="y", labelsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def latent_scatter(z, labels, title="latent means of the test set"):
    """Scatter of 2-D latent codes coloured by label (seed 002's figure)."""
    z = _np(z)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    points = ax.scatter(z[:, 0], z[:, 1], c=_np(labels), cmap="tab10", s=8, alpha=0.8)
    fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z - dim 1")
    ax.set_ylabel("z - dim 2")
    ax.set_title(title)
    return fig


def latent_walk(decode, grid_size=15, limit=3.0, device=None, title="decoded latent walk"):
    """Decode a ``grid_size`` x ``grid_size`` grid of 2-D latents in [-limit, limit]^2
    (seed 002's figure). ``decode`` maps ``(n, 2)`` latents to ``(n, 1, H, W)`` images."""
    xs = np.linspace(-limit, limit, grid_size)
    ys = np.linspace(-limit, limit, grid_size)[::-1]
    grid = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float32, device=device)
    with torch.no_grad():
        images = _np(decode(grid))
    fig, ax = plt.subplots(figsize=(7, 7))
    h, w = images.shape[-2:]
    ax.imshow(_tile(images, grid_size), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ticks = np.arange(grid_size)
    ax.set_xticks(ticks * (w + 1) + w / 2, [f"{x:.1f}" for x in xs], rotation=90, fontsize=7)
    ax.set_yticks(ticks * (h + 1) + h / 2, [f"{y:.1f}" for y in ys], fontsize=7)
    ax.set_xlabel("z - dim 1")
    ax.set_ylabel("z - dim 2")
    ax.set_title(title)
    return fig


def marginals(comparison, latents=None, max_latents=9, title="posterior marginals"):
    """Overlaid marginal histograms of each latent under every method of a
    :class:`~ppmodels.infer.Comparison`, with the exact posterior's density where known."""
    reference = getattr(comparison, "posterior", None)
    if reference is not None:  # a published reference: its parameters, and its density from its quantiles
        names = list(latents or reference.parameters[:max_latents])
        samples = {m.name: comparison.to_posterior(m.site_samples) for m in comparison.methods}
    else:
        names = list(latents or comparison.latent_names[:max_latents])
        samples = {m.name: m.samples for m in comparison.methods}
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for m in comparison.methods:
            ax.hist(_np(samples[m.name][name]), bins=50, density=True, histtype="step", label=m.name)
        if reference is not None:
            q = np.asarray(reference.summaries[name]["quantiles"])[::5]  # 20 bins of 5% of the mass each
            ax.plot((q[1:] + q[:-1]) / 2, 0.05 / np.maximum(np.diff(q), 1e-12), "k--", label="reference")
        elif comparison.exact:
            mu, sd = comparison.exact[name]["mean"], comparison.exact[name]["sd"]
            grid = np.linspace(mu - 4 * sd, mu + 4 * sd, 200)
            ax.plot(grid, np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)), "k--", label="exact")
        ax.set_title(name)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def posteriordb_benchmark(results, title="VI and MCMC against posteriordb's reference posteriors"):
    """Methods x posteriors from ``ppmodels compare --problem posteriordb:...``: the largest
    absolute mean error in reference sds of each method on each posterior (log colour scale;
    each cell shows it, and the sd ratios' range)."""
    from matplotlib.colors import LogNorm

    posteriors = list(results)
    methods = list(dict.fromkeys(r["method"] for report in results.values() for r in report["summary"]))
    error = np.full((len(methods), len(posteriors)), np.nan)
    label = [["" for _ in posteriors] for _ in methods]
    for j, name in enumerate(posteriors):
        for row in results[name]["summary"]:
            i = methods.index(row["method"])
            error[i, j] = max(row["max_abs_mean_error_sds"], 1e-3)
            label[i][j] = f"{row['max_abs_mean_error_sds']:.2g}\n{row['min_sd_ratio']:.2g}-{row['max_sd_ratio']:.2g}"
    fig, ax = plt.subplots(figsize=(1.4 * len(posteriors) + 2, 0.9 * len(methods) + 2))
    image = ax.imshow(error, cmap="RdYlGn_r", norm=LogNorm(vmin=0.01, vmax=100), aspect="auto")
    for i in range(len(methods)):
        for j in range(len(posteriors)):
            ax.text(j, i, label[i][j], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(posteriors)), [p.split("-", 1)[-1] for p in posteriors], rotation=45, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    fig.colorbar(image, ax=ax, label="max |mean error| (reference sds)")
    ax.set_title(title + "\n(cell: max |mean error| in reference sds; sd ratio range)", fontsize=9)
    fig.tight_layout()
    return fig


def sbc_ranks(result, max_parameters=8, title=None):
    """Simulation-based calibration (:func:`ppmodels.infer.sbc`): per parameter, the rank
    histogram with the 99% range of a bin's count under uniform ranks (Talts et al. 2018)
    and the ECDF of the fractional ranks minus the uniform CDF, with the simultaneous 95%
    band (Säilynoja et al. 2022). Out of the band means not calibrated; a U shape: too
    narrow; a hump: too wide; a slope: biased."""
    from scipy.stats import binom

    from ..infer.comparison.sbc_ranks import ecdf_band

    names = list(result.ranks)[:max_parameters]
    n, values = result.num_simulations, result.num_draws + 1
    bins = result.bins()
    p_values = result.p_values()
    z, lower, upper = ecdf_band(n)
    fig, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names) + 0.6, 5.2), squeeze=False)
    for j, name in enumerate(names):
        ranks = _np(result.ranks[name])
        ax = axes[0, j]
        ax.hist(ranks, bins=np.linspace(0, values, bins + 1), color="tab:blue", alpha=0.75)
        lo, hi = binom.ppf([0.005, 0.995], n, 1 / bins)
        ax.axhspan(lo, hi, color="grey", alpha=0.25, lw=0)
        ax.set_title(f"{name}\np = {p_values[name]:.2g}", fontsize=9)
        ax.set_xlabel("rank")
        ax = axes[1, j]
        fraction = np.sort((ranks + 0.5) / values)
        ax.fill_between(z, lower, upper, color="grey", alpha=0.25, lw=0, label="95% simultaneous band")
        ax.plot(z, np.searchsorted(fraction, z, side="right") / n - z, color="tab:blue")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("fractional rank")
    axes[0, 0].set_ylabel("simulations")
    axes[1, 0].set_ylabel("ECDF - uniform")
    axes[1, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title or f"SBC of {result.method}: {n} simulations, ranks among {result.num_draws} draws", fontsize=10)
    fig.tight_layout()
    return fig


def discrete_marginals(comparison, title="posterior of the discrete sites"):
    """For each discrete site of a :class:`~ppmodels.infer.Comparison`, the posterior
    probability of each value at every element (e.g. each datum's assignment) under every
    method, with the exact probabilities where known."""
    panels = []
    for site in comparison.discrete:
        probs = {m.name: _np(m.discrete[site]) for m in comparison.methods if site in m.discrete}
        if comparison.exact_discrete and site in comparison.exact_discrete:
            probs["exact"] = _np(comparison.exact_discrete[site])
        if probs:
            panels.append((site, probs))
    k = max(next(iter(p.values())).shape[-1] for _, p in panels) if panels else 1
    fig, axes = plt.subplots(len(panels) * k, 1, figsize=(7, 2.2 * max(1, len(panels) * k)), squeeze=False)
    for j, (site, probs) in enumerate(panels):
        for value in range(k):
            ax = axes[j * k + value, 0]
            for i, (name, p) in enumerate(probs.items()):
                flat = p.reshape(-1, p.shape[-1])
                style = {"color": "k", "marker": "x"} if name == "exact" else {"marker": "o", "alpha": 0.7}
                ax.plot(np.arange(len(flat)) + 0.08 * (i - len(probs) / 2), flat[:, value], ls="", label=name, **style)
            ax.set_ylim(-0.05, 1.05)
            ax.set_ylabel(f"P({site} = {value})")
    axes[-1, 0].set_xlabel("element (datum)")
    axes[0, 0].legend(fontsize=8, ncol=4)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def predictive_bands(x, method_means, x_train=None, y_train=None, title="posterior predictive mean, 5-95% band"):
    """1-D regression: for each method, the median and 5-95% band of the mean function.

    :param x: ``(G,)`` grid; ``method_means`` maps a method name to ``(S, G)`` mean functions.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = _np(x).reshape(-1)
    for name, means in method_means.items():
        q = np.quantile(_np(means), [0.05, 0.5, 0.95], axis=0)
        line = ax.plot(xs, q[1], label=name)[0]
        ax.fill_between(xs, q[0], q[2], color=line.get_color(), alpha=0.15)
    if x_train is not None:
        ax.scatter(_np(x_train).reshape(-1), _np(y_train), s=10, c="k", label="training data", zorder=3)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def estimator_comparison(comparison, title="ELBO estimators on one model"):
    """Training loss per epoch for each estimator, and the test log-likelihood of each."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r.estimator for r in comparison.results]
    for r in comparison.results:
        left.plot(np.arange(1, len(r.train_loss) + 1), r.train_loss, label=r.estimator)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss, each estimator's own objective\n(nats per sample)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    values = [r.test_log_likelihood for r in comparison.results]
    errors = [r.test_log_likelihood_stderr for r in comparison.results]
    right.errorbar(names, values, yerr=errors, fmt="o", capsize=4)
    low = min(v - e for v, e in zip(values, errors))
    high = max(v + e for v, e in zip(values, errors))
    pad = max(high - low, 1e-3) * 0.5
    right.set_ylim(low - pad, high + pad)
    right.set_ylabel(f"test log-likelihood, K={comparison.eval_samples}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reliability_diagram(reliability, title=None):
    """Accuracy against confidence per bin (a :class:`ppmodels.toolbox.Reliability`), with the
    diagonal of perfect calibration, bin counts underneath and the ECE in the title."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    edges = _np(reliability.edges)
    centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    acc = np.nan_to_num(_np(reliability.accuracy))
    ax.bar(centers, acc, width=width * 0.95, color="tab:blue", alpha=0.8, label="accuracy")
    conf = _np(reliability.confidence)
    used = ~np.isnan(conf)
    ax.plot(centers[used], conf[used], "o", color="tab:red", ms=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(title or f"reliability (ECE {reliability.ece:.4f})")
    counts.bar(centers, _np(reliability.count), width=width * 0.95, color="gray")
    counts.set_yscale("symlog")
    counts.set_xlabel("confidence (top class)")
    counts.set_ylabel("count")
    return fig


def uncertainty_histogram(values: dict, xlabel="epistemic uncertainty (mutual information, nats)", title=None):
    """Overlaid histograms of one uncertainty measure for several input sets
    (``{"test digits": tensor, "rotated": tensor, ...}``)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    arrays = {k: _np(v).ravel() for k, v in values.items()}
    top = max(float(a.max()) for a in arrays.values() if a.size)
    bins = np.linspace(0, top if top > 0 else 1.0, 40)
    for name, a in arrays.items():
        ax.hist(a, bins=bins, alpha=0.5, density=True, label=f"{name} (mean {a.mean():.3f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def uncertainty_bands(x, mean, aleatoric, epistemic, x_train=None, y_train=None, truth=None, title=None):
    """1-D regression: the predictive mean with +-2 sd bands of the total and of the epistemic
    part (variances ``aleatoric`` and ``epistemic``, law of total variance), and the data."""
    x, mean = _np(x).ravel(), _np(mean).ravel()
    order = np.argsort(x)
    x, mean = x[order], mean[order]
    ale, epi = _np(aleatoric).ravel()[order], _np(epistemic).ravel()[order]
    total_sd, epi_sd = np.sqrt(ale + epi), np.sqrt(epi)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(x, mean - 2 * total_sd, mean + 2 * total_sd, color="tab:orange", alpha=0.25, label="±2 sd total")
    ax.fill_between(x, mean - 2 * epi_sd, mean + 2 * epi_sd, color="tab:blue", alpha=0.35, label="±2 sd epistemic")
    ax.plot(x, mean, color="tab:blue", label="predictive mean")
    if truth is not None:
        ax.plot(x, _np(truth).ravel()[order], "k--", lw=1, label="true function")
    if x_train is not None:
        ax.plot(_np(x_train).ravel(), _np(y_train).ravel(), ".", color="k", ms=3, alpha=0.6, label="training data")
    ax.legend(fontsize=8)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title:
        ax.set_title(title)
    return fig


def function_predictions(panels, ncols=3, title=None):
    """Neural-process predictions, one panel per function. Each panel is a dict of 1-D
    tensors: ``x_context, y_context, x, mean, std`` and optionally ``samples`` (S, points),
    ``truth`` (the noisy observations at ``x``), ``oracle_mean``, ``oracle_std``. Shows the
    predictive mean with a ±2 sd band, sample functions, the context, the data and the GP
    oracle's ±2 sd band."""
    n = len(panels)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        x = _np(p["x"]).ravel()
        order = np.argsort(x)
        x = x[order]
        mean, std = _np(p["mean"]).ravel()[order], _np(p["std"]).ravel()[order]
        if p.get("samples") is not None:
            for s in _np(p["samples"])[:, order]:
                ax.plot(x, s, color="tab:blue", lw=0.5, alpha=0.3)
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.2, label="model ±2 sd")
        ax.plot(x, mean, color="tab:blue", lw=1.5, label="model mean")
        if p.get("oracle_mean") is not None:
            om, osd = _np(p["oracle_mean"]).ravel()[order], _np(p["oracle_std"]).ravel()[order]
            ax.plot(x, om - 2 * osd, "--", color="tab:green", lw=1, label="GP oracle ±2 sd")
            ax.plot(x, om + 2 * osd, "--", color="tab:green", lw=1)
        if p.get("truth") is not None:
            ax.plot(x, _np(p["truth"]).ravel()[order], ".", color="gray", ms=3, label="function (noisy)")
        ax.plot(_np(p["x_context"]).ravel(), _np(p["y_context"]).ravel(), "o", color="k", ms=4, label="context")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_curves(series: dict, xlabel="epoch", title=None):
    """One panel per named series (e.g. loss, KL, posterior sd) against ``xlabel``."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes.flat, series.items()):
        values = _np(values)
        ax.plot(np.arange(1, len(values) + 1), values)
        ax.set_xlabel(xlabel)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def roc_curve(curves: dict, title="ROC"):
    """ROC curves (``{"label": ROC}``, as :func:`ppmodels.toolbox.roc` returns) with AUROCs."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, curve in curves.items():
        ax.plot(curve.fpr, curve.tpr, label=f"{name} (AUROC {curve.auroc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return fig
