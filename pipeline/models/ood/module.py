"""The `ood_cnn` network: one small CNN, or M of them as a deep ensemble, with the methods that
change what it predicts (MC dropout, last-layer Laplace) or how it is trained (energy fine-tuning
with outlier exposure, a second phase). Every method answers through `predictive`, which the OOD
tasks read; `classify` gives its predictive log-probabilities, so the network's own accuracy (the
`network` task) is the method's."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.datamodule import Splits, TensorDataModule, model_input
from pipeline.errors import PipelineError
from pipeline.extras import require
from pipeline.models.base import Phase, Supervised
from pipeline.models.ood import OODNetSpec, outputs
from pipeline.models.ood import scores as S
from pipeline.spec.components import TrainSpec

MC_SEED = 0
"""MC dropout's masks are drawn from this seed at every call of `predictive`, so the same inputs get
the same predictive distribution in any run."""


class Body(nn.Sequential):
    """Conv blocks, then the hidden layer: the features (`out_dim` of them) the head reads."""

    def __init__(self, spec: OODNetSpec, input_shape: tuple[int, ...]):
        layers: list[nn.Module] = []
        channels, side = input_shape[0], list(input_shape[1:])
        for width in spec.channels:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, side = width, [s // 2 for s in side]
        layers += [nn.Flatten(), nn.Dropout(spec.dropout), nn.Linear(channels * math.prod(side), spec.hidden),
                   nn.ReLU(), nn.Dropout(spec.dropout)]
        super().__init__(*layers)
        self.out_dim = spec.hidden


class Member(nn.Module):
    def __init__(self, spec: OODNetSpec, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.body = Body(spec, input_shape)
        self.head = nn.Linear(spec.hidden, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(inputs))


def last_layer_jacobian(features: torch.Tensor, classes: int) -> torch.Tensor:
    """d logits / d (W, b) of a linear head at `features` [B, H]: [B, C, C * H + C], the parameters
    ordered as torch (and laplace-torch) vectorise them: W row by row, then b."""
    batch, hidden = features.shape
    eye = torch.eye(classes, dtype=features.dtype, device=features.device)
    weight = torch.einsum("cd,bh->bcdh", eye, features).reshape(batch, classes, classes * hidden)
    return torch.cat([weight, eye.expand(batch, classes, classes)], dim=2)


def probit_predictive(mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Log of the probit approximation of E[softmax(f)], f ~ N(mean, Sigma): softmax(kappa * mean),
    kappa = 1 / sqrt(1 + pi / 8 * diag Sigma) (`variance` = diag Sigma, [B, C])."""
    return torch.log_softmax(mean / torch.sqrt(1 + math.pi / 8 * variance), dim=1)


class OODNet(Supervised):
    """`members` small CNNs (`encoder`, the features downstream tasks read, is the first one's body),
    trained on the sum of their cross-entropies; an outlier-exposure phase adds the energy margins."""

    def __init__(self, spec: OODNetSpec, train: TrainSpec, input_shape: tuple[int, ...], num_classes: int):
        if len(input_shape) != 3:
            raise PipelineError(f"ood_cnn takes images [C, H, W]; the data's inputs are {list(input_shape)}")
        members = [Member(spec, tuple(input_shape), num_classes) for _ in range(spec.members)]
        super().__init__(members[0].body, train)
        self.members = nn.ModuleList(members)
        self.spec, self.num_classes = spec, num_classes
        size = num_classes * (spec.hidden + 1) if spec.laplace is not None else 0
        # The last layer's posterior covariance, set after training (zero and unfitted before).
        self.register_buffer("laplace_covariance", torch.zeros(size, size))
        self.register_buffer("laplace_prior_precision", torch.zeros(()))
        self.outlier_pool: dict[str, torch.Tensor] = {}

    # --- predictions ---

    def member_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Each member's logits [M, B, C]."""
        return torch.stack([member(inputs) for member in self.members])

    @torch.no_grad()
    def predictive(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """`logits` [B, C] (the members' mean, over MC dropout's passes too; Laplace's MAP), the
        predictive `log_probs` [B, C] (the mean probability over members and passes; Laplace's
        probit approximation), and `own`, its own OOD score [B] (higher = in-distribution) where it
        has one. MC dropout's masks are drawn from `MC_SEED` at each call: the same batch gets the
        same prediction in any run (an example's masks depend on its place in the batch)."""
        if self.spec.laplace is not None:
            member = self.members[0]
            features = member.body(inputs)
            logits = member.head(features)
            if float(self.laplace_prior_precision) <= 0:
                raise RuntimeError("the Laplace posterior was never fitted (a model saved before training ended)")
            jacobian = last_layer_jacobian(features, self.num_classes)
            variance = torch.einsum("bcp,pq,bcq->bc", jacobian, self.laplace_covariance, jacobian)
            log_probs = probit_predictive(logits, variance)
        else:
            samples = self.mc_logits(inputs) if self.spec.mc_samples else self.member_logits(inputs)
            logits = samples.mean(0)
            log_probs = torch.logsumexp(torch.log_softmax(samples, dim=2), dim=0) - math.log(len(samples))
        out = {"logits": logits, "log_probs": log_probs}
        if self.spec.own_score == "energy":
            out["own"] = -S.energy(logits)
        elif self.spec.own_score == "max_predictive":
            out["own"] = log_probs.max(dim=1).values.exp()
        return out

    def mc_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Every member's logits under `mc_samples` dropout masks [S * M, B, C], the masks seeded."""
        dropouts = [m for m in self.modules() if isinstance(m, nn.Dropout)]
        modes = [m.training for m in dropouts]
        with torch.random.fork_rng(devices=[inputs.device] if inputs.is_cuda else []):
            torch.manual_seed(MC_SEED)
            for module in dropouts:
                module.train()
            try:
                return torch.cat([self.member_logits(inputs) for _ in range(self.spec.mc_samples)])
            finally:
                for module, mode in zip(dropouts, modes, strict=True):
                    module.train(mode)

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.predictive(inputs)["log_probs"]

    # --- training ---

    def phases(self, spec, splits: Splits) -> list[Phase]:
        laplace = self.spec.laplace
        if laplace is not None:  # before training, not after it
            require("laplace", "ood", "ood_cnn's laplace")
            if laplace.prior == "validation" and not len(splits.val["input"]):
                raise PipelineError("model.laplace.prior: validation needs validation data (data.val_fraction > 0)")
        phases = super().phases(spec, splits)
        exposure = self.spec.outlier_exposure
        if exposure is None:
            return phases
        self.outlier_pool = outlier_images(exposure.families)
        pool = self.outlier_pool["train"]
        # Each training image's outliers: a seeded draw from the pool; the epoch's shuffle of the
        # training images then gives every batch a different set of them.
        rng = np.random.default_rng([spec.seed, 7])
        drawn = torch.from_numpy(rng.integers(0, len(pool), (len(splits.train["input"]), exposure.ratio)))
        train = {**splits.train, "outlier": pool[drawn]}
        data = TensorDataModule(spec.data, spec.seed, Splits(train, splits.val, splits.test, splits.classes))
        return [*phases, Phase("outlier_exposure", data, exposure.epochs)]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = model_input(batch["input"]), batch["label"]
        size = len(labels)
        outliers = model_input(batch["outlier"].flatten(0, 1)) if "outlier" in batch else None
        everything = inputs if outliers is None else torch.cat([inputs, outliers])
        logits = self.member_logits(everything)
        inside = logits[:, :size]
        loss = torch.stack([F.cross_entropy(member, labels) for member in inside]).sum()
        self.log("train/cross_entropy", loss / len(inside), on_epoch=True, on_step=False, batch_size=size,
                 sync_dist=True)
        if outliers is not None:
            exposure = self.spec.outlier_exposure
            energy_in, energy_out = S.energy(inside), S.energy(logits[:, size:])
            margins = torch.stack([S.energy_margin_loss(e_in, e_out, exposure.m_in, exposure.m_out)
                                   for e_in, e_out in zip(energy_in, energy_out, strict=True)]).sum()
            loss = loss + exposure.weight * margins
            for name, value in (("energy_in", energy_in.mean()), ("energy_out", energy_out.mean()),
                                ("energy_margin_loss", margins / len(inside))):
                self.log(f"train/{name}", value, on_epoch=True, on_step=False, batch_size=size, sync_dist=True)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        predicted = torch.logsumexp(torch.log_softmax(inside, dim=2), dim=0).argmax(dim=1)
        self.log("train/accuracy", (predicted == labels).float().mean(), on_epoch=True, on_step=False,
                 batch_size=size, sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        inputs, labels = model_input(batch["input"]), batch["label"]
        probs = torch.softmax(self.member_logits(inputs), dim=2).mean(0)  # dropout off: the cheap pass
        self.log("val/accuracy", (probs.argmax(dim=1) == labels).float().mean(), on_epoch=True, prog_bar=True,
                 batch_size=len(labels), sync_dist=True)

    def after_phase(self, index: int, phase: Phase) -> dict[str, float]:
        """After the last phase, the Laplace posterior (where the spec asks for one); after each
        phase of an outlier-exposure run, how well the energy and the max softmax tell the
        validation images from the held-out outliers (what its margins are chosen on)."""
        measured: dict[str, float] = {}
        last = phase.name == ("outlier_exposure" if self.spec.outlier_exposure is not None else "fit")
        if last and self.spec.laplace is not None:
            measured.update(self.fit_laplace(phase.data.splits))
        if self.spec.outlier_exposure is not None and len(phase.data.splits.val["input"]):
            measured.update(self.outlier_validation(phase.data.splits.val["input"]))
        return measured

    @torch.no_grad()
    def outlier_validation(self, val_inputs: torch.Tensor) -> dict[str, float]:
        was_training = self.training
        self.eval()
        try:
            scored = {split: outputs.batched(self, inputs) for split, inputs in (("in", val_inputs),
                                                                         ("out", self.outlier_pool["test"]))}
        finally:
            self.train(was_training)
        measured = {}
        for name, score in (("energy", lambda o: -S.energy(o["logits"])),
                            ("msp", lambda o: o["log_probs"].max(dim=1).values.exp())):
            figures = S.detection(score(scored["in"]).numpy(), score(scored["out"]).numpy())
            measured.update({f"val_outliers/{key}_{name}": value for key, value in figures.items()})
        return measured

    def fit_laplace(self, splits: Splits) -> dict[str, float]:
        """The last-layer posterior by laplace-torch (GGN of the training loss, prior precision
        chosen as the spec says), kept as the full covariance of the head's weights."""
        from torch.utils.data import DataLoader, TensorDataset

        Laplace = require("laplace", "ood", "ood_cnn's laplace").Laplace  # noqa: N806

        spec = self.spec.laplace
        member = self.members[0]
        device = next(member.parameters()).device
        was_training = self.training
        self.eval()

        def loader(fields) -> DataLoader:
            return DataLoader(TensorDataset(model_input(fields["input"]).to(device), fields["label"].to(device)),
                              batch_size=outputs.BATCH)

        try:
            laplace = Laplace(nn.Sequential(member.body, member.head), "classification",
                              subset_of_weights="last_layer", hessian_structure=spec.hessian)
            laplace.fit(loader(splits.train))
            if spec.prior == "marglik":
                laplace.optimize_prior_precision(pred_type="glm", method="marglik", prior_structure="scalar")
            else:
                laplace.optimize_prior_precision(pred_type="glm", method="gridsearch", prior_structure="scalar",
                                                 val_loader=loader(splits.val), link_approx="probit")
        finally:
            self.train(was_training)
        self.laplace_covariance.copy_(laplace.posterior_covariance.detach().to(self.laplace_covariance))
        self.laplace_prior_precision.copy_(laplace.prior_precision.detach().reshape(-1)[0])
        return {"laplace/prior_precision": float(self.laplace_prior_precision),
                "laplace/log_marginal_likelihood": float(laplace.log_marginal_likelihood().item())}


def outlier_images(families: list[str]) -> dict[str, torch.Tensor]:
    """The outlier-exposure families' images, train and test splits each concatenated (uint8)."""
    from pipeline import plugins
    from pipeline.data.fetch import require_dataset

    registered = plugins.datasets()
    readouts = [registered[name].load_reader()(require_dataset(registered[name])) for name in families]
    return {split: torch.from_numpy(np.concatenate([getattr(r, split)["input"] for r in readouts]))
            for split in ("train", "test")}
