"""Inductor's decompositions, and three more of this library's for small tensors.

Inductor leaves a matrix product, a cumulative sum or product and an accumulating
``index_put`` as calls between its kernels, each splitting the graph into separate C++ kernels
(one more ``gcc`` run each). Below :data:`SMALL_MATMUL` multiply-adds they are written as
broadcast products and sums here, exact, which inductor fuses with the operations around them.
The figures are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import math

import torch

from .backends import import_inductor

#: a (batched) matrix product of at most this many multiply-adds, and a cumulative sum or
#: product of at most this many elements times its length, is written as a broadcast product
#: and a sum (a masked sum or product)
SMALL_MATMUL = 4096


def inductor_decompositions() -> dict:
    """Inductor's decompositions, and three more for small tensors (:data:`SMALL_MATMUL`):

    - a (batched) matrix product as a product and a sum, and a cumulative sum or product (a
      Dirichlet's stick-breaking transform, a model's ``cumsum``) as a masked sum or product
      over a triangle, exact;
    - an accumulating ``index_put`` (the backward of indexing by a tensor: ``transition[x]``
      in an enumerated HMM) as a one-hot product and a sum: inductor (torch 2.13, CPU)
      compiled a graph with many of them to a wrong gradient (a 30-step HMM's)."""
    import_inductor()
    from torch._inductor.decomposition import select_decomp_table

    aten = torch.ops.aten

    def small(a, b):
        if math.prod(a.shape) * b.shape[-1] > SMALL_MATMUL:
            return NotImplemented  # make_fx keeps the BLAS call
        return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)

    def scan(reduce, neutral):
        def scanned(x, dim, dtype=None):
            if x.dim() == 0 or x.numel() * x.shape[dim] > SMALL_MATMUL:
                return NotImplemented  # make_fx keeps aten's own
            x = (x if dtype is None else x.to(dtype)).movedim(dim, -1)
            index = torch.arange(x.shape[-1], device=x.device)
            upto = index.unsqueeze(-1) >= index  # [i, j]: j <= i
            return reduce(torch.where(upto, x.unsqueeze(-2), neutral), -1).movedim(-1, dim)

        return scanned

    def scatter_add(x, indices, values, accumulate=False):
        index = indices[0] if len(indices) == 1 else None
        if not accumulate or index is None or index.dtype != torch.long:
            return NotImplemented  # make_fx keeps aten's own
        rows, rest, m = x.shape[0], x.shape[1:], index.numel()
        if m * math.prod(x.shape) > SMALL_MATMUL:
            return NotImplemented
        index = torch.where(index < 0, index + rows, index).reshape(m)
        hits = (index.unsqueeze(-1) == torch.arange(rows, device=x.device)).to(values.dtype)
        values = values.expand(*indices[0].shape, *rest).reshape(m, 1, *rest)
        return x + (hits.reshape(m, rows, *[1] * len(rest)) * values).sum(0)

    return {
        **select_decomp_table(),
        aten.index_put.default: scatter_add,
        aten.mm.default: small,
        aten.bmm.default: small,
        aten.cumsum.default: scan(torch.sum, 0),
        aten.cumprod.default: scan(torch.prod, 1),
    }


__all__ = ["SMALL_MATMUL", "inductor_decompositions"]
