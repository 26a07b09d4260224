"""Bayesian neural networks as Pyro model/guide pairs.

:func:`to_bayesian` turns any ``torch.nn.Module`` into a :class:`BayesianNetwork`: a copy of
the network made a ``PyroModule`` whose chosen weights are ``PyroSample`` sites with a prior,
a mean-field Normal guide over those sites, and a likelihood on the network's output. The
input network is left untouched, and the Bayesian network keeps its forward inputs and
outputs.

The likelihood is scored in a ``"data"`` plate of size ``num_data`` (set by
:func:`ppmodels.infer.fit` to the training-set size), so a mini-batch's log-likelihood is
scaled to the whole data set and the KL of the weights is counted once per epoch: the loss
is the full negative ELBO. ``kl_weight`` scales the KL explicitly when one wants otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import math
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled
from pyro.nn.module import PyroModule, PyroSample, to_pyro_module_
from torch import nn
from torch.nn import functional as F

from .._random import seeded
from .._spec import recorded
from .._validate import check_choice, check_module, check_positive_float, check_positive_int, check_tensor
from ..nn.lenet import LeNet5
from ._normal import ScalarScaleNormal
from ._plate import DataSizeMixin

#: layer types whose weight and bias become random (subclasses included)
SUPPORTED_LAYERS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
#: normalisation layers: deterministic unless ``convert_normalization=True``
NORMALIZATION_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.GroupNorm,
)
LIKELIHOODS = ("categorical", "normal", "heteroscedastic")
_ANCHOR = "_ppmodels_device"  # an empty buffer on each converted layer: where its priors live
_MIN_SCALE = 1e-4  # floor of a heteroscedastic head's scale


def _type_name(module) -> str:
    cls = type(module)
    return cls.__mro__[1].__name__ if isinstance(module, PyroModule) else cls.__name__


@dataclass
class ConversionReport:
    """What :func:`to_bayesian` did, one ``(module path, layer type, parameter names)`` row per
    layer that holds parameters.

    :ivar converted: layers whose parameters became random.
    :ivar deterministic: supported or normalisation layers left deterministic (by
        ``include``/``exclude`` or because normalisation layers stay deterministic).
    :ivar unsupported: layers with parameters of a type the converter does not make random.
    """

    converted: list = field(default_factory=list)
    deterministic: list = field(default_factory=list)
    unsupported: list = field(default_factory=list)

    @property
    def num_random(self) -> int:
        return sum(n for *_, n in self.converted)

    def __str__(self) -> str:
        lines = []
        for title, rows in (
            ("random", self.converted),
            ("deterministic", self.deterministic),
            ("unsupported", self.unsupported),
        ):
            for path, kind, names, count in rows:
                lines.append(f"{title:<13} {path or '(root)':<24} {kind:<16} {', '.join(names)} ({count} values)")
        return "\n".join(lines)


class _Prior:
    """A ``PyroSample`` prior: the user's distribution expanded to the parameter's shape,
    made on the device of the layer that owns it (cached per device)."""

    def __init__(self, name, base, shape):
        self.name, self.base, self.shape = name, base, tuple(shape)
        self._cache = {}
        self.distribution(torch.device("cpu"))  # checks the shapes now

    def distribution(self, device):
        # Cached per device and per validation setting (so a step with validation off never
        # checks the support of every weight).
        validate = torch.distributions.Distribution._validate_args
        d = self._cache.get((device, validate))
        if d is None:
            d = expand_prior(self.name, _to_device(self.base, device), self.shape)
            for part in (d, getattr(d, "base_dist", None)):
                if part is not None:
                    part._validate_args = validate
            self._cache[(device, validate)] = d
        return d

    def __call__(self, module):
        return self.distribution(module._buffers[_ANCHOR].device)


def _to_device(d, device):
    if isinstance(d, torch.distributions.Independent):
        return type(d)(_to_device(d.base_dist, device), d.reinterpreted_batch_ndims)
    params = {k: v for k, v in vars(d).items() if k in d.arg_constraints and isinstance(v, torch.Tensor)}
    if all(v.device == device for v in params.values()):
        return d
    return type(d)(**{k: v.to(device) for k, v in params.items()})


def _is_scalar_normal(d) -> bool:
    return (
        type(d) in (dist.Normal, torch.distributions.Normal)
        and d.loc.dim() == 0
        and d.scale.dim() == 0
        and not (d.loc.requires_grad or d.scale.requires_grad)
    )


def _tracing() -> bool:
    """Whether a graph is being traced (``make_fx``), where reading a tensor's value is refused."""
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    return get_proxy_mode() is not None


def expand_prior(name, d, shape):
    """The prior ``d`` of the weight ``name`` as a distribution over a tensor of ``shape``."""
    n = len(shape)
    if tuple(d.event_shape) == shape and tuple(d.batch_shape) == ():
        return d
    if _is_scalar_normal(d) and n:
        # Scored with the prior's one scale: no full-size log and square of the expanded scale
        # (a pass over every weight, forward and backward, in every step).
        if _tracing():  # inside a compiled step's trace the prior's tensors are graph inputs: no Python floats
            base = ScalarScaleNormal(d.loc.expand(shape), d.scale, d._validate_args)
        else:
            base = ScalarScaleNormal(
                d.loc.expand(shape), float(d.scale), d._validate_args, zero_loc=float(d.loc) == 0.0
            )
        return dist.Independent(base, n)
    if tuple(d.event_shape) != ():
        raise ValueError(
            f"`prior` for {name!r}: a distribution with event shape {tuple(d.event_shape)} does not fit the "
            f"parameter's shape {shape}; give a scalar distribution (it is expanded) or one with event shape {shape}"
        )
    try:
        d = d.expand(shape)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"`prior` for {name!r}: batch shape {tuple(d.batch_shape)} cannot be expanded to the parameter's "
            f"shape {shape}"
        ) from error
    return dist.Independent(d, n) if n else d


def _prior_base(prior, name, shape):
    if prior is None:
        return dist.Normal(0.0, 1.0)
    if isinstance(prior, torch.distributions.Distribution):
        base = prior
    elif isinstance(prior, dict):
        base = prior.get(name)
        if base is None:
            return dist.Normal(0.0, 1.0)
    elif callable(prior):
        base = prior(name, torch.Size(shape))
    else:
        raise TypeError(
            "`prior` must be None (N(0, 1) on every weight), a distribution, a dict {parameter path: "
            "distribution} or a callable (name, shape) -> distribution, but got " + type(prior).__name__
        )
    if not isinstance(base, torch.distributions.Distribution):
        raise TypeError(f"`prior` for {name!r} must be a torch or Pyro distribution, but got {type(base).__name__}")
    return base


def _matches(path, patterns) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _patterns(value, name):
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"`{name}` must be a module-path pattern or a list of them (fnmatch style), but got {value!r}")


class _NormalPosterior(nn.Module):
    """Mean-field Normal over each site: ``loc`` and ``rho``, with scale ``softplus(rho)``."""

    def __init__(self, values: dict, init_scale: float):
        super().__init__()
        rho = math.log(math.expm1(init_scale))
        self.names = list(values)
        self.loc = nn.ParameterList([nn.Parameter(v.detach().clone()) for v in values.values()])
        self.rho = nn.ParameterList([nn.Parameter(torch.full_like(v, rho)) for v in values.values()])

    def sites(self):
        for name, loc, rho in zip(self.names, self.loc, self.rho):
            yield name, loc, F.softplus(rho)


@dataclass
class Prediction:
    """Monte Carlo predictions from posterior weight draws.

    :ivar samples: ``(S, N, ...)``: class probabilities for a categorical likelihood, the
        predicted mean for the Normal ones.
    :ivar scale_samples: ``(S, N, ...)`` predicted noise scale (regression), else ``None``.
    """

    samples: torch.Tensor
    scale_samples: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        """The predictive mean: mean class probabilities, or the mean of the predicted means."""
        return self.samples.mean(0)

    @property
    def variance(self) -> torch.Tensor:
        """Regression only: the predictive variance by the law of total variance,
        ``E[sigma^2] + Var[mu]`` over the weight draws."""
        if self.scale_samples is None:
            raise ValueError("`variance` is defined for regression likelihoods ('normal', 'heteroscedastic')")
        return self.scale_samples.pow(2).mean(0) + self.samples.var(0, unbiased=False)


@recorded
class BayesianNetwork(DataSizeMixin, nn.Module):
    r"""A Bayesian version of ``net`` as a Pyro model/guide pair.

    :param torch.nn.Module net: the deterministic network (left untouched). Its current
        weights are the initial posterior means, so a pretrained network starts the
        posterior at its weights and a fresh one at PyTorch's own initialisation.
    :param str likelihood: ``"categorical"`` (the output is logits, ``y`` class indices),
        ``"normal"`` (the output is the mean; scale ``noise_scale``, learned when ``None``),
        or ``"heteroscedastic"`` (the last output dimension holds ``2 D`` values: ``D`` means
        and ``D`` raw scales, ``scale = softplus(raw) + 1e-4``).
    :param prior: ``None`` (``N(0, 1)`` on every random weight), a distribution for all of
        them (scalar ones are expanded), a dict ``{"fc1.weight": distribution, ...}``
        (unnamed ones get ``N(0, 1)``), or a callable ``(name, shape) -> distribution``.
    :param include: module-path patterns (fnmatch, e.g. ``"fc3"`` or ``"conv*"``) of the layers
        to make random; default all supported layers.
    :param exclude: module-path patterns to leave deterministic.
    :param bool convert_normalization: make normalisation layers' affine parameters random too.
    :param float init_scale: the posterior standard deviation at the start. Small (the
        default 0.01) lets the network learn before the noise grows; about 0.1 can leave a
        LeNet-5 at chance.
    :param float noise_scale: the fixed noise of the ``"normal"`` likelihood (``None``: learned).
    :param float kl_weight: multiplies the KL term (1 gives the ELBO).
    """

    def __init__(
        self,
        net: nn.Module,
        likelihood: str = "categorical",
        prior=None,
        include=None,
        exclude=None,
        convert_normalization: bool = False,
        init_scale: float = 1e-2,
        noise_scale: float | None = None,
        kl_weight: float = 1.0,
    ):
        super().__init__()
        check_module(net, "net")
        self.likelihood = check_choice(likelihood, "likelihood", LIKELIHOODS)
        init_scale = check_positive_float(init_scale, "init_scale")
        self.kl_weight = check_positive_float(kl_weight, "kl_weight")
        include, exclude = _patterns(include, "include"), _patterns(exclude, "exclude")
        if isinstance(prior, dict):
            names = {
                f"{p}.{n}" if p else n for p, m in net.named_modules() for n, _ in m.named_parameters(recurse=False)
            }
            unknown = sorted(set(prior) - names)
            if unknown:
                raise ValueError(
                    f"`prior` names parameters the network does not have: {unknown}; it has {sorted(names)}"
                )
        self.noise_scale = None
        if likelihood == "normal":
            if noise_scale is None:
                self.log_noise_scale = nn.Parameter(torch.tensor(math.log(0.1)))
            else:
                self.noise_scale = check_positive_float(noise_scale, "noise_scale")
        elif noise_scale is not None:
            raise ValueError(f"`noise_scale` applies to likelihood='normal' only, but likelihood={likelihood!r}")

        # A structural copy (no storage) for functional calls with sampled weights.
        self.__dict__["_template"] = copy.deepcopy(net).to("meta")
        self.report = ConversionReport()
        pyro_net = copy.deepcopy(net)
        # Parameters left deterministic stay in this module, never in Pyro's global store.
        with pyro.settings.context(module_local_params=True):
            to_pyro_module_(pyro_net)
        values = {}
        for path, module in pyro_net.named_modules():
            own = [(n, p) for n, p in module.named_parameters(recurse=False)]
            if not own:
                continue
            kind = _type_name(module)
            row = (path, kind, tuple(n for n, _ in own), sum(p.numel() for _, p in own))
            supported = isinstance(module, SUPPORTED_LAYERS)
            normalization = isinstance(module, NORMALIZATION_LAYERS)
            chosen = (include is None or _matches(path, include)) and not (exclude and _matches(path, exclude))
            if not (supported or normalization):
                if include is not None and _matches(path, include):
                    raise ValueError(
                        f"`include` selects {path!r}, a {kind}, which the converter does not support; supported: "
                        f"{', '.join(c.__name__ for c in SUPPORTED_LAYERS)} (and normalisation layers)"
                    )
                self.report.unsupported.append(row)
                continue
            if not chosen or (normalization and not convert_normalization and not supported):
                self.report.deterministic.append(row)
                continue
            module.register_buffer(_ANCHOR, torch.empty(0, device=own[0][1].device), persistent=False)
            for pname, param in own:
                name = f"{path}.{pname}" if path else pname
                values[name] = param.detach()
                setattr(module, pname, PyroSample(_Prior(name, _prior_base(prior, name, param.shape), param.shape)))
            self.report.converted.append(row)
        if not values:
            raise ValueError(f"nothing to make random in {type(net).__name__}: the conversion report is\n{self.report}")
        self.net = pyro_net
        self.posterior = _NormalPosterior(values, init_scale)

    # -- the model/guide pair -------------------------------------------------------------
    def _kl_scale(self):
        return poutine.scale(scale=self.kl_weight) if self.kl_weight != 1.0 else contextlib.nullcontext()

    def model(self, x, y=None):
        """Weights from the prior, the likelihood of ``y`` in the ``"data"`` plate."""
        check_tensor(x, "x")
        with pyro.settings.context(module_local_params=True), self._kl_scale():
            out = self.net(x)
        dist_y = self.likelihood_dist(out)
        if y is not None:
            y = self._check_y(y, dist_y)
        with self.data_plate(x):
            return pyro.sample("y", dist_y, obs=y)

    def guide(self, x=None, y=None):
        """Weights from the mean-field Normal posterior."""
        with self._kl_scale():
            for name, loc, scale in self.posterior.sites():
                value = pyro.sample(name, dist.Normal(loc, scale).to_event(loc.dim()))
                if value.dim() > loc.dim():
                    raise ValueError(
                        "BayesianNetwork does not support vectorize_particles=True (a network takes one weight "
                        "draw per call); use num_particles with vectorize_particles=False"
                    )

    def likelihood_dist(self, out: torch.Tensor):
        """The distribution of ``y`` given the network's output ``out``."""
        if self.likelihood == "categorical":
            return dist.Categorical(logits=out)
        if self.likelihood == "normal":  # one noise level: scored without expanding it
            scale = self.noise_scale if self.noise_scale is not None else self.log_noise_scale.exp()
            return ScalarScaleNormal(out, scale).to_event(max(out.dim() - 1, 0))
        mean, scale = self.split_output(out)
        return dist.Normal(mean, scale).to_event(max(mean.dim() - 1, 0))

    def split_output(self, out: torch.Tensor):
        """``(mean, scale)`` of a regression likelihood from the network's output."""
        if self.likelihood == "heteroscedastic":
            if out.shape[-1] % 2:
                raise ValueError(
                    "likelihood='heteroscedastic' needs an even last output dimension (means, then raw scales), "
                    f"but the network returned shape {tuple(out.shape)}"
                )
            mean, raw = out.chunk(2, dim=-1)
            return mean, F.softplus(raw) + _MIN_SCALE
        scale = self.noise_scale if self.noise_scale is not None else self.log_noise_scale.exp()
        return out, torch.as_tensor(scale, device=out.device, dtype=out.dtype).expand_as(out)

    def _check_y(self, y, dist_y):
        check_tensor(y, "y")
        expected = tuple(dist_y.batch_shape + dist_y.event_shape)
        if self.likelihood != "categorical" and y.dim() == len(expected) - 1 and expected[-1] == 1:
            y = y.unsqueeze(-1)
        if tuple(y.shape) != expected:
            raise ValueError(f"`y` must have shape {expected} for this network's output, but got {tuple(y.shape)}")
        if self.likelihood == "categorical" and is_validation_enabled():  # fit: the first step
            classes = dist_y.logits.shape[-1]
            if y.dtype.is_floating_point or y.dtype == torch.bool:
                raise TypeError(f"`y` must hold integer class labels, but got dtype {y.dtype}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
                bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
                raise ValueError(
                    f"`y` holds label {bad}, outside [0, {classes}): the network has {classes} outputs (classes)"
                )
        return y

    # -- the posterior ---------------------------------------------------------------------
    def prior(self, name: str):
        """The prior distribution of the site ``name`` (e.g. ``"fc1.weight"``)."""
        module_path, _, pname = name.rpartition(".")
        module = self.net.get_submodule(module_path)
        return module._pyro_samples[pname](module)

    def kl(self) -> torch.Tensor:
        """KL(q || p) of the weights, summed: analytic where torch knows it, else one Monte
        Carlo draw."""
        total = 0.0
        for name, loc, scale in self.posterior.sites():
            q, p = dist.Normal(loc, scale).to_event(loc.dim()), self.prior(name)
            try:
                total = total + torch.distributions.kl_divergence(q, p)
            except NotImplementedError:
                w = q.rsample()
                total = total + q.log_prob(w) - p.log_prob(w)
        return total * self.kl_weight

    def sample_weights(self, num_samples: int = 1, seed: int | None = None) -> dict:
        """``num_samples`` posterior draws: ``{site name: (num_samples, *shape)}``."""
        num_samples = check_positive_int(num_samples, "num_samples")
        with seeded(seed, self.posterior.loc[0].device):
            return {
                name: loc + scale * torch.randn((num_samples, *loc.shape), device=loc.device, dtype=loc.dtype)
                for name, loc, scale in self.posterior.sites()
            }

    def _fixed(self) -> dict:
        self._template.train(self.net.training)
        tensors = dict(self.net.named_parameters())
        tensors.update((k, v) for k, v in self.net.named_buffers() if not k.endswith(_ANCHOR))
        return tensors

    def _call(self, weights: dict, x):
        return torch.func.functional_call(self._template, {**self._fixed(), **weights}, (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output under one posterior draw of the weights."""
        return self._call({k: v[0] for k, v in self.sample_weights(1).items()}, x)

    def _outputs(self, x, weights: dict, chunk: int = 16) -> torch.Tensor:
        fixed = self._fixed()
        num = next(iter(weights.values())).shape[0]
        try:
            run = torch.func.vmap(
                lambda w: torch.func.functional_call(self._template, {**fixed, **w}, (x,)), randomness="different"
            )
            return torch.cat(
                [run({k: v[i : i + chunk] for k, v in weights.items()}) for i in range(0, num, chunk)], dim=0
            )
        except Exception:  # a layer vmap cannot batch: one draw at a time (real errors re-raise below)
            return torch.stack([self._call({k: v[i] for k, v in weights.items()}, x) for i in range(num)])

    @torch.no_grad()
    def predict(
        self, x: torch.Tensor, num_samples: int = 100, seed: int | None = None, batch_size: int | None = None
    ) -> Prediction:
        """Monte Carlo prediction from ``num_samples`` posterior weight draws, vectorised over
        the draws where the layers allow (``torch.func.vmap``). The same draws serve every
        input; ``batch_size`` bounds how many inputs go through at once (default all)."""
        check_tensor(x, "x")
        if x.dim() == 0 or len(x) == 0:
            raise ValueError(f"`x` must hold at least one input, but got shape {tuple(x.shape)}")
        step = len(x) if batch_size is None else check_positive_int(batch_size, "batch_size")
        was_training = self.training
        self.eval()
        try:
            weights = self.sample_weights(num_samples, seed)
            out = torch.cat([self._outputs(x[i : i + step], weights) for i in range(0, len(x), step)], dim=1)
        finally:
            self.train(was_training)
        if self.likelihood == "categorical":
            return Prediction(out.softmax(-1))
        mean, scale = self.split_output(out)
        return Prediction(mean, scale)

    def posterior_mean_network(self) -> nn.Module:
        """A plain deterministic copy of the network with the posterior means as weights
        (for deployment), in eval mode."""
        tensors = {**self._fixed(), **{n: loc.detach() for n, loc, _ in self.posterior.sites()}}
        device = next(iter(tensors.values())).device
        net = copy.deepcopy(self._template).to_empty(device=device)
        net.load_state_dict({k: v.detach().clone() for k, v in tensors.items()}, strict=False)
        return net.eval()


def to_bayesian(net: nn.Module, **options) -> BayesianNetwork:
    """Convert ``net`` into a :class:`BayesianNetwork` (a model/guide pair); ``net`` is not
    changed. ``options`` are :class:`BayesianNetwork`'s.

    >>> bnn = to_bayesian(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)),
    ...                   include="2")
    >>> [row[0] for row in bnn.report.converted], [row[0] for row in bnn.report.deterministic]
    (['2'], ['0'])
    """
    return BayesianNetwork(net, **options)


@recorded
class BayesianLeNet5(BayesianNetwork):
    """LeNet-5 (:class:`ppmodels.nn.LeNet5`) with every weight random, as a model/guide pair
    with a categorical likelihood. ``input_mean``/``input_std`` standardise the input inside
    the network (so predictions take raw images). Options as for :class:`BayesianNetwork`.

    >>> BayesianLeNet5(10).predict(torch.zeros(2, 1, 32, 32), num_samples=3).samples.shape
    torch.Size([3, 2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 32,
        input_mean: float = 0.0,
        input_std: float = 1.0,
        prior=None,
        init_scale: float = 1e-2,
        kl_weight: float = 1.0,
    ):
        super().__init__(
            LeNet5(num_classes, in_channels, image_size, input_mean, input_std),
            prior=prior,
            init_scale=init_scale,
            kl_weight=kl_weight,
        )
