"""``bnn_layers``: MindSpore's Bayesian layers and ``WithBNNLossCell`` on Pyro.

Each layer holds a ``NormalPrior`` and a ``NormalPosterior`` per parameter, as MindSpore's
do. Called directly, a layer draws its weights from the learned posterior (MindSpore's
behaviour). Inside the Pyro model that :class:`WithBNNLossCell` builds, each weight is a
``pyro.sample`` site with the layer's prior, and the guide samples the same sites from the
layers' posteriors; :class:`WithBNNLossCell` returns Pyro's ``Trace_ELBO`` loss for the pair:
``dnn_factor * loss_fn(backbone(x), label) + bnn_factor * (log q(w) - log p(w))``, whose
expectation is ``dnn_factor * loss + bnn_factor * KL(q || p)``.

Differences from MindSpore (see ``docs/facade.md``): the KL is KL(q || p), the Bayes-by-
Backprop direction (MindSpore computes KL(p || q)); ``torch.nn`` modules and optimizers stand
where MindSpore has Cells; ``dtype`` is a ``torch.dtype``.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.nn import functional as F

from ...infer.training.estimators import get_elbo
from ...models._plate import DataSizeMixin
from ...models.bnn import expand_prior
from .._checks import check_cell, check_positive_int


def _check_number(value, name, what="int or float"):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"The type of `{name}` must be `{what}`, but got {type(value).__name__}")
    return float(value)


class _Normal(nn.Module):
    """A Normal with stored ``mean``/``sd`` buffers, called MindSpore's way:
    ``normal("sample" | "mean" | "sd" | "kl_loss" | "log_prob" | ..., mean=..., sd=...)``."""

    def __init__(self, mean=None, sd=None, dtype=torch.float32):
        super().__init__()
        self.register_buffer("_mean_value", None if mean is None else torch.as_tensor(mean, dtype=dtype))
        self.register_buffer("_sd_value", None if sd is None else torch.as_tensor(sd, dtype=dtype))

    def distribution(self, mean=None, sd=None):
        mean = self._mean_value if mean is None else mean
        sd = self._sd_value if sd is None else sd
        if mean is None or sd is None:
            raise ValueError("this Normal has no stored mean/sd: pass mean= and sd=")
        return torch.distributions.Normal(mean, sd, validate_args=False)

    def forward(self, method, *args, mean=None, sd=None):
        if method == "get_dist_type":
            return "Normal"
        if method == "get_dist_args":
            d = self.distribution(mean, sd)
            return d.loc, d.scale
        if method == "kl_loss":  # kl_loss('Normal', mean_b, sd_b): KL(self || b), elementwise
            _, mean_b, sd_b = args
            return torch.distributions.kl_divergence(self.distribution(mean, sd), self.distribution(mean_b, sd_b))
        d = self.distribution(mean, sd)
        if method == "sample":
            shape = tuple(args[0]) if args else ()
            return d.rsample(shape)
        if method in ("mean", "mode"):
            return d.mean
        if method == "sd":
            return d.stddev
        if method == "var":
            return d.variance
        if method == "entropy":
            return d.entropy()
        if method in ("log_prob", "prob"):
            lp = d.log_prob(args[0])
            return lp if method == "log_prob" else lp.exp()
        raise ValueError(f"unknown Normal method {method!r}")


class NormalPrior(nn.Module):
    """A fixed Normal prior, ``NormalPrior(dtype=torch.float32, mean=0, std=0.1)`` as in
    MindSpore (**the default std is 0.1**; ``dtype`` is the first positional argument)."""

    def __init__(self, dtype=torch.float32, mean=0, std=0.1):
        super().__init__()
        _check_number(mean, "mean")
        if _check_number(std, "std") <= 0:
            raise ValueError("Standard deviation should be greater than zero.")
        self.normal = _Normal(mean, std, dtype=dtype)

    def forward(self, *inputs, **kwargs):
        return self.normal(*inputs, **kwargs)


class NormalPosterior(nn.Module):
    """A trainable Normal: parameters ``mean`` and ``untransformed_std`` (rho), with
    ``std = softplus(rho) + 1e-6``; initialised from ``N(loc_mean, loc_std)`` and
    ``N(untransformed_scale_mean, untransformed_scale_std)`` (so the initial std is about
    softplus(-5) = 0.0067).
    """

    def __init__(
        self,
        name,
        shape,
        dtype=torch.float32,
        loc_mean=0,
        loc_std=0.1,
        untransformed_scale_mean=-5,
        untransformed_scale_std=0.1,
    ):
        super().__init__()
        if not isinstance(name, str):
            raise TypeError(f"The type of `name` should be `str`, but got {type(name).__name__}")
        if not isinstance(shape, (tuple, list)):
            raise TypeError(f"The type of `shape` should be `tuple` or `list`, but got {type(shape).__name__}")
        for value, arg in ((loc_mean, "loc_mean"), (untransformed_scale_mean, "untransformed_scale_mean")):
            _check_number(value, arg)
        for value, arg in ((loc_std, "loc_std"), (untransformed_scale_std, "untransformed_scale_std")):
            if _check_number(value, arg) < 0:
                raise TypeError(f"The value of `{arg}` should be >= 0, but got {value}")
        self.name = name
        shape = tuple(int(s) for s in shape)
        self.mean = nn.Parameter(torch.randn(shape, dtype=dtype) * loc_std + loc_mean)
        self.untransformed_std = nn.Parameter(
            torch.randn(shape, dtype=dtype) * untransformed_scale_std + untransformed_scale_mean
        )
        self.normal = _Normal(dtype=dtype)

    def std(self) -> torch.Tensor:
        return 1e-6 + F.softplus(self.untransformed_std)

    def forward(self, *inputs, **kwargs):
        return self.normal(*inputs, mean=self.mean, sd=self.std(), **kwargs)


def normal_post_fn(name, shape):
    """The default posterior factory: ``NormalPosterior(name=name, shape=shape)``."""
    return NormalPosterior(name=name, shape=shape)


def _prior(fn, arg):
    if isinstance(fn, nn.Module):
        prior = fn
    elif callable(fn):
        try:
            prior = fn()
        except TypeError as error:
            raise TypeError(f"The input form of `{arg}` is incorrect") from error
    else:
        raise TypeError(f"The input form of `{arg}` is incorrect")
    normal = getattr(prior, "normal", None)
    if not isinstance(normal, _Normal) or normal._mean_value is None or normal._sd_value is None:
        raise TypeError(f"The type of distribution of `{arg}` should be `normal`")
    return prior


def _posterior(fn, arg, shape, name):
    try:
        posterior = fn(shape=list(shape), name=name)
    except TypeError as error:
        raise TypeError(f"The type of `{arg}` should be `NormalPosterior`") from error
    if not isinstance(getattr(posterior, "normal", None), _Normal) or not hasattr(posterior, "std"):
        raise TypeError(f"The type of `{arg}` should be `NormalPosterior`")
    return posterior


_ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=-1),
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leakyrelu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def _activation(activation):
    if not activation:
        return None
    if isinstance(activation, str) and activation.lower() in _ACTIVATIONS:
        return _ACTIVATIONS[activation.lower()]()
    if isinstance(activation, nn.Module):
        return activation
    raise ValueError("The type of `activation` is wrong.")


class _Variational(nn.Module):
    """Weights drawn per call: from the posterior when called directly, as ``pyro.sample``
    sites with the prior inside the Pyro model of :class:`WithBNNLossCell`."""

    _site_prefix = None  # set by WithBNNLossCell while its model runs

    def _init_distributions(self, weight_shape, has_bias, out_channels, priors_posteriors):
        weight_prior_fn, weight_posterior_fn, bias_prior_fn, bias_posterior_fn = priors_posteriors
        if not isinstance(has_bias, bool):
            raise TypeError(f"The type of `has_bias` should be `bool`, but got {type(has_bias).__name__}")
        self.has_bias = has_bias
        self.weight_prior = _prior(weight_prior_fn, "weight_prior_fn")
        self.weight_posterior = _posterior(weight_posterior_fn, "weight_posterior_fn", weight_shape, "bnn_weight")
        if has_bias:
            self.bias_prior = _prior(bias_prior_fn, "bias_prior_fn")
            self.bias_posterior = _posterior(bias_posterior_fn, "bias_posterior_fn", (out_channels,), "bnn_bias")

    def roles(self):
        return ("weight", "bias") if self.has_bias else ("weight",)

    def _draw(self, role):
        posterior = getattr(self, f"{role}_posterior")
        if self._site_prefix is None:
            return posterior("sample")
        return pyro.sample(f"{self._site_prefix}{role}", self._prior_distribution(role, posterior.mean))

    def _prior_distribution(self, role, like):
        """The prior of ``role`` expanded to the weight's shape; made once per device, dtype and
        validation setting (a scalar Normal prior is then scored with its one scale)."""
        prior = getattr(self, f"{role}_prior").normal
        validate = torch.distributions.Distribution._validate_args
        mean, sd = prior._mean_value, prior._sd_value
        key = (like.device, like.dtype, tuple(like.shape), validate, id(mean), mean._version, id(sd), sd._version)
        cache = self.__dict__.setdefault("_prior_cache", {})
        cached = cache.get(role)
        if cached is None or cached[0] != key:
            base = dist.Normal(mean.to(like), sd.to(like), validate_args=validate)
            cached = cache[role] = (key, expand_prior(role, base, tuple(like.shape)))
        return cached[1]

    def compute_kl_loss(self) -> torch.Tensor:
        """KL(posterior || prior), analytic, summed over every weight (and bias).

        MindSpore computes KL(prior || posterior) here; ppmodels computes the Bayes-by-
        Backprop direction, the one the ELBO contains."""
        total = 0.0
        for role in self.roles():
            posterior = getattr(self, f"{role}_posterior")
            prior = getattr(self, f"{role}_prior").normal
            q = torch.distributions.Normal(posterior.mean, posterior.std(), validate_args=False)
            total = total + torch.distributions.kl_divergence(q, prior.distribution()).sum()
        return total


class _DenseVariational(_Variational):
    def __init__(self, in_channels, out_channels, activation, has_bias, priors_posteriors):
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.activation = _activation(activation)
        self._init_distributions((out_channels, in_channels), has_bias, out_channels, priors_posteriors)

    def _finish(self, out):
        if self.has_bias:
            out = out + self._draw("bias")
        return self.activation(out) if self.activation is not None else out

    def extra_repr(self):
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, has_bias={self.has_bias}"


class DenseReparam(_DenseVariational):
    """A dense layer with Normal weight and bias posteriors (Bayes by Backprop); one weight
    draw per call, shared by the batch. Signature and defaults as MindSpore's (``has_bias``
    defaults to True)."""

    def __init__(
        self,
        in_channels,
        out_channels,
        activation=None,
        has_bias=True,
        weight_prior_fn=NormalPrior,
        weight_posterior_fn=normal_post_fn,
        bias_prior_fn=NormalPrior,
        bias_posterior_fn=normal_post_fn,
    ):
        super().__init__(
            in_channels,
            out_channels,
            activation,
            has_bias,
            (weight_prior_fn, weight_posterior_fn, bias_prior_fn, bias_posterior_fn),
        )

    def forward(self, x):
        return self._finish(F.linear(x, self._draw("weight")))


class DenseLocalReparam(DenseReparam):
    """:class:`DenseReparam` with the local reparameterisation trick when called directly:
    the pre-activations are drawn from ``N(x mu^T, x^2 (sigma^2)^T)``, independently per
    input. Inside :class:`WithBNNLossCell`'s Pyro model the weights are sample sites, as in
    :class:`DenseReparam` (the same ELBO; the trick's lower-variance gradient is not used).
    Same signature and defaults as :class:`DenseReparam`."""

    def forward(self, x):
        if self._site_prefix is not None:
            return self._finish(F.linear(x, self._draw("weight")))
        mean = F.linear(x, self.weight_posterior.mean)
        std = torch.sqrt(F.linear(x.pow(2), self.weight_posterior.std().pow(2)))
        return self._finish(mean + std * torch.randn_like(mean))


def _pair(value, name):
    if isinstance(value, int) and not isinstance(value, bool):
        return (check_positive_int(value, name),) * 2
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(check_positive_int(v, name) for v in value)
    raise TypeError(f"`{name}` must be an int or a pair of ints, but got {value!r}")


class ConvReparam(_Variational):
    """A 2-D convolution (NCHW) with Normal weight and bias posteriors. Signature and defaults
    as MindSpore's: ``pad_mode`` ``'same'`` (default), ``'valid'`` or ``'pad'`` (then
    ``padding`` is an int or ``(top, bottom, left, right)``), ``has_bias=False``."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        pad_mode="same",
        padding=0,
        dilation=1,
        group=1,
        has_bias=False,
        weight_prior_fn=NormalPrior,
        weight_posterior_fn=normal_post_fn,
        bias_prior_fn=NormalPrior,
        bias_posterior_fn=normal_post_fn,
    ):
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.group = check_positive_int(group, "group")
        if in_channels % group or out_channels % group:
            raise ValueError(
                f"`in_channels` ({in_channels}) and `out_channels` ({out_channels}) must divide by `group` ({group})"
            )
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        if pad_mode not in ("valid", "same", "pad"):
            raise ValueError(
                f"Attr 'pad_mode' of 'Conv2d' Op passed {pad_mode}, should be one of values in 'valid', 'same', 'pad'."
            )
        self.pad_mode = pad_mode
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,) * 4
        if not (
            isinstance(padding, (tuple, list))
            and len(padding) == 4
            and all(isinstance(p, int) and p >= 0 for p in padding)
        ):
            raise TypeError(f"`padding` must be a non-negative int or (top, bottom, left, right), but got {padding!r}")
        if pad_mode != "pad" and any(padding):
            raise ValueError(
                f"`padding` must be 0 unless pad_mode is 'pad', but got {padding!r} with pad_mode {pad_mode!r}"
            )
        self.padding = tuple(padding)
        shape = (out_channels, in_channels // group, *self.kernel_size)
        self._init_distributions(
            shape, has_bias, out_channels, (weight_prior_fn, weight_posterior_fn, bias_prior_fn, bias_posterior_fn)
        )

    def _pad(self, x):
        if self.pad_mode == "pad":
            top, bottom, left, right = self.padding
            return F.pad(x, (left, right, top, bottom))
        if self.pad_mode == "valid":
            return x
        pads = []  # 'same': output size ceil(input / stride), the extra pixel at the end
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return F.pad(x, (left, right, top, bottom))

    def forward(self, x):
        out = F.conv2d(self._pad(x), self._draw("weight"), None, self.stride, 0, self.dilation, self.group)
        if self.has_bias:
            out = out + self._draw("bias")[:, None, None]
        return out

    def extra_repr(self):
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, pad_mode={self.pad_mode}, padding={self.padding}, has_bias={self.has_bias}"
        )


def check_factor(value, name):
    """A KL or likelihood factor (an int or float) named ``name``, checked as MindSpore checks it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"The type of `{name}` must be `int` or `float`, but got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"The value of `{name}` should >= 0, but got {value}")
    return value


def variational_layers(module):
    """``(path, layer)`` for every Bayesian layer in ``module`` (not descending into them)."""
    found, stack = [], [("", module)]
    while stack:
        path, m = stack.pop()
        if isinstance(m, _Variational):
            found.append((path, m))
            continue
        for name, child in reversed(list(m.named_children())):
            stack.append((f"{path}.{name}" if path else name, child))
    return found


class _BNNPair(DataSizeMixin, nn.Module):
    """The Pyro model/guide pair behind :class:`WithBNNLossCell`."""

    def __init__(self, backbone, loss_fn, dnn_factor, bnn_factor):
        super().__init__()
        self.backbone, self.loss_fn = backbone, loss_fn
        self.dnn_factor, self.bnn_factor = dnn_factor, bnn_factor

    def _kl_scale(self):
        if self.bnn_factor == 0:
            return poutine.mask(mask=False)
        return poutine.scale(scale=self.bnn_factor) if self.bnn_factor != 1 else contextlib.nullcontext()

    @contextlib.contextmanager
    def _sites(self):
        layers = variational_layers(self.backbone)
        for path, layer in layers:
            layer._site_prefix = f"{path}." if path else ""
        try:
            yield
        finally:
            for _, layer in layers:
                layer._site_prefix = None

    def model(self, x, label):
        with self._sites(), self._kl_scale():
            out = self.backbone(x)
        self.last_loss = self.loss_fn(out, label)  # in the loss function's own shape, for WithBNNLossCell
        pyro.factor("loss", -self.dnn_factor * self.last_loss.sum())
        return out

    def guide(self, x, label):
        with self._kl_scale():
            for path, layer in variational_layers(self.backbone):
                for role in layer.roles():
                    posterior = getattr(layer, f"{role}_posterior")
                    q = dist.Normal(posterior.mean, posterior.std()).to_event(posterior.mean.dim())
                    pyro.sample(f"{path}.{role}" if path else role, q)


class WithBNNLossCell(nn.Module):
    """The loss of a network of Bayesian layers: Pyro's ``Trace_ELBO`` on the pair whose
    model scores ``dnn_factor * loss_fn(backbone(x), label)`` and samples every Bayesian
    layer's weights from its prior (scaled by ``bnn_factor``), and whose guide samples them
    from the layers' posteriors. The value is a single-draw estimate of
    ``dnn_factor * loss + bnn_factor * KL(q || p)``.

    With a mean loss over the batch, ``dnn_factor`` = the training-set size and
    ``bnn_factor=1`` give the full negative ELBO (MindSpore's examples use ``60000`` and
    ``1e-6`` to tame their reversed KL; with the KL the right way round, 1 is right).

    A call returns MindSpore's value in the loss function's own shape,
    ``dnn_factor * loss_fn(out, label) + bnn_factor * kl`` (the KL broadcast over the loss's
    elements: shape ``(2,)`` for an unreduced loss of two samples). The training objective is
    the reduced one, ``dnn_factor * sum(loss) + bnn_factor * kl``, with the KL counted once:
    :meth:`loss_and_objective` returns both, and :class:`~ppmodels.probability.TrainOneStepCell`
    and :func:`ppmodels.infer.fit` (through :meth:`core`) train on the objective.

    :param str estimator: Pyro's estimator by name (ppmodels; default ``'trace'``).
    """

    def __init__(self, backbone, loss_fn, dnn_factor=1, bnn_factor=1, estimator="trace"):
        super().__init__()
        check_cell(backbone, "The backbone must be Cell type")
        if not callable(loss_fn):
            raise TypeError(f"The loss_fn must be callable (a Cell), but got {type(loss_fn).__name__}")
        self.dnn_factor = check_factor(dnn_factor, "dnn_factor")
        self.bnn_factor = check_factor(bnn_factor, "bnn_factor")
        self._backbone, self._loss_fn = backbone, loss_fn
        self._pair = _BNNPair(backbone, loss_fn, self.dnn_factor, self.bnn_factor)
        self._elbo = get_elbo(estimator)
        self._validated = False

    @property
    def backbone_network(self):
        return self._backbone

    def core(self) -> _BNNPair:
        """The Pyro model/guide pair (for :func:`ppmodels.infer.fit`)."""
        return self._pair

    def loss_and_objective(self, x, label):
        """``(value, objective)``: MindSpore's value in the loss's shape (what a call returns),
        and the scalar objective to differentiate, with the KL counted once."""
        # Pyro checks shapes and distribution arguments on the first call only (as fit does).
        with pyro.validation_enabled(not self._validated):
            objective = self._elbo.differentiable_loss(self._pair.model, self._pair.guide, x, label)
        self._validated = True
        loss = self._pair.last_loss
        if not isinstance(loss, torch.Tensor) or loss.dim() == 0:
            return objective, objective
        kl = objective - self.dnn_factor * loss.sum()  # bnn_factor * the single-draw KL
        return self.dnn_factor * loss + kl, objective

    def forward(self, x, label):
        return self.loss_and_objective(x, label)[0]


__all__ = [
    "ConvReparam",
    "DenseLocalReparam",
    "DenseReparam",
    "NormalPosterior",
    "NormalPrior",
    "WithBNNLossCell",
    "normal_post_fn",
]
