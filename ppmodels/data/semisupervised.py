"""Few labels, many unlabelled samples: a balanced labelled subset and joint batches of both."""

from __future__ import annotations

import math

import torch

from .._validate import check_positive_int


def split_labelled(x, y, num_labels: int, num_classes: int | None = None, seed: int = 0):
    """Keep the labels of ``num_labels`` samples, the same number of each class (the rest
    of ``num_labels`` spread over the first classes), drawn with ``seed``; the other
    samples become unlabelled.

    :returns: ``(x_labelled, y_labelled, x_unlabelled)``.
    """
    n = check_positive_int(num_labels, "num_labels")
    k = int(y.max()) + 1 if num_classes is None else check_positive_int(num_classes, "num_classes")
    if n < k:
        raise ValueError(f"`num_labels` must be at least the number of classes ({k}) for one label each, got {n}")
    if n >= len(y):
        raise ValueError(f"`num_labels` must be fewer than the {len(y)} samples (some must stay unlabelled), got {n}")
    g = torch.Generator().manual_seed(seed)
    per_class = [n // k + (1 if c < n % k else 0) for c in range(k)]
    chosen = []
    for c in range(k):
        idx = (y == c).nonzero().squeeze(-1)
        if len(idx) < per_class[c]:
            raise ValueError(f"class {c} has {len(idx)} samples, fewer than the {per_class[c]} labels asked of it")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[: per_class[c]]])
    chosen = torch.cat(chosen)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[chosen] = False
    return x[chosen], y[chosen], x[mask]


class SemiSupervisedBatches:
    """Joint batches for a semi-supervised pair (:class:`ppmodels.models.SSVAE`): every step
    takes ``batch_size`` unlabelled samples and ``labelled_batch_size`` labelled ones, as the
    dict ``{"x": labelled x, "y": labels, "x_unlabelled": ..., "sizes": (N_l, N_u)}``; the
    pair scales each part to its whole set, so every step's loss estimates the ELBO of all
    the data. An epoch is one pass over the (shuffled) unlabelled data; the labelled data
    are reshuffled and cycled as often as that takes.

    :param labelled: ``(x, y)`` with integer labels.
    :param unlabelled: ``x``.
    :param int labelled_batch_size: default ``min(N_l, batch_size)``.
    """

    def __init__(self, labelled, unlabelled, batch_size: int = 128, labelled_batch_size=None, seed: int = 0):
        x_l, y_l = labelled
        if len(x_l) != len(y_l):
            raise ValueError(f"`labelled`: {len(x_l)} inputs but {len(y_l)} labels")
        if len(x_l) == 0 or len(unlabelled) == 0:
            raise ValueError("`labelled` and `unlabelled` must each hold at least one sample")
        self.x_l, self.y_l, self.x_u = x_l, y_l, unlabelled
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.labelled_batch_size = (
            min(len(x_l), self.batch_size)
            if labelled_batch_size is None
            else check_positive_int(labelled_batch_size, "labelled_batch_size")
        )
        self.num_labelled, self.num_unlabelled = len(x_l), len(unlabelled)
        self.num_data = self.num_labelled + self.num_unlabelled
        self.generator = torch.Generator().manual_seed(seed)
        self._labelled_order, self._labelled_pos = None, 0

    def __len__(self):
        return math.ceil(self.num_unlabelled / self.batch_size)

    def _labelled_batch(self):
        b, out = self.labelled_batch_size, []
        while sum(len(i) for i in out) < b:
            if self._labelled_order is None or self._labelled_pos >= self.num_labelled:
                self._labelled_order = torch.randperm(self.num_labelled, generator=self.generator)
                self._labelled_pos = 0
            take = self._labelled_order[self._labelled_pos : self._labelled_pos + b - sum(len(i) for i in out)]
            self._labelled_pos += len(take)
            out.append(take)
        idx = torch.cat(out)
        return self.x_l[idx], self.y_l[idx]

    def __iter__(self):
        order = torch.randperm(self.num_unlabelled, generator=self.generator)
        for start in range(0, self.num_unlabelled, self.batch_size):
            x_l, y_l = self._labelled_batch()
            yield {
                "x": x_l,
                "y": y_l,
                "x_unlabelled": self.x_u[order[start : start + self.batch_size]],
                "sizes": (self.num_labelled, self.num_unlabelled),
            }

    def state_dict(self):
        return {
            "generator": self.generator.get_state(),
            "labelled_order": self._labelled_order,
            "labelled_pos": self._labelled_pos,
        }

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self._labelled_order, self._labelled_pos = state["labelled_order"], state["labelled_pos"]
